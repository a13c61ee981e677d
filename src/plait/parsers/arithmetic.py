"""Parser of ``arithmetic.add``: the sum printed by the job becomes the ``sum`` output."""

from __future__ import annotations

from typing import Any

from plait.engine.exit_code import ExitCode
from plait.engine.parser import Parser
from plait.orm import Float, Int

__all__ = ["ArithmeticAddParser"]


class ArithmeticAddParser(Parser):
    def parse(self, **kwargs: Any) -> ExitCode | None:
        filename = (
            self.node.get_attribute("metadata", {}).get("options", {}).get("output_filename", "plait.out")
        )
        try:
            text = self.retrieved.get_object_content(filename).strip()
        except FileNotFoundError:
            return self.exit_codes.ERROR_MISSING_OUTPUT_FILES.format(files=filename)
        try:
            value: int | float = int(text)
            node: Int | Float = Int(value)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return self.exit_codes.ERROR_READING_OUTPUT_FILE.format(
                    message=f"'{text[:50]}' is not a number"
                )
            node = Float(value)
        self.out("sum", node)
        if value < 0:
            return self.exit_codes.ERROR_NEGATIVE_NUMBER
        return None
