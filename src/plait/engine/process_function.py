"""``@calcfunction`` and ``@workfunction``: plain Python functions recorded as processes.

A calcfunction *creates* data: its return value (a node, a dict of nodes,
or a plain value that is wrapped into a node) is stored and linked to it
with CREATE links.  A workfunction *returns* data that exists already
(typically created by the calcfunctions it calls) with RETURN links, and
records CALL links to every process it runs.

The parameters become input ports: a type annotation sets the port's type
(``x: Int``; ``x: int`` means ``Int``; ``Int | Float`` is both), a default
makes the port optional (a callable default is called at each launch),
``**kwargs`` makes the inputs dynamic, and ``*args`` values are recorded in
order as inputs ``args_0``, ``args_1``... (aiida-core's labels).  Plain values
passed in (``add(1, 2)``) are wrapped into nodes.  As in aiida-core the
node's label defaults to the function's name, a ``metadata={...}`` parameter
gives the defaults of the metadata inputs, and ``:param x:`` lines of the
docstring become the help of the ports.

Process functions never wait, so they run straight through in the thread
that calls them, with no event loop involved.  That is why one can be
called from anywhere — a script, a notebook cell, a work chain step, another
workfunction — without re-entering a loop.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from plait.engine import lifecycle
from plait.engine.context import current_process, reset_current_process, set_current_process
from plait.engine.exit_code import ExitCode
from plait.engine.lifecycle import ControlSignal, EngineError
from plait.engine.ports import PortNamespace
from plait.engine.process import Process
from plait.engine.spec import ProcessSpec
from plait.orm import (
    Bool,
    CalcFunctionNode,
    Data,
    Dict,
    Float,
    Int,
    LinkType,
    List,
    Node,
    ProcessNode,
    ProcessState,
    Str,
    WorkFunctionNode,
    to_node,
)

__all__ = ["FunctionProcess", "ProcessFunction", "calcfunction", "workfunction"]

F = TypeVar("F", bound=Callable[..., Any])

_PYTHON_TO_NODE: dict[type, type[Node]] = {
    int: Int,
    float: Float,
    str: Str,
    bool: Bool,
    dict: Dict,
    list: List,
}


def _annotation_types(annotation: Any) -> tuple[tuple[type, ...] | None, bool]:
    """Port types for an annotation, and whether it allows None."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None, False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        types_found: list[type] = []
        optional = False
        for arg in typing.get_args(annotation):
            if arg is type(None):
                optional = True
                continue
            sub, _ = _annotation_types(arg)
            if sub is None:
                return None, optional
            types_found.extend(sub)
        return tuple(types_found), optional
    if origin is not None:
        annotation = origin
    if isinstance(annotation, type):
        if issubclass(annotation, Node):
            return (annotation,), False
        if annotation in _PYTHON_TO_NODE:
            return (_PYTHON_TO_NODE[annotation],), False
    return None, False


class FunctionProcess(Process):
    """The process class generated for one decorated function."""

    _func: ClassVar[Callable[..., Any]]
    _signature: ClassVar[inspect.Signature]
    _var_keyword: ClassVar[str | None] = None
    _var_positional: ClassVar[str | None] = None

    @classmethod
    def define(cls, spec: ProcessSpec) -> None:
        super().define(spec)
        try:
            hints = typing.get_type_hints(cls._func)
        except Exception:  # unresolvable string annotations: fall back to no types
            hints = {}
        summary, param_help = parse_docstring(cls._func.__doc__)
        spec.inputs.help = summary or None
        metadata_ports = spec.inputs["metadata"]
        assert isinstance(metadata_ports, PortNamespace)
        metadata_ports["label"].default = cls._func.__name__  # the node's label, unless one is given
        for name, param in cls._signature.parameters.items():
            if name == "metadata":
                for key, value in dict(param.default or {}).items():
                    if key not in metadata_ports:
                        raise TypeError(f"{cls._func.__qualname__}: the metadata default has no port '{key}'")
                    metadata_ports[key].default = value
                continue
            if param.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
                spec.inputs.dynamic = True
                spec.inputs.valid_type = (Data,)
                continue
            valid_type, optional = _annotation_types(hints.get(name, param.annotation))
            has_default = param.default is not inspect.Parameter.empty
            default = param.default if has_default and param.default is not None else inspect.Parameter.empty
            spec.input(
                name,
                valid_type=valid_type or (Data,),
                required=not (has_default or optional),
                default=_default_for(default),
                serializer=to_node,
                help=param_help.get(name),
            )
        spec.outputs.dynamic = True
        spec.outputs.valid_type = (Data,)
        spec.output("result", required=False, valid_type=Data)

    @classmethod
    def process_type_string(cls) -> str:
        return f"{cls._func.__module__}:{cls._func.__qualname__}"

    @classmethod
    def process_label_string(cls) -> str:
        return cls._func.__name__

    @classmethod
    def check_importable(cls) -> str | None:
        if "<locals>" in cls._func.__qualname__:
            return f"{cls._func.__qualname__} is defined inside a function"
        if cls._func.__module__ == "__main__":
            return f"{cls._func.__qualname__} is defined in the __main__ script"
        return None

    def _function_arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """The call of the function rebuilt from the inputs.

        With ``*args`` in the signature every parameter before it is passed by
        position, followed by the ``{name}_{index}`` inputs in index order.
        """
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        positional = self._var_positional is not None
        for name, param in self._signature.parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD or name == "metadata":
                continue
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                args.extend(self._inputs_raw[label] for label in self._var_positional_labels())
                positional = False
                continue
            value = self._inputs_raw.get(
                name, param.default if param.default is not inspect.Parameter.empty else None
            )
            if param.kind is inspect.Parameter.POSITIONAL_ONLY or positional:
                args.append(value)
            else:
                kwargs[name] = value
        if self._var_keyword:
            known = {*self._signature.parameters, *self._var_positional_labels()}
            for key, value in self._inputs_raw.items():
                if key not in known and key != "metadata":
                    kwargs[key] = value
        return args, kwargs

    def _var_positional_labels(self) -> list[str]:
        """The input labels of the ``*args`` values, in the order they were passed."""
        if self._var_positional is None:
            return []
        prefix = f"{self._var_positional}_"
        indices = [
            int(key[len(prefix) :])
            for key in self._inputs_raw
            if key.startswith(prefix) and key[len(prefix) :].isdigit()
        ]
        return [f"{prefix}{index}" for index in sorted(indices)]

    def _register_result(self, result: Any) -> ExitCode | None:
        if result is None:
            return None
        if isinstance(result, ExitCode):
            return result
        if isinstance(result, Node):
            self.out("result", result)
            return None
        if isinstance(result, Mapping):
            self._register_mapping(result, "")
            return None
        if isinstance(self.node, WorkFunctionNode):
            raise TypeError(
                f"workfunction {self.process_label_string()} returned a {type(result).__name__}: a "
                "workfunction "
                "returns stored nodes (or a dict of them); create new data with a calcfunction"
            )
        self.out("result", to_node(result))
        return None

    def _run_function(self) -> ExitCode | None:
        if isinstance(self.node, CalcFunctionNode):
            from plait.engine.caching import reuse_cached_outputs

            if reuse_cached_outputs(self):
                return None  # finished ok with the source's outputs, without running
        args, kwargs = self._function_arguments()
        return self._register_result(self._func(*args, **kwargs))

    def _register_mapping(self, result: Mapping[str, Any], prefix: str) -> None:
        """A returned dict: nested mappings are output namespaces, plain leaves are wrapped into nodes."""
        for key, value in result.items():
            if isinstance(value, Mapping) and not isinstance(value, Node):
                self._register_mapping(value, f"{prefix}{key}.")
            elif isinstance(value, Node) or isinstance(self.node, WorkFunctionNode):
                self.out(f"{prefix}{key}", value)
            else:
                self.out(f"{prefix}{key}", to_node(value))

    def execute(self) -> tuple[dict[str, Any], ProcessNode]:
        """Store, run the function, record outputs; return ``(outputs, node)``.  Raises what the
        function raises.

        Called inside a running process (a step, a workfunction), the call is
        one of the caller's calls: held under the caller's lease, and fenced by
        it (a caller that was killed or taken over launches nothing).  When a
        step runs again after a crash, the call it made before is found by its
        call key: a finished one returns its outputs without running again, an
        interrupted one runs again *in place* (same node, same call key), so
        the caller's calls never shift.

        Raises:
            EngineError: the call ended excepted or killed in the interrupted attempt of this step.
        """
        parent = current_process()
        owner = parent._owner if parent is not None else None
        lease = parent.runner.lease_seconds if parent is not None and parent.runner is not None else 0.0
        if parent is not None:
            recorded = parent._reuse_recorded_call(type(self))
            if recorded is not None:
                return self._replay(recorded, owner, lease)
        self._store_new(state=ProcessState.RUNNING, parent=parent, owner=owner, lease_seconds=lease)
        return self._run_here()

    def _replay(
        self, recorded: ProcessNode, owner: str | None, lease: float
    ) -> tuple[dict[str, Any], ProcessNode]:
        """The call that the interrupted attempt of the caller's step made: its result, or run it again."""
        recorded.refresh()
        if recorded.is_finished:
            outputs = {
                label: node for label, _, node in recorded.get_outgoing((LinkType.CREATE, LinkType.RETURN))
            }
            return _nest(outputs), recorded
        if recorded.is_terminated:
            why = recorded.exit_message or (recorded.exception or "").strip().splitlines()[-1:]
            raise EngineError(
                f"{self.process_label_string()} (process {recorded.pk}) ended "
                f"{recorded.process_state.value} in the interrupted attempt of this step: {why}"
            )
        again = type(self)._load(recorded, self.runner)
        assert isinstance(again, FunctionProcess)
        again._owner = owner
        if owner is not None:
            lifecycle.take_lease(again.pk, owner, lease, force=True)  # its caller's holder holds it
        return again._run_here()

    def _run_here(self) -> tuple[dict[str, Any], ProcessNode]:
        token = set_current_process(self)
        try:
            self._finish(self._run_function())
        except ControlSignal:
            self._killed("its caller was killed")
            raise
        except BaseException as exc:
            self._except(exc)
            raise
        finally:
            reset_current_process(token)
        return self.nested_outputs(), self.node

    async def _execute(self) -> ExitCode | None:
        """Run a process function launched with ``submit`` (already stored) in a step thread."""
        return await self.runner.call_in_thread(self, self._run_in_thread)  # type: ignore[union-attr]

    def _run_in_thread(self) -> ExitCode | None:
        token = set_current_process(self)
        try:
            return self._run_function()
        finally:
            reset_current_process(token)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for label, value in flat.items():
        parts = label.split("__")
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return nested


def _default_for(default: Any) -> Any:
    """The port default for a parameter default: a callable is called at each launch (as in
    aiida-core), a plain value is wrapped into a new node at each launch."""
    from plait.engine.ports import UNSPECIFIED

    if default is inspect.Parameter.empty:
        return UNSPECIFIED
    if isinstance(default, Node):
        return default
    if callable(default):
        return lambda: to_node(default())
    return lambda: to_node(default)


_PARAM_LINE = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) of a docstring and the help of each ``:param name:`` line.

    A ``:param`` description may go on over further lines indented deeper
    than the ``:param`` line; they are joined with single spaces.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith(":"):
            break
        summary.append(line.strip())
    helps: dict[str, str] = {}
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        match = _PARAM_LINE.match(stripped)
        if match:
            current = match.group(1)
            helps[current] = match.group(2).strip()
        elif current is not None and stripped and not stripped.startswith(":") and line[:1].isspace():
            helps[current] = f"{helps[current]} {stripped}".strip()
        else:
            current = None
    return " ".join(summary), helps


class ProcessFunction:
    """The callable that ``@calcfunction``/``@workfunction`` return; calling it runs the process."""

    def __init__(self, func: Callable[..., Any], node_class: type[ProcessNode]) -> None:
        signature = inspect.signature(func)
        metadata = signature.parameters.get("metadata")
        if metadata is not None and (
            metadata.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            or not isinstance(metadata.default, Mapping)
        ):
            raise TypeError(
                f"{func.__qualname__}: the parameter name 'metadata' is reserved; it may only give the "
                "defaults of the metadata inputs, as a dict (metadata={'label': ...})"
            )
        var_keyword = next(
            (p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD), None
        )
        var_positional = next(
            (p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_POSITIONAL),
            None,
        )
        self.__wrapped__ = func
        functools.update_wrapper(self, func)
        self.process_class: type[FunctionProcess] = type(
            f"{func.__name__}_process",
            (FunctionProcess,),
            {
                "_func": staticmethod(func),
                "_signature": signature,
                "_var_keyword": var_keyword,
                "_var_positional": var_positional,
                "_node_class": node_class,
                "__module__": func.__module__,
                "__qualname__": func.__qualname__,
            },
        )
        self.node_class = node_class
        self.is_process_function = True

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        metadata = kwargs.pop("metadata", None)
        try:
            bound = self.process_class._signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.process_class.process_label_string()}(): {exc}") from None
        inputs = dict(bound.arguments)
        var_keyword = self.process_class._var_keyword
        extra = dict(inputs.pop(var_keyword)) if var_keyword and var_keyword in inputs else {}
        var_positional = self.process_class._var_positional
        for index, value in enumerate(inputs.pop(var_positional, ()) if var_positional else ()):
            label = f"{var_positional}_{index}"
            if label in extra or label in inputs:
                raise ValueError(
                    f"{self.process_class.process_label_string()}(): positional argument {index} of "
                    f"*{var_positional} is recorded as input '{label}', which is also given by name; "
                    "rename that keyword argument"
                )
            inputs[label] = value
        inputs.update(extra)
        if metadata is not None:
            inputs["metadata"] = metadata
        return inputs

    def run_get_node(self, *args: Any, **kwargs: Any) -> tuple[Any, ProcessNode]:
        """Run the function as a process; return ``(result, node)``.

        ``result`` is the single output node when the function returned one
        node, else the dict of outputs.
        """
        inputs = self.process_class.prepare_inputs(self._bind(args, kwargs))
        outputs, node = self.process_class(inputs).execute()
        if list(outputs) == ["result"]:
            return outputs["result"], node
        return outputs, node

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.run_get_node(*args, **kwargs)[0]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run_get_node(*args, **kwargs)[0]

    def get_builder(self) -> Any:
        return self.process_class.get_builder()

    def spec(self) -> ProcessSpec:
        return self.process_class.spec()

    def __repr__(self) -> str:
        kind = "calcfunction" if self.node_class is CalcFunctionNode else "workfunction"
        func = self.__wrapped__
        return f"<{kind} {func.__module__}.{func.__qualname__}>"


def calcfunction(func: F) -> F:
    """Decorate a function that creates data from its inputs; every call is recorded with provenance."""
    return ProcessFunction(func, CalcFunctionNode)  # type: ignore[return-value]


def workfunction(func: F) -> F:
    """Decorate a function that calls other processes and returns (existing) data from them."""
    return ProcessFunction(func, WorkFunctionNode)  # type: ignore[return-value]
