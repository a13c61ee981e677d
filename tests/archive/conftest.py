"""A small provenance graph with every kind of record an archive carries, and profiles to import into."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import plait.storage


@dataclass
class Graph:
    """pks in the source profile ``default``."""

    workflow: int
    calc: int
    result: int
    x: int
    y: int
    file_calc: int
    file_input: int
    length: int
    code: int
    group: str


def build_graph() -> Graph:
    """Build it in the current profile: a workfunction calling a calcfunction, files, code, logs, comments."""
    from plait import calcfunction, workfunction
    from plait.orm import Computer, Group, InstalledCode, Int, SinglefileData

    @calcfunction
    def add(x: Int, y: Int) -> Int:
        return x + y

    @workfunction
    def add_wf(x: Int, y: Int) -> Int:
        return add(x, y)

    @calcfunction
    def size(f: SinglefileData) -> Int:
        return Int(len(f.get_object_content(f.list_file_paths()[0], "rb")))

    x, y = Int(2, label="two").store(), Int(3).store()
    result = add_wf(x, y)
    calc = result.creator
    assert calc is not None
    workflow = next(n for _, _, n in calc.get_incoming() if type(n).__name__ == "WorkFunctionNode")
    blob = SinglefileData(b"hello archive\n" * 50, filename="hello.txt").store()
    length = size(blob)
    assert length.creator is not None
    code = InstalledCode(
        label="bash", computer=Computer.get("localhost"), filepath_executable="/bin/bash"
    ).store()
    result.set_extra("rating", {"stars": 5})
    result.label = "the sum"
    result.add_comment("checked by hand", user_email="alice@example.org")
    backend = plait.storage.get_backend()
    backend.insert_log(calc.pk, "REPORT", "adding two numbers", {"step": 1})  # type: ignore[arg-type]
    group = Group("archived", description="to publish").store()
    group.set_extra("year", 2026)
    group.add_nodes([length])
    return Graph(
        workflow=workflow.pk,  # type: ignore[arg-type]
        calc=calc.pk,  # type: ignore[arg-type]
        result=result.pk,  # type: ignore[arg-type]
        x=x.pk,  # type: ignore[arg-type]
        y=y.pk,  # type: ignore[arg-type]
        file_calc=length.creator.pk,  # type: ignore[arg-type]
        file_input=blob.pk,  # type: ignore[arg-type]
        length=length.pk,  # type: ignore[arg-type]
        code=code.pk,  # type: ignore[arg-type]
        group="archived",
    )


@pytest.fixture
def graph() -> Graph:
    plait.storage.load_profile("default")
    return build_graph()


@pytest.fixture
def fresh_sqlite_profile(_template_database: Path) -> Callable[[str], str]:
    """``make(name)``: a new SQLite profile (not made current), its schema copied from the template."""

    def make(name: str) -> str:
        profile = plait.storage.create_profile(name, make_default=False)
        shutil.copyfile(_template_database, profile.path / "database.sqlite")
        return name

    return make


@pytest.fixture
def target(any_profile: str, fresh_sqlite_profile: Callable[[str], str]) -> str:
    """A fresh profile to import into: SQLite or PostgreSQL (``any_profile``)."""
    return fresh_sqlite_profile("target") if any_profile == "default" else any_profile


def use(profile: str) -> Any:
    """Make ``profile`` current; its backend."""
    plait.storage.load_profile(profile)
    return plait.storage.get_backend()
