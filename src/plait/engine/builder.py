"""Process builders: fill a process's inputs attribute by attribute, checked as you go.

::

    builder = ArithmeticAdd.get_builder()
    builder.code = code
    builder.x = Int(1)
    builder.metadata.options.resources = {"num_machines": 1}
    node = submit(builder)

Setting a name the spec does not declare raises AttributeError at once,
naming the known ports; types are checked at launch with every other rule.
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
        return None

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

    def __repr__(self) -> str:
        return f"<inputs {self._inputs()!r}>"


class ProcessBuilder(ProcessBuilderNamespace):
    """The inputs of one launch of ``process_class``; pass it to run/submit."""

    def __init__(self, process_class: type[Process]) -> None:
        super().__init__(process_class.spec().inputs)
        object.__setattr__(self, "process_class", process_class)

    def __repr__(self) -> str:
        return f"<ProcessBuilder {self.process_class.__name__} {self._inputs()!r}>"
