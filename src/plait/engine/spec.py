"""The specification of a process class: its ports, exit codes and (for work chains) outline.

Built once per class by calling ``define(spec)`` along the class hierarchy
(each ``define`` calls ``super().define(spec)`` first), then frozen: a spec
cannot change after the class has been used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from plait.engine.exit_code import ExitCode, ExitCodesNamespace
from plait.engine.expose import ExposedPorts, expose_ports
from plait.engine.ports import UNSPECIFIED, InputPort, OutputPort, Port, PortNamespace

if TYPE_CHECKING:
    from plait.engine.process import Process

__all__ = ["ProcessSpec"]


def check_port_name(name: str, full: str | None = None) -> None:
    """Refuse a port name that could not be an attribute or a link label, as aiida-core does.

    A port name is a Python identifier that neither starts nor ends with an
    underscore and holds no double underscore (``__`` separates namespaces
    in link labels).

    Raises:
        ValueError: naming the port and the rule it breaks.
    """
    where = f" (in '{full}')" if full and full != name else ""
    if not name.isidentifier():
        raise ValueError(f"invalid port name '{name}'{where}: it must be a Python identifier")
    if name.startswith("_") or name.endswith("_"):
        raise ValueError(f"invalid port name '{name}'{where}: it cannot start or end with an underscore")
    if "__" in name:
        raise ValueError(f"invalid port name '{name}'{where}: it cannot hold a double underscore")


class ProcessSpec:
    """Ports, exit codes and outline of a process class."""

    def __init__(self) -> None:
        self.inputs = PortNamespace("inputs", port_class=InputPort)
        self.outputs = PortNamespace("outputs", port_class=OutputPort)
        self.exit_codes = ExitCodesNamespace()
        self._outline: tuple[Any, ...] | None = None
        self._frozen = False
        #: what expose_inputs/expose_outputs copied: ``{namespace: {child class: [names]}}``
        self._exposed_inputs: ExposedPorts = {}
        self._exposed_outputs: ExposedPorts = {}

    def _check_open(self) -> None:
        if self._frozen:
            raise RuntimeError("the spec is frozen: declare ports inside define(spec)")

    # -- inputs ------------------------------------------------------------------------
    def input(
        self,
        name: str,
        *,
        valid_type: type | tuple[type, ...] | None = None,
        required: bool = True,
        default: Any = UNSPECIFIED,
        validator: Callable[..., Any] | None = None,
        help: str | None = None,
        non_db: bool | None = None,
        serializer: Callable[[Any], Any] | None = None,
    ) -> Port:
        """Declare an input port; ``name`` may be dotted to place it in a namespace (``"options.x"``).

        Redeclaring a port of a parent class replaces it.  ``non_db`` left out
        follows the namespace; ``non_db=False`` in a ``non_db`` namespace makes
        a node port there (linked as ``namespace__name``).

        Raises:
            ValueError: the name is not a valid port name (see :func:`check_port_name`).
            TypeError: a default (not a callable) that the port would refuse.
        """
        self._check_open()
        namespace, leaf = self._namespace_for(self.inputs, name)
        return namespace.add_port(
            InputPort(
                leaf,
                valid_type=valid_type,
                required=required,
                default=default,
                validator=validator,
                help=help,
                non_db=namespace.non_db if non_db is None else non_db,
                serializer=serializer,
            )
        )

    def input_namespace(
        self,
        name: str,
        *,
        dynamic: bool = False,
        valid_type: type | tuple[type, ...] | None = None,
        required: bool = False,
        validator: Callable[..., Any] | None = None,
        help: str | None = None,
        non_db: bool = False,
        populate_defaults: bool = True,
    ) -> PortNamespace:
        """Declare (or return the existing) nested input namespace ``name``."""
        self._check_open()
        namespace, leaf = self._namespace_for(self.inputs, name)
        existing = namespace.ports.get(leaf)
        if isinstance(existing, PortNamespace):
            existing.dynamic = existing.dynamic or dynamic
            existing.valid_type = existing.valid_type or (
                valid_type if isinstance(valid_type, tuple) or valid_type is None else (valid_type,)
            )
            existing.required = existing.required or required
            existing.validator = validator or existing.validator
            existing.help = help or existing.help
            return existing
        port = PortNamespace(
            leaf,
            dynamic=dynamic,
            valid_type=valid_type,
            required=required,
            validator=validator,
            help=help,
            non_db=non_db or namespace.non_db,
            populate_defaults=populate_defaults,
            port_class=InputPort,
        )
        namespace.add_port(port)
        return port

    # -- outputs -----------------------------------------------------------------------
    def output(
        self,
        name: str,
        *,
        valid_type: type | tuple[type, ...] | None = None,
        required: bool = True,
        help: str | None = None,
        validator: Callable[..., Any] | None = None,
    ) -> Port:
        """Declare an output port (dotted ``name`` to nest it)."""
        self._check_open()
        namespace, leaf = self._namespace_for(self.outputs, name)
        return namespace.add_port(
            OutputPort(leaf, valid_type=valid_type, required=required, help=help, validator=validator)
        )

    def output_namespace(
        self,
        name: str,
        *,
        dynamic: bool = False,
        valid_type: type | tuple[type, ...] | None = None,
        required: bool = False,
        help: str | None = None,
    ) -> PortNamespace:
        """Declare (or return the existing) nested output namespace."""
        self._check_open()
        namespace, leaf = self._namespace_for(self.outputs, name)
        existing = namespace.ports.get(leaf)
        if isinstance(existing, PortNamespace):
            existing.dynamic = existing.dynamic or dynamic
            existing.required = existing.required or required
            existing.help = help or existing.help
            return existing
        port = PortNamespace(
            leaf, dynamic=dynamic, valid_type=valid_type, required=required, help=help, port_class=OutputPort
        )
        namespace.add_port(port)
        return port

    @staticmethod
    def _namespace_for(root: PortNamespace, name: str) -> tuple[PortNamespace, str]:
        for part in name.split("."):
            check_port_name(part, name)
        head, _, leaf = name.rpartition(".")
        if not head:
            return root, leaf
        port = root.get_port(head, create_namespaces=True)
        if not isinstance(port, PortNamespace):
            raise ValueError(f"'{head}' is a port, not a namespace")
        return port, leaf

    # -- exposing the ports of another process (see plait.engine.expose) ---------------------
    def expose_inputs(
        self,
        process_class: type[Process],
        namespace: str | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        namespace_options: dict[str, Any] | None = None,
    ) -> PortNamespace:
        """Declare the inputs of ``process_class`` as inputs of this process (under ``namespace``).

        Raises:
            ValueError: include and exclude both given, a name that is not a port of the child, or
                an unknown ``namespace_options`` key (see :func:`plait.engine.expose.expose_ports`).
        """
        self._check_open()
        return expose_ports(
            kind="inputs",
            process_class=process_class,
            root=self.inputs,
            make_namespace=self.input_namespace,
            memory=self._exposed_inputs,
            namespace=namespace,
            include=include,
            exclude=exclude,
            namespace_options=namespace_options,
        )

    def expose_outputs(
        self,
        process_class: type[Process],
        namespace: str | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        namespace_options: dict[str, Any] | None = None,
    ) -> PortNamespace:
        """Declare the outputs of ``process_class`` as outputs of this process (under ``namespace``).

        Raises:
            ValueError: as :meth:`expose_inputs`.
        """
        self._check_open()
        return expose_ports(
            kind="outputs",
            process_class=process_class,
            root=self.outputs,
            make_namespace=self.output_namespace,
            memory=self._exposed_outputs,
            namespace=namespace,
            include=include,
            exclude=exclude,
            namespace_options=namespace_options,
        )

    # -- exit codes and outline ---------------------------------------------------------
    def exit_code(
        self, status: int, label: str, message: str, *, invalidates_cache: bool = False
    ) -> ExitCode:
        """Declare exit code ``status`` (a positive int) named ``label`` (UPPER_CASE) with ``message``."""
        self._check_open()
        if not isinstance(label, str):
            raise TypeError(f"exit code label must be a str, got {type(label).__name__} {label!r}")
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError(f"exit status of {label} must be an int, got {type(status).__name__} {status!r}")
        if not isinstance(message, str):
            raise TypeError(f"exit code {label}: the message must be a str, got {type(message).__name__}")
        if status <= 0:
            raise ValueError(f"exit status of {label} must be a positive integer, got {status!r}")
        if not label.isidentifier() or label.upper() != label:
            raise ValueError(f"exit code label '{label}' must be an UPPER_CASE identifier")
        code = ExitCode(status, message, label, invalidates_cache)
        self.exit_codes.add(code)
        return code

    def outline(self, *instructions: Any) -> None:
        """Declare the steps of a work chain (see :mod:`plait.engine.workchain`)."""
        self._check_open()
        self._outline = instructions

    def get_outline(self) -> tuple[Any, ...] | None:
        return self._outline

    def freeze(self) -> None:
        self._frozen = True
