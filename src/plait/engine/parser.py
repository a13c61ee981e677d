"""Parsers: turn the files a calculation job retrieved into output nodes.

::

    class AddParser(Parser):
        def parse(self, **kwargs):
            try:
                text = self.retrieved.get_object_content("aiida.out")
            except FileNotFoundError:
                return self.exit_codes.ERROR_MISSING_OUTPUT_FILES
            self.out("sum", Int(int(text)))

A parser runs in a worker thread after the job's files were retrieved and
stored (as the ``retrieved`` output), so a slow parser never blocks the
event loop, and a parser that raises leaves the retrieved files in place:
the calculation is marked excepted with the traceback, and the files are
there to look at or to parse again.

``parse`` returns None (success) or an exit code of the calculation class
(``self.exit_codes.LABEL``).  Outputs are registered with :meth:`Parser.out`
and validated against the calculation's output ports at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from plait.engine.exit_code import ExitCode, ExitCodesNamespace

if TYPE_CHECKING:
    from plait.engine.calcjob import CalcJob
    from plait.orm import CalcJobNode, FolderData, Node
    from plait.transports import BlockingTransport

__all__ = ["Parser", "get_parser_class"]


class Parser:
    """Base class of parser plugins (entry point group ``plait.parsers``)."""

    def __init__(self, process: CalcJob) -> None:
        self._process = process
        self.logger = logging.getLogger(f"plait.parser.{type(self).__name__}")

    @property
    def node(self) -> CalcJobNode:
        """The calculation job's node (its inputs: ``self.node.inputs.x``)."""
        return self._process.node  # type: ignore[return-value]

    @property
    def retrieved(self) -> FolderData:
        """The files retrieved from the job's folder."""
        return self._process.outputs["retrieved"]  # type: ignore[return-value]

    @property
    def exit_codes(self) -> ExitCodesNamespace:
        return self._process.exit_codes

    @property
    def job_exit_status(self) -> int | None:
        """What the job's codes exited with (from the exit-code file), or None if the job was killed."""
        return self._process.job_exit_status

    def transport(self) -> contextlib.AbstractContextManager[BlockingTransport]:
        """``with self.transport() as t:`` a blocking transport to the job's computer.

        It is the engine's pooled connection (the one the job used), driven on
        the runner's loop, so a parser that reads a file left on the computer
        opens no second connection to the same login node.
        """
        return self._process.blocking_transport()

    def out(self, label: str, node: Node) -> None:
        """Register an output of the calculation (created by the parser)."""
        self._process.out(label, node)

    def parse(self, **kwargs: Any) -> ExitCode | None:
        """Read ``self.retrieved`` (and ``retrieved_temporary_folder`` if requested) and register outputs."""
        raise NotImplementedError

    @classmethod
    def parse_from_node(cls, node: CalcJobNode, **kwargs: Any) -> tuple[dict[str, Node], ExitCode | None]:
        """Parse the retrieved files of a finished calculation again, without storing anything.

        Useful to develop a parser against real outputs: returns the outputs
        the parser registered and its exit code.
        """
        from plait.engine.resolve import load_process_class

        process_class = load_process_class(node)
        process = process_class._load(node, None)
        process._outputs = {"retrieved": node.outputs.retrieved}
        process._pending_outputs = []
        parser = cls(process)  # type: ignore[arg-type]
        result = parser.parse(**kwargs)
        outputs = {label: value for label, value in process._outputs.items() if label != "retrieved"}
        return outputs, result


@functools.cache
def get_parser_class(name: str) -> type[Parser]:
    """The parser registered as ``name`` under ``plait.parsers``, or a ``module:Class`` path.

    Raises:
        MissingPluginError: no such parser (a ``ValueError``; the message lists the known ones).
        ValueError: a ``module:Class`` path that does not name a Parser class.
    """
    from plait.orm.registry import import_object
    from plait.plugins.entry_points import load_plugin

    if ":" not in name:
        parser: type[Parser] = load_plugin("parsers", name, Parser)
        return parser
    obj = import_object(name)
    if not (isinstance(obj, type) and issubclass(obj, Parser)):
        raise ValueError(f"'{name}' is not a Parser class")
    return obj
