"""Ports: the declared inputs and outputs of a process, and their validation.

A process class declares ports in ``define(spec)``; every launch runs the
given inputs through :meth:`PortNamespace.process` *before anything is
stored*: unknown names, missing required inputs, wrong types and validator
complaints are all collected and raised together as one
:class:`InputValidationError` whose message names each port by its full path
(``"parameters.cutoff"``) and the reason.

Ports holding nodes are linked in the provenance graph.  ``non_db`` ports
(``metadata.label``, ``metadata.options.*``) hold plain JSON values that
configure the run and are recorded on the process node as attributes.

Plain Python values given to a node port are wrapped in the matching node
type when the port accepts it (``3`` for a port of type ``Int``), so users
need not write ``Int(3)`` everywhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from plait.orm import Bool, Dict, Float, Int, List, Node, Str

__all__ = [
    "UNSPECIFIED",
    "InputPort",
    "InputValidationError",
    "OutputPort",
    "OutputValidationError",
    "Port",
    "PortNamespace",
]

NAMESPACE_SEPARATOR = "."
LINK_SEPARATOR = "__"


class _Unspecified:
    def __repr__(self) -> str:
        return "UNSPECIFIED"

    def __bool__(self) -> bool:
        return False

    def __copy__(self) -> _Unspecified:
        return self  # one marker: ``default is UNSPECIFIED`` holds for copied (exposed) ports

    def __deepcopy__(self, memo: dict[int, Any]) -> _Unspecified:
        return self


UNSPECIFIED: Any = _Unspecified()


class InputValidationError(ValueError):
    """Inputs refused at launch; nothing was stored.  ``errors`` lists each ``(port, reason)``."""

    def __init__(self, process_label: str, errors: list[tuple[str, str]]) -> None:
        self.process_label = process_label
        self.errors = errors
        lines = [f"input '{port}': {reason}" if port else reason for port, reason in errors]
        super().__init__(f"invalid inputs for {process_label}: " + "; ".join(lines))


class OutputValidationError(ValueError):
    """An output does not match its port (wrong type, undeclared name)."""


_AUTO_WRAP: tuple[tuple[type, Callable[[Any], Node]], ...] = (
    (bool, Bool),
    (int, Int),
    (float, Float),
    (str, Str),
    (dict, Dict),
    (list, List),
)


def _type_names(valid_type: tuple[type, ...] | None) -> str:
    if not valid_type:
        return "anything"
    return " or ".join(t.__name__ for t in valid_type)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _call_validator(validator: Callable[..., Any], value: Any, namespace: Any) -> str | None:
    try:
        params = len(inspect.signature(validator).parameters)
    except (TypeError, ValueError):
        params = 1
    result = validator(value, namespace) if params >= 2 else validator(value)
    return None if result is None or result is True else str(result)


class Port:
    """One input or output.

    Args:
        name: the port's name (no dots; namespaces nest ports).
        valid_type: a class or tuple of classes the value must be an instance of.
        required: a value must be given (or defaulted).
        default: value used when none is given; a zero-argument callable is
            called at each launch (use that for node defaults).
        validator: ``f(value)`` or ``f(value, namespace_values)`` returning an
            error message, or None when the value is fine.
        help: one line shown by ``plait process show`` and the docs.
        non_db: the value is plain JSON configuration, not a node.
        serializer: turns a plain value into a node (``to_node``).
    """

    def __init__(
        self,
        name: str,
        *,
        valid_type: type | tuple[type, ...] | None = None,
        required: bool = True,
        default: Any = UNSPECIFIED,
        validator: Callable[..., Any] | None = None,
        help: str | None = None,
        non_db: bool = False,
        serializer: Callable[[Any], Any] | None = None,
    ) -> None:
        if not name or NAMESPACE_SEPARATOR in name or name.startswith("_") or LINK_SEPARATOR in name:
            raise ValueError(f"invalid port name '{name}': no dots, no '__', no leading underscore")
        self.name = name
        if valid_type is not None and not isinstance(valid_type, tuple):
            valid_type = (valid_type,)
        self.valid_type: tuple[type, ...] | None = valid_type
        self.required = required and default is UNSPECIFIED
        self.default = default
        self.validator = validator
        self.help = help
        self.non_db = non_db
        self.serializer = serializer
        self._check_default()

    def _check_default(self) -> None:
        """Refuse, when the port is declared, a default (not a callable) that it would refuse.

        Raises:
            TypeError: naming the port, the default and the types it accepts.
        """
        default = self.default
        if default is UNSPECIFIED or default is None or not self.valid_type:
            return
        if callable(default) and not isinstance(default, (type, Node)):
            return  # called at each launch; checked then
        try:
            value = self.serialize(default)
        except (TypeError, ValueError):
            value = default
        if not isinstance(value, self.valid_type):
            raise TypeError(
                f"port '{self.name}': the default {_describe(default)} is not a valid value; the port "
                f"accepts {_type_names(self.valid_type)}"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.name}' {_type_names(self.valid_type)}>"

    @property
    def has_default(self) -> bool:
        return self.default is not UNSPECIFIED

    def get_default(self) -> Any:
        return (
            self.default() if callable(self.default) and not isinstance(self.default, type) else self.default
        )

    def serialize(self, value: Any) -> Any:
        """Wrap a plain value into a node when this port wants nodes."""
        if self.serializer is not None and not isinstance(value, Node):
            return self.serializer(value)
        if self.non_db or isinstance(value, Node) or not self.valid_type:
            return value
        for python_type, node_type in _AUTO_WRAP:
            if isinstance(value, python_type) and any(
                isinstance(node_type, type) and issubclass(node_type, t) for t in self.valid_type
            ):
                if python_type is int and isinstance(value, bool):
                    continue
                return node_type(value)
        return value

    def validate(self, value: Any, path: str, namespace: Any = None) -> list[tuple[str, str]]:
        if self.valid_type and not isinstance(value, self.valid_type):
            return [(path, f"expected {_type_names(self.valid_type)}, got {_describe(value)}")]
        if self.validator is not None:
            message = _call_validator(self.validator, value, namespace)
            if message:
                return [(path, message)]
        return []


class InputPort(Port):
    """A port of the inputs namespace."""


class OutputPort(Port):
    """A port of the outputs namespace."""


class PortNamespace(Port):
    """A group of ports, itself a port; ``dynamic`` namespaces accept names not declared.

    Args:
        dynamic: accept any further name; its value must match ``valid_type``.
        populate_defaults: fill defaults of the ports inside even when the
            namespace itself was not given.
    """

    def __init__(
        self,
        name: str = "inputs",
        *,
        dynamic: bool = False,
        valid_type: type | tuple[type, ...] | None = None,
        required: bool = False,
        validator: Callable[..., Any] | None = None,
        help: str | None = None,
        non_db: bool = False,
        populate_defaults: bool = True,
        port_class: type[Port] = InputPort,
    ) -> None:
        super().__init__(
            name if name else "inputs",
            valid_type=valid_type,
            required=required,
            validator=validator,
            help=help,
            non_db=non_db,
        )
        self.dynamic = dynamic
        self.populate_defaults = populate_defaults
        self.port_class = port_class
        self.ports: dict[str, Port] = {}
        #: made by a dotted port name rather than declared with input_namespace()
        self.implicit = False

    def __repr__(self) -> str:
        return f"<PortNamespace '{self.name}' ports={list(self.ports)}{' dynamic' if self.dynamic else ''}>"

    def needs_values(self) -> bool:
        """Whether leaving this namespace out is an error: it is required, or it was made
        implicitly (by a dotted port name) and holds a required port."""
        if self.required:
            return True
        if not self.implicit:
            return False
        return any(
            p.needs_values() if isinstance(p, PortNamespace) else p.required for p in self.ports.values()
        )

    # -- declaring ---------------------------------------------------------------
    def add_port(self, port: Port) -> Port:
        self.ports[port.name] = port
        return port

    def get_port(self, path: str, *, create_namespaces: bool = False) -> Port:
        """The port at dotted ``path`` (``"metadata.options.resources"``)."""
        head, _, rest = path.partition(NAMESPACE_SEPARATOR)
        port = self.ports.get(head)
        if port is None:
            if not create_namespaces:
                raise KeyError(f"no port '{path}' in namespace '{self.name}'")
            namespace = PortNamespace(head, non_db=self.non_db, port_class=self.port_class, dynamic=False)
            namespace.implicit = True
            port = self.add_port(namespace)
        if not rest:
            return port
        if not isinstance(port, PortNamespace):
            raise KeyError(f"'{head}' is a port, not a namespace")
        return port.get_port(rest, create_namespaces=create_namespaces)

    def __contains__(self, name: object) -> bool:
        return name in self.ports

    def __iter__(self) -> Iterator[str]:
        return iter(self.ports)

    def __getitem__(self, name: str) -> Port:
        return self.ports[name]

    # -- processing values -------------------------------------------------------
    def process(self, values: Mapping[str, Any] | None, process_label: str) -> dict[str, Any]:
        """Fill defaults, wrap plain values, validate; return the normalised nested inputs.

        Raises:
            InputValidationError: listing every problem; nothing has been stored.
        """
        errors: list[tuple[str, str]] = []
        result = self._process(values or {}, "", errors, given=True)
        if not errors and self.validator is not None:  # the validator of the whole inputs namespace
            message = _call_validator(self.validator, result, None)
            if message:
                errors.append(("", message))
        if errors:
            raise InputValidationError(process_label, errors)
        return result

    def _process(
        self, values: Mapping[str, Any], prefix: str, errors: list[tuple[str, str]], given: bool
    ) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in values.items():
            path = f"{prefix}{key}"
            port = self.ports.get(key)
            if port is None:
                if not self.dynamic:
                    known = ", ".join(sorted(self.ports)) or "none"
                    where = f"namespace '{prefix[:-1]}'" if prefix else "this process"
                    errors.append((path, f"is not an input of {where} (known: {known})"))
                    continue
                if isinstance(value, Mapping) and not isinstance(value, Node) and not self.non_db:
                    dynamic = PortNamespace(
                        key, dynamic=True, valid_type=self.valid_type, port_class=self.port_class
                    )
                    result[key] = dynamic._process(value, path + NAMESPACE_SEPARATOR, errors, True)
                    continue
                port = self.port_class(key, valid_type=self.valid_type, non_db=self.non_db)
            if value is None:
                continue  # None is "not given": the default applies, a required port is missing
            if isinstance(port, PortNamespace):
                if not isinstance(value, Mapping):
                    errors.append((path, f"is a namespace and needs a mapping, got {_describe(value)}"))
                    continue
                result[key] = port._process(value, path + NAMESPACE_SEPARATOR, errors, True)
                continue
            value = port.serialize(value)
            result[key] = value
        # defaults and required ports that were not given
        for key, port in self.ports.items():
            if key in result:
                continue
            path = f"{prefix}{key}"
            if isinstance(port, PortNamespace):
                if port.populate_defaults or key in values:
                    nested = port._process({}, path + NAMESPACE_SEPARATOR, errors, port.needs_values())
                    if nested or port.required:
                        result[key] = nested
                continue
            if port.has_default:
                result[key] = port.serialize(port.get_default())
            elif port.required and (given or self.required):
                errors.append((path, "is required but was not given"))
        # types and validators, once every value is in place
        for key, value in result.items():
            port = self.ports.get(key)
            path = f"{prefix}{key}"
            if port is None:
                if self.valid_type and not isinstance(value, dict) and not isinstance(value, self.valid_type):
                    errors.append((path, f"expected {_type_names(self.valid_type)}, got {_describe(value)}"))
                continue
            if isinstance(port, PortNamespace):
                if port.validator is not None and not any(e[0].startswith(path) for e in errors):
                    message = _call_validator(port.validator, value, result)
                    if message:
                        errors.append((path, message))
                continue
            if not port.non_db and not isinstance(value, Node) and not port.valid_type:
                errors.append((path, f"needs a node (e.g. Int, Dict), got {_describe(value)}"))
                continue
            errors.extend(port.validate(value, path, result))
        return result

    def validate_output(self, label: str, value: Any) -> None:
        """Check one output value against its port (``label`` may be dotted).

        Raises:
            OutputValidationError: undeclared output or wrong type.
        """
        namespace: PortNamespace = self
        parts = label.split(NAMESPACE_SEPARATOR)
        for depth, part in enumerate(parts):
            port = namespace.ports.get(part)
            last = depth == len(parts) - 1
            if port is None:
                if namespace.dynamic:
                    if last and namespace.valid_type and not isinstance(value, namespace.valid_type):
                        raise OutputValidationError(
                            f"output '{label}': expected {_type_names(namespace.valid_type)}, got "
                            f"{_describe(value)}"
                        )
                    if not isinstance(value, Node):
                        raise OutputValidationError(f"output '{label}': needs a node, got {_describe(value)}")
                    return
                known = ", ".join(sorted(namespace.ports)) or "none"
                raise OutputValidationError(f"output '{label}' is not declared (declared: {known})")
            if isinstance(port, PortNamespace):
                if last:
                    raise OutputValidationError(
                        f"output '{label}' is a namespace; give a node to one of its ports"
                    )
                namespace = port
                continue
            if not last:
                raise OutputValidationError(f"output '{label}': '{part}' is a port, not a namespace")
            if not isinstance(value, Node):
                raise OutputValidationError(f"output '{label}': needs a node, got {_describe(value)}")
            errors = port.validate(value, label)
            if errors:
                raise OutputValidationError(f"output '{errors[0][0]}': {errors[0][1]}")
            return

    def missing_outputs(self, labels: set[str], prefix: str = "") -> list[str]:
        """Required output ports (dotted paths) that are not among ``labels``."""
        missing = []
        for key, port in self.ports.items():
            path = f"{prefix}{key}"
            if isinstance(port, PortNamespace):
                has_any = any(label.startswith(path + NAMESPACE_SEPARATOR) for label in labels)
                if port.required or has_any:
                    missing.extend(port.missing_outputs(labels, path + NAMESPACE_SEPARATOR))
            elif port.required and path not in labels:
                missing.append(path)
        return missing


def flatten_nodes(
    values: Mapping[str, Any], namespace: PortNamespace | None, prefix: str = ""
) -> dict[str, Node]:
    """Link labels (``a__b``) and nodes of every node input, skipping non_db ports."""
    flat: dict[str, Node] = {}
    for key, value in values.items():
        port = namespace.ports.get(key) if namespace is not None else None
        if port is not None and port.non_db and not _holds_db_ports(port):
            continue
        label = f"{prefix}{key}"
        if isinstance(value, Node):
            flat[label] = value
        elif isinstance(value, Mapping):
            sub = port if isinstance(port, PortNamespace) else None
            if sub is None and namespace is not None and namespace.non_db:
                continue
            flat.update(flatten_nodes(value, sub, label + LINK_SEPARATOR))
    return flat


def extract_non_db(values: Mapping[str, Any], namespace: PortNamespace) -> dict[str, Any]:
    """The plain (non_db) values of the inputs, nested as given."""
    result: dict[str, Any] = {}
    for key, value in values.items():
        port = namespace.ports.get(key)
        if port is None:
            continue
        if port.non_db and not _holds_db_ports(port):
            result[key] = value
        elif isinstance(port, PortNamespace) and isinstance(value, Mapping):
            nested = extract_non_db(value, port)
            if nested:
                result[key] = nested
    return result


def _holds_db_ports(port: Port) -> bool:
    """Whether a (non_db) namespace holds a port declared with ``non_db=False``: its nodes are
    linked, and only its other values are recorded as plain attributes."""
    return isinstance(port, PortNamespace) and any(
        not sub.non_db or _holds_db_ports(sub) for sub in port.ports.values()
    )
