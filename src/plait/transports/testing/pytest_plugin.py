"""``pytest --plait-transport=NAME``: the conformance suite on any installed transport plugin.

This module is a pytest plugin, registered under the ``pytest11`` entry point
group by plait's own package metadata, so installing plait is enough: in
any project (no conftest, no test code) ::

    pytest --plait-transport=mycluster
    pytest --plait-transport=all              # every installed plait.transports entry point
    pytest --plait-transport=ssh --plait-transport-hostname=cluster.example.org \
           --plait-transport-options='{"username": "me", "port": 2222}'

Each name is looked up as ``plait.transports`` entry point, built the way the
engine builds it (``cls(hostname=..., **options)``, wrapped with
:func:`plait.transports.as_async` when blocking; see
:func:`plait.transports.testing.build_transport`) and run through
:class:`plait.transports.testing.TransportConformance`, one parametrised
test class (:mod:`plait.transports.testing.entry_point_suite`).  The
options are the computer's ``configure`` options as a JSON object.  Without
``--plait-transport`` the plugin only adds its options; ``-p
no:plait-transports`` turns it off.

Why an entry point and not a conftest: a plugin author's repository should
not need a copy of plait's conftest to run the suite, and the names to test
are the installed entry points, which only the installed metadata knows.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

__all__ = ["selected_transport_names", "transport_options"]

OPTION = "--plait-transport"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("plait", "plait transport conformance")
    group.addoption(
        OPTION,
        action="append",
        default=[],
        metavar="NAME",
        help="run the transport conformance suite on the plait.transports entry point NAME "
        "(repeatable; 'all' for every installed one)",
    )
    group.addoption(
        "--plait-transport-hostname",
        default="localhost",
        metavar="HOST",
        help="the hostname the plugin is built with (default: localhost)",
    )
    group.addoption(
        "--plait-transport-options",
        default="{}",
        metavar="JSON",
        help="the computer's configure options, a JSON object passed as keyword arguments",
    )


def selected_transport_names(config: pytest.Config) -> list[str]:
    """The entry point names ``--plait-transport`` asks for, ``all`` expanded, each checked.

    Raises:
        pytest.UsageError: a name is not an installed ``plait.transports`` entry point
            (the message lists those that are).
    """
    from plait.transports.plugins import transport_plugin_names

    asked: list[str] = config.getoption(OPTION) or []
    installed = transport_plugin_names()
    names: list[str] = []
    for name in asked:
        for one in installed if name == "all" else [name]:
            if one not in installed:
                raise pytest.UsageError(
                    f"{OPTION}={one}: no plait.transports entry point of that name; "
                    f"installed: {', '.join(installed) or 'none'}"
                )
            if one not in names:
                names.append(one)
    return names


def transport_options(config: pytest.Config) -> dict[str, Any]:
    """The ``--plait-transport-options`` JSON object.

    Raises:
        pytest.UsageError: the value is not JSON or not an object.
    """
    text = config.getoption("--plait-transport-options")
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise pytest.UsageError(f"--plait-transport-options={text!r} is not JSON: {error}") from None
    if not isinstance(options, dict):
        raise pytest.UsageError(
            f"--plait-transport-options={text!r} must be a JSON object of keyword arguments"
        )
    return options


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption(OPTION):
        return
    selected_transport_names(config)  # refuse a wrong name before collecting anything
    transport_options(config)
    from . import entry_point_suite

    config.args.append(entry_point_suite.__file__)
