"""``arithmetic.add``: add two numbers with a shell on a computer.

The smallest real calculation job: it writes an input file, runs a code
(typically ``/bin/bash``) on it through the scheduler, retrieves the output
and parses the sum.  It does the same job as aiida-core's
``core.arithmetic.add``, so the two engines can be compared side by side.
"""

from __future__ import annotations

from pathlib import Path

from plait.engine.calcjob import CalcInfo, CalcJob, CodeInfo
from plait.engine.spec import ProcessSpec
from plait.orm import Float, Int

__all__ = ["ArithmeticAddCalculation"]


class ArithmeticAddCalculation(CalcJob):
    """Compute ``x + y`` by running a shell script; outputs ``sum``."""

    _default_parser = "arithmetic.add"

    @classmethod
    def define(cls, spec: ProcessSpec) -> None:
        super().define(spec)
        spec.input("x", valid_type=(Int, Float), help="the left operand")
        spec.input("y", valid_type=(Int, Float), help="the right operand")
        spec.input("metadata.options.input_filename", valid_type=str, default="plait.in", non_db=True)
        spec.input("metadata.options.output_filename", valid_type=str, default="plait.out", non_db=True)
        spec.output("sum", valid_type=(Int, Float), help="x + y")
        spec.exit_code(410, "ERROR_NEGATIVE_NUMBER", "the sum of the operands is negative")

    def prepare_for_submission(self, folder: Path) -> CalcInfo:
        x, y = self.inputs.x.value, self.inputs.y.value
        if isinstance(x, int) and isinstance(y, int):
            script = f"echo $(({x} + {y}))\n"
        else:
            script = f"awk 'BEGIN {{ print {x!r} + {y!r} }}'\n"
        options = self.options
        (folder / options["input_filename"]).write_text(script)
        return CalcInfo(
            codes_info=[
                CodeInfo(stdin_name=options["input_filename"], stdout_name=options["output_filename"])
            ],
            retrieve_list=[options["output_filename"]],
        )
