"""Build the AiiDA fixture archives that ``tests/archive/test_aiida_import.py`` imports into plait.

Run with the python of a venv that has aiida-core 2.x (benchmarks/setup_aiida.sh makes one)::

    /work/scratch/aiida-venv/bin/python tests/archive/aiida_fixtures/make_fixtures.py [OUTDIR]

It works in a throw-away aiida profile (``verdi presto --no-broker`` under a temporary
``AIIDA_PATH``), so nothing of the user's aiida configuration is touched, and writes
``workflows.aiida`` (OUTDIR defaults to this folder):

* calcfunctions ``add`` and ``multiply`` run on their own and from a workfunction ``add_multiply``;
* a calcfunction that returns exit code 410 (a failed process with its message);
* a work chain ``AddTwiceWorkChain`` that reports, calls two calcfunctions and returns a result;
* a calculation job node (``core.arithmetic.add``) built through the ORM as the engine leaves one:
  inputs x, y, code; outputs ``remote_folder`` (RemoteData), ``retrieved`` (FolderData with files)
  and ``sum``; finished with exit status 0;
* data of the other core types: Float, Str, Bool, Dict, List, SinglefileData, ArrayData;
* a node of a type plait does not know (``core.structure``);
* groups ``fixture-group`` (the workfunction and its result) and ``fixture-data``;
* the computer ``localhost`` and an installed code ``bash-add@localhost``.

The work chain is defined in this script's ``__main__``, which aiida cannot import again to
checkpoint it: its ERROR logs about the checkpoint are real aiida logs and stay in the fixture
(the import keeps every log).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(out: Path) -> None:
    import numpy as np
    from aiida import engine, load_profile, orm
    from aiida.common.links import LinkType
    from aiida.tools.archive import create_archive

    load_profile("fixtures")

    @engine.calcfunction
    def add(x: orm.Int, y: orm.Int) -> orm.Int:
        return orm.Int(x.value + y.value)

    @engine.calcfunction
    def multiply(x: orm.Int, y: orm.Int) -> orm.Int:
        return orm.Int(x.value * y.value)

    @engine.calcfunction
    def refuse(x: orm.Int) -> engine.ExitCode:
        return engine.ExitCode(410, "the input is not welcome")

    @engine.workfunction
    def add_multiply(x: orm.Int, y: orm.Int, z: orm.Int) -> orm.Int:
        return multiply(add(x, y), z)

    class AddTwiceWorkChain(engine.WorkChain):
        @classmethod
        def define(cls, spec):  # type: ignore[no-untyped-def]
            super().define(spec)
            spec.input("x", valid_type=orm.Int)
            spec.input("y", valid_type=orm.Int)
            spec.outline(cls.first, cls.second, cls.finish)
            spec.output("result", valid_type=orm.Int)

        def first(self) -> None:
            self.report("adding the first time")
            self.ctx.a = add(self.inputs.x, self.inputs.y)

        def second(self) -> None:
            self.ctx.b = add(self.ctx.a, self.inputs.y)

        def finish(self) -> None:
            self.report(f"the result is {self.ctx.b.value}")
            self.out("result", self.ctx.b)

    result = add(orm.Int(1), orm.Int(2))
    wf_result, wf_node = engine.run_get_node(add_multiply, x=orm.Int(2), y=orm.Int(3), z=orm.Int(4))
    _, failed = engine.run_get_node(refuse, x=orm.Int(-1))
    wc_result, _wc_node = engine.run_get_node(AddTwiceWorkChain, x=orm.Int(5), y=orm.Int(6))
    assert wf_result.value == 20 and wc_result["result"].value == 17 and failed.exit_status == 410

    computer = orm.load_computer("localhost")
    code = orm.InstalledCode(computer=computer, filepath_executable="/bin/bash", label="bash-add")
    code.description = "bash for the arithmetic add job"
    code.store()

    # a calculation job as the engine leaves one, built through the ORM (no run, no daemon)
    x, y = orm.Int(7).store(), orm.Int(8).store()
    calc = orm.CalcJobNode(computer=computer, process_type="aiida.calculations:core.arithmetic.add")
    calc.label = "add 7 and 8"
    calc.set_option("resources", {"num_machines": 1})
    calc.set_option("withmpi", False)
    calc.base.links.add_incoming(x, LinkType.INPUT_CALC, "x")
    calc.base.links.add_incoming(y, LinkType.INPUT_CALC, "y")
    calc.base.links.add_incoming(code, LinkType.INPUT_CALC, "code")
    calc.base.repository.put_object_from_filelike(io.BytesIO(b"echo $((7 + 8))\n"), "aiida.in")
    calc.base.repository.put_object_from_filelike(
        io.BytesIO(b"#!/bin/bash\nbash < aiida.in\n"), "_aiidasubmit.sh"
    )
    calc.set_process_label("ArithmeticAddCalculation")
    calc.set_process_state(engine.ProcessState.FINISHED)
    calc.set_exit_status(0)
    calc.store()
    remote = orm.RemoteData(computer=computer, remote_path="/tmp/aiida-run/7a/8b")
    remote.base.links.add_incoming(calc, LinkType.CREATE, "remote_folder")
    remote.store()
    retrieved = orm.FolderData()
    retrieved.base.repository.put_object_from_filelike(io.BytesIO(b"15\n"), "aiida.out")
    retrieved.base.repository.put_object_from_filelike(io.BytesIO(b""), "_scheduler-stderr.txt")
    retrieved.base.repository.put_object_from_filelike(io.BytesIO(b"job done\n"), "logs/scheduler.log")
    retrieved.base.links.add_incoming(calc, LinkType.CREATE, "retrieved")
    retrieved.store()
    total = orm.Int(15)
    total.base.links.add_incoming(calc, LinkType.CREATE, "sum")
    total.store()
    calc.seal()

    # the other core data types, and one type plait does not know
    others = [
        orm.Float(2.5).store(),
        orm.Str("hello").store(),
        orm.Bool(True).store(),
        orm.Dict({"a": 1, "nested": {"b": [1, 2, 3]}}).store(),
        orm.List([1, "two", 3.0]).store(),
        orm.SinglefileData(io.BytesIO(b"single file content\n"), filename="notes.txt").store(),
    ]
    array = orm.ArrayData()
    array.set_array("values", np.arange(6, dtype=np.float64).reshape(2, 3))
    others.append(array.store())
    structure = orm.StructureData(cell=[[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    structure.append_atom(position=(0, 0, 0), symbols="Si")
    structure.label = "silicon"
    structure.base.extras.set("source", "hand made")
    others.append(structure.store())
    others[1].base.extras.set("colour", "blue")

    group = orm.Group(label="fixture-group", description="the workfunction and its result").store()
    group.add_nodes([wf_node, wf_result])
    data_group = orm.Group(label="fixture-data").store()
    data_group.add_nodes(others)
    orm.Comment(node=wf_node, user=orm.User.collection.get_default(), content="a comment").store()
    assert result.value == 3

    out.unlink(missing_ok=True)
    create_archive(None, filename=str(out))
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    if os.environ.get("_PLAIT_FIXTURE_CHILD"):
        build(out_dir / "workflows.aiida")
        return
    verdi = Path(sys.executable).parent / "verdi"
    with tempfile.TemporaryDirectory(prefix="plait-aiida-fixtures-") as home:
        env = {**os.environ, "AIIDA_PATH": home, "_PLAIT_FIXTURE_CHILD": "1"}
        subprocess.run([str(verdi), "presto", "-n", "-p", "fixtures", "--no-broker"], env=env, check=True)
        subprocess.run([sys.executable, __file__, str(out_dir)], env=env, check=True)


if __name__ == "__main__":
    main()
