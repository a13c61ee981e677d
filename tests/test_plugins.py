"""Plugins found by name: one factory per kind, one lookup and one error behind them all."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from plait import calcfunction
from plait.calculations.arithmetic import ArithmeticAddCalculation
from plait.calculations.shell import ShellJob
from plait.cli.main import cli
from plait.orm import ArrayData, Int
from plait.parsers.shell import ShellParser
from plait.plugins import (
    CalculationFactory,
    DataFactory,
    InvalidPluginError,
    MissingPluginError,
    ParserFactory,
    SchedulerFactory,
    TransportFactory,
    WorkflowFactory,
    entry_points,
)
from plait.schedulers.slurm import SlurmScheduler
from plait.transports.local import LocalTransport
from plait.workflows.demo import NewtonSqrtWorkChain


@calcfunction
def double(x):
    return x * 2


def test_each_factory_finds_the_built_in_plugins():
    assert CalculationFactory("shell") is ShellJob
    assert CalculationFactory("arithmetic.add") is ArithmeticAddCalculation
    assert ParserFactory("shell") is ShellParser
    assert DataFactory("core.int") is Int
    assert DataFactory("core.array") is ArrayData
    assert TransportFactory("local") is LocalTransport
    assert SchedulerFactory("slurm") is SlurmScheduler
    assert WorkflowFactory("demo.newton_sqrt") is NewtonSqrtWorkChain


@pytest.mark.parametrize(
    ("factory", "group"),
    [
        (CalculationFactory, "plait.calculations"),
        (ParserFactory, "plait.parsers"),
        (DataFactory, "plait.data"),
        (TransportFactory, "plait.transports"),
        (SchedulerFactory, "plait.schedulers"),
        (WorkflowFactory, "plait.workflows"),
    ],
)
def test_an_unknown_name_is_one_error_for_every_kind_and_lists_what_is_installed(factory, group):
    """Defect guarded: four lookups raised three different errors (LookupError, ValueError, ...)."""
    with pytest.raises(
        MissingPluginError, match=rf"no .*plugin named 'nope'.*{group}|no scheduler plugin"
    ) as info:
        factory("nope")
    assert isinstance(info.value, LookupError) and isinstance(info.value, ValueError)
    installed = entry_points.plugin_names(group)
    assert all(name in str(info.value) for name in installed)


def _fake_group(monkeypatch, entries: dict[str, object]) -> None:
    fakes = {
        name: SimpleNamespace(name=name, value=f"fake:{name}", load=lambda t=t: t, dist=None)
        for name, t in entries.items()
    }
    monkeypatch.setattr(entry_points, "plugin_entry_points", lambda group: fakes)


def test_a_calcfunction_registered_as_a_calculation_is_found(monkeypatch):
    _fake_group(monkeypatch, {"double": double})
    assert CalculationFactory("double") is double


@pytest.mark.parametrize(
    "factory", [CalculationFactory, ParserFactory, DataFactory, TransportFactory, WorkflowFactory]
)
def test_a_registration_of_the_wrong_kind_is_refused(monkeypatch, factory):
    _fake_group(monkeypatch, {"wrong": int})
    with pytest.raises(InvalidPluginError, match=r"'wrong'.*fake:wrong"):
        factory("wrong")


def test_plugin_list_shows_groups_plugins_and_one_plugin():
    runner = CliRunner()
    groups = runner.invoke(cli, ["plugin", "list"])
    assert groups.exit_code == 0, groups.output
    assert "plait.calculations" in groups.output and "shell" in groups.output
    listing = runner.invoke(cli, ["plugin", "list", "calculations"])
    assert listing.exit_code == 0 and "plait.calculations.shell:ShellJob" in listing.output
    one = runner.invoke(cli, ["plugin", "list", "calculations", "arithmetic.add"])
    assert one.exit_code == 0, one.output
    assert "inputs" in one.output and "sum" in one.output and "exit codes" in one.output
    workflow = runner.invoke(cli, ["plugin", "list", "plait.workflows", "demo.newton_sqrt"])
    assert workflow.exit_code == 0 and "NewtonSqrtWorkChain" in workflow.output


def test_plugin_list_refuses_an_unknown_group_or_name_in_one_line():
    runner = CliRunner()
    bad_group = runner.invoke(cli, ["plugin", "list", "gadgets"])
    assert bad_group.exit_code == 2 and "'gadgets' is not a plugin group" in bad_group.output
    bad_name = runner.invoke(cli, ["plugin", "list", "parsers", "nope"])
    assert bad_name.exit_code == 1 and "no plugin named 'nope' in 'plait.parsers'" in bad_name.output
    assert "Traceback" not in bad_name.output and "unexpected" not in bad_name.output
