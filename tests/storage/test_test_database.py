"""The suite's PostgreSQL tests work in a database of their own, made for this run and dropped after it."""

from __future__ import annotations

import os
import re

import pytest
from sqlalchemy.engine import make_url


def test_postgres_tests_run_in_a_database_made_for_this_run(postgres_url):
    name = make_url(postgres_url).database
    assert name is not None and re.fullmatch(rf"plait_test_{os.getpid()}_[0-9a-f]{{8,}}", name), name


def test_plait_tables_are_only_dropped_in_the_database_of_this_run(postgres_url):
    from conftest import drop_plait_tables

    foreign = (
        make_url(postgres_url).set(database="plait_somebody_elses").render_as_string(hide_password=False)
    )
    with pytest.raises(ValueError, match="not created by this test run"):
        drop_plait_tables(foreign)
