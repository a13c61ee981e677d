"""Exposing the ports of another process: a parent declares its child's inputs and outputs as its own.

A work chain that runs a calculation usually takes the very inputs of that
calculation and returns its outputs.  Instead of declaring each port again,
``define`` says::

    spec.expose_inputs(PwCalculation, namespace="pw", exclude=("structure",))
    spec.expose_outputs(PwCalculation)

The ports are copied (type, default, help, validator, required and
``non_db`` kept) into the parent's spec, under ``namespace`` when one is
given (``"a.b"`` nests).  The spec remembers, per namespace and child class,
which top-level names were exposed; at run time
:meth:`Process.exposed_inputs <plait.engine.process.Process.exposed_inputs>`
gathers exactly those values to pass to the child and
:meth:`Process.exposed_outputs <plait.engine.process.Process.exposed_outputs>`
gathers the child's outputs to forward with ``out_many``.

``include`` and ``exclude`` (mutually exclusive) name ports; a dotted name
(``"metadata.options"``) reaches into a namespace of the child.
``namespace_options`` overrides properties of the namespace the ports are
exposed into (``required``, ``dynamic``, ``populate_defaults``, ``help``,
``valid_type``, ``validator``).

Where plait differs from aiida-core/plumpy on purpose: exposing at the top
level never copies the child's ``metadata`` namespace over the parent's own
(the parent's ``metadata`` describes the parent; expose into a namespace to
give the child's ``metadata.options``); and every mistake (unknown names in
``include``/``exclude``, both given, an unknown namespace option, a class
that is not a process) is refused when the class is defined.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from plait.engine.ports import NAMESPACE_SEPARATOR, PortNamespace

if TYPE_CHECKING:
    from plait.engine.process import Process

__all__ = [
    "NAMESPACE_OPTIONS",
    "ExposedPorts",
    "expose_ports",
    "exposed_names",
    "namespace_list",
    "process_class_of",
]

#: ``{namespace or None: {child class: [top-level names exposed there]}}``
ExposedPorts = dict[str | None, dict[type, list[str]]]

#: the properties ``namespace_options`` may set on the namespace the ports are exposed into
NAMESPACE_OPTIONS = ("required", "dynamic", "populate_defaults", "help", "valid_type", "validator", "non_db")

#: top-level namespaces of the parent that exposing without a namespace leaves alone
_KEPT_AT_TOP = ("metadata",)


def _check_names(
    what: str, names: Sequence[str] | None, source: PortNamespace, child: str, kind: str
) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(
            f"expose_{kind}({child}): {what} must be a list or tuple of port names, got {names!r}"
        )
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"expose_{kind}({child}): {what} holds {name!r}, which is not a port name")
        try:
            source.get_port(name)
        except KeyError:
            known = ", ".join(sorted(source.ports)) or "none"
            raise ValueError(
                f"expose_{kind}({child}): {what} names '{name}', which is not a port of {child} (its "
                f"{kind}: {known})"
            ) from None
    return tuple(names)


def _strip(prefix: str, rules: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The rules below namespace ``prefix`` (``"a.b"`` -> ``"b"`` for ``a``); None stays None."""
    if rules is None:
        return None
    head = prefix + NAMESPACE_SEPARATOR
    return tuple(rule[len(head) :] for rule in rules if rule.startswith(head))


def _absorb(
    destination: PortNamespace,
    source: PortNamespace,
    exclude: tuple[str, ...] | None,
    include: tuple[str, ...] | None,
    skip: tuple[str, ...] = (),
) -> list[str]:
    """Copy the ports of ``source`` into ``destination`` under the rules; the top-level names copied."""
    absorbed: list[str] = []
    for name, port in source.ports.items():
        if name in skip or (exclude is not None and name in exclude):
            continue
        if isinstance(port, PortNamespace):
            if include is not None and name not in include and not _strip(name, include):
                continue
            sub_include = None if include is None or name in include else _strip(name, include)
            sub_exclude = _strip(name, exclude)
            if sub_include is None and not sub_exclude:
                destination.add_port(copy.deepcopy(port))
            else:
                nested = copy.copy(port)
                nested.ports = {}
                _absorb(nested, port, sub_exclude, sub_include)
                destination.add_port(nested)
            absorbed.append(name)
        elif include is None or name in include:
            destination.add_port(copy.deepcopy(port))
            absorbed.append(name)
    return absorbed


def _needs_values(namespace: PortNamespace) -> bool:
    return any(
        p.required or (isinstance(p, PortNamespace) and _needs_values(p)) for p in namespace.ports.values()
    )


def expose_ports(
    *,
    kind: str,
    process_class: type[Process],
    root: PortNamespace,
    make_namespace: Any,
    memory: ExposedPorts,
    namespace: str | None,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    namespace_options: dict[str, Any] | None,
) -> PortNamespace:
    """Copy the ports of the child's ``kind`` (``"inputs"`` or ``"outputs"``) into the parent's ``root``.

    ``make_namespace(name)`` declares (or returns) the parent's namespace
    ``name``.  Returns the namespace the ports went into.

    Raises:
        TypeError: ``process_class`` is not a process class, or a rule is not a list of names.
        ValueError: ``include`` and ``exclude`` both given, a rule names no port of the child, an
            unknown namespace option, or ``namespace_options`` without a namespace.
    """
    from plait.engine.process import Process

    process_class = process_class_of(process_class)
    if not isinstance(process_class, type) or not issubclass(process_class, Process):
        raise TypeError(f"expose_{kind}() needs a process class, got {process_class!r}")
    child = process_class.__name__
    spec = process_class.spec()
    source: PortNamespace = spec.inputs if kind == "inputs" else spec.outputs
    if include is not None and exclude is not None:
        raise ValueError(
            f"expose_{kind}({child}): include and exclude are mutually exclusive; give one of them"
        )
    include_rules = _check_names("include", include, source, child, kind)
    exclude_rules = _check_names("exclude", exclude, source, child, kind)
    options = dict(namespace_options or {})
    unknown = sorted(set(options) - set(NAMESPACE_OPTIONS))
    if unknown:
        raise ValueError(
            f"expose_{kind}({child}): namespace_options {unknown} are not namespace properties "
            f"(known: {', '.join(NAMESPACE_OPTIONS)})"
        )
    if options and not namespace:
        raise ValueError(
            f"expose_{kind}({child}): namespace_options need a namespace (they set its properties); "
            "give namespace='...'"
        )
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ValueError(f"expose_{kind}({child}): namespace must be a non-empty string or None")

    if namespace:
        destination: PortNamespace = make_namespace(namespace)
        absorbed = _absorb(destination, source, exclude_rules, include_rules)
        # the namespace takes the child's top-level properties, then the options given
        destination.dynamic = source.dynamic
        if source.valid_type is not None:
            destination.valid_type = source.valid_type
        if source.validator is not None:
            destination.validator = source.validator
        destination.required = _needs_values(destination)
        for key, value in options.items():
            if key == "valid_type" and value is not None and not isinstance(value, tuple):
                value = (value,)
            setattr(destination, key, value)
        if not destination.required:
            destination.implicit = False  # an optional namespace may be left out as a whole
    else:
        destination = root
        absorbed = _absorb(root, source, exclude_rules, include_rules, skip=_KEPT_AT_TOP)
    memory.setdefault(namespace or None, {})[process_class] = absorbed
    return destination


def process_class_of(process: Any) -> Any:
    """The process class of ``process``: a class as is, a process function's class (``add.process_class``)."""
    inner = getattr(process, "process_class", None)
    if not isinstance(process, type) and isinstance(inner, type):
        return inner
    return process


def namespace_list(namespace: str | None, agglomerate: bool) -> list[str | None]:
    """The namespaces to gather from: ``namespace`` alone, or (``agglomerate``) the top level and
    every parent namespace down to it, outermost first (so the innermost value wins)."""
    if not agglomerate:
        return [namespace or None]
    names: list[str | None] = [None]
    if namespace:
        parts = namespace.split(NAMESPACE_SEPARATOR)
        names.extend(NAMESPACE_SEPARATOR.join(parts[:i]) for i in range(1, len(parts) + 1))
    return names


def exposed_names(
    memory: ExposedPorts, process_class: type, namespace: str | None, agglomerate: bool, kind: str, owner: str
) -> list[tuple[str | None, list[str]]]:
    """``(namespace, names)`` exposed for ``process_class`` along :func:`namespace_list`.

    Raises:
        ValueError: ``process_class`` was exposed in none of those namespaces.
    """
    process_class = process_class_of(process_class)
    found = [
        (name, memory[name][process_class])
        for name in namespace_list(namespace, agglomerate)
        if name in memory and process_class in memory[name]
    ]
    if not found:
        where = f"namespace '{namespace}'" if namespace else "the top level"
        exposed = sorted(
            f"{cls.__name__} in {ns or 'the top level'}" for ns, m in memory.items() for cls in m
        )
        raise ValueError(
            f"{owner} did not expose the {kind} of {getattr(process_class, '__name__', process_class)} in "
            f"{where} (exposed: {', '.join(exposed) or 'nothing'}); call spec.expose_{kind}(...) in define"
        )
    return found
