"""Process builders: fill a process's inputs attribute by attribute, checked as you go.

::

    builder = ArithmeticAdd.get_builder()
    builder.code = code
    builder.x = Int(1)
    builder.metadata.options.resources = {"num_machines": 1}
    node = submit(builder)

Setting a name the spec does not declare raises AttributeError at once,
naming the known ports; types are checked at launch with every other rule.
A port not set reads as its default (None without one), and the builder's
repr shows those defaults, as aiida-core's builder does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait.engine.ports import PortNamespace

if TYPE_CHECKING:
    from plait.engine.process import Process

__all__ = ["ProcessBuilder", "ProcessBuilderNamespace"]


class ProcessBuilderNamespace:
    """One namespace of a builder; nested namespaces are created on first access."""

    def __init__(self, namespace: PortNamespace, path: str = "") -> None:
        object.__setattr__(self, "_namespace", namespace)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_values", {})

    def __setattr__(self, name: str, value: Any) -> None:
        namespace: PortNamespace = self._namespace
        port = namespace.ports.get(name)
        if port is None and not namespace.dynamic:
            known = ", ".join(sorted(namespace.ports))
            raise AttributeError(f"'{self._path + name}' is not an input (known here: {known})")
        if isinstance(port, PortNamespace) and isinstance(value, dict):
            sub = ProcessBuilderNamespace(port, f"{self._path}{name}.")
            for key, item in value.items():
                setattr(sub, key, item)
            value = sub
        self._values[name] = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        values = self._values
        if name in values:
            return values[name]
        port = self._namespace.ports.get(name)
        if isinstance(port, PortNamespace):
            sub = ProcessBuilderNamespace(port, f"{self._path}{name}.")
            values[name] = sub
            return sub
        if port is None:
            raise AttributeError(f"'{self._path + name}' is not an input")
        return port.get_default() if port.has_default else None

    def __delattr__(self, name: str) -> None:
        self._values.pop(name, None)

    def __setitem__(self, name: str, value: Any) -> None:
        setattr(self, name, value)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def __dir__(self) -> list[str]:
        return sorted(self._namespace.ports)

    def _inputs(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in self._values.items():
            if isinstance(value, ProcessBuilderNamespace):
                nested = value._inputs()
                if nested:
                    result[key] = nested
            elif value is not None:
                result[key] = value
        return result

    def _shown(self) -> dict[str, Any]:
        """What was set, and the defaults of the ports not set (what a launch would get)."""
        result: dict[str, Any] = {}
        for key, port in self._namespace.ports.items():
            value = self._values.get(key)
            if isinstance(port, PortNamespace):
                sub = value if isinstance(value, ProcessBuilderNamespace) else ProcessBuilderNamespace(port)
                nested = sub._shown()
                if nested:
                    result[key] = nested
            elif value is not None:
                result[key] = value
            elif port.has_default:
                result[key] = port.get_default()
        for key, value in self._values.items():  # names of a dynamic namespace
            if key not in result and key not in self._namespace.ports and value is not None:
                result[key] = value._shown() if isinstance(value, ProcessBuilderNamespace) else value
        return result

    def __repr__(self) -> str:
        return f"<inputs {self._shown()!r}>"


class ProcessBuilder(ProcessBuilderNamespace):
    """The inputs of one launch of ``process_class``; pass it to run/submit."""

    def __init__(self, process_class: type[Process]) -> None:
        super().__init__(process_class.spec().inputs)
        object.__setattr__(self, "process_class", process_class)

    def __repr__(self) -> str:
        return f"<ProcessBuilder {self.process_class.__name__} {self._shown()!r}>"
