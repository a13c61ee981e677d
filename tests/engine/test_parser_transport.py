"""A parser that reads a file left on the computer goes through the job's pooled connection."""

from __future__ import annotations

from pathlib import Path

from plait import run_get_node
from plait.calculations.arithmetic import ArithmeticAddCalculation
from plait.orm import Computer, InstalledCode, Int, Str
from plait.parsers.arithmetic import ArithmeticAddParser
from plait.transports.local import LocalTransport

OPENED: list[int] = []


class ReadsTheRemoteScript(ArithmeticAddParser):
    """Parses the sum, and also reads the job script from the job's folder on the computer."""

    def parse(self, **kwargs):
        result = super().parse(**kwargs)
        with self.transport() as transport:
            text = transport.read_bytes(f"{self.node.remote_workdir}/_plait_submit.sh").decode()
        self.out("script_head", Str(text.splitlines()[0]))
        return result


def test_a_parser_reads_remote_files_through_the_jobs_own_connection(monkeypatch):
    """The defect it guards: ``as_blocking`` only ran on the transports' own loop, so a parser had to
    open a second connection (a second SSH login to the same node) to read anything remote."""
    original = LocalTransport.open

    async def counting_open(self):
        OPENED.append(id(self))
        return await original(self)

    monkeypatch.setattr(LocalTransport, "open", counting_open)

    class WithScriptOutput(ArithmeticAddCalculation):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.output("script_head", valid_type=Str, required=False)

    code = InstalledCode(computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash")
    code.store()
    OPENED.clear()
    outputs, node = run_get_node(
        WithScriptOutput,
        code=code,
        x=Int(2),
        y=Int(3),
        metadata={"options": {"parser_name": f"{__name__}:ReadsTheRemoteScript"}},
    )
    assert node.is_finished_ok, (node.exit_message, node.exception)
    assert outputs["sum"].value == 5
    assert outputs["script_head"].value.startswith("#!")
    assert len(set(OPENED)) == 1, f"{len(set(OPENED))} connections were opened for one job"
    assert Path(node.remote_workdir).is_dir()
