"""Parser of ``shell`` jobs: standard output, standard error and the requested files become outputs."""

from __future__ import annotations

import fnmatch
from typing import Any

from plait.engine.exit_code import ExitCode
from plait.engine.parser import Parser
from plait.orm import SinglefileData

__all__ = ["ShellParser"]


class ShellParser(Parser):
    def parse(self, **kwargs: Any) -> ExitCode | None:
        from plait.calculations.shell import STDERR, STDOUT, output_label

        retrieved = self.retrieved
        files = retrieved.list_file_paths()
        for name in (STDOUT, STDERR):
            if name in files:
                self.out(name, SinglefileData(retrieved.get_object_content(name, "rb"), filename=name))
        wanted = self.node.inputs["outputs"].get_list() if "outputs" in self.node.inputs else []
        missing = []
        for pattern in wanted:
            matched = [f for f in files if fnmatch.fnmatchcase(f, pattern) and f not in (STDOUT, STDERR)]
            if not matched:
                missing.append(pattern)
            for path in matched:
                data = retrieved.get_object_content(path, "rb")
                self.out(output_label(path), SinglefileData(data, filename=path.rsplit("/", 1)[-1]))
        if missing:
            return self.exit_codes.ERROR_MISSING_OUTPUT_FILES.format(files=", ".join(missing))
        return None
