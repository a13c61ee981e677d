"""plait: a workflow engine for computational science, with full provenance, on asyncio.

The names most scripts need are available from here::

    from plait import calcfunction, WorkChain, run, submit
    from plait.orm import Int

They are imported on first use, so ``import plait`` is fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ENGINE = (
    "AttributeDict",
    "BaseRestartWorkChain",
    "CheckpointError",
    "ExitCode",
    "InputValidationError",
    "OutputValidationError",
    "Process",
    "ProcessBuilder",
    "ProcessEvent",
    "ProcessHandlerReport",
    "ProcessKilledError",
    "ProcessSpec",
    "RestartError",
    "Runner",
    "ToContext",
    "NonDeterminismError",
    "WorkChain",
    "aawait_processes",
    "append_",
    "aresume",
    "arun",
    "arun_get_node",
    "asubmit",
    "await_processes",
    "calcfunction",
    "current_process",
    "disable_caching",
    "enable_caching",
    "if_",
    "process_handler",
    "restart",
    "resume",
    "return_",
    "run",
    "run_get_node",
    "run_get_pk",
    "submit",
    "wait",
    "watch",
    "while_",
    "workfunction",
    "workflow",
    "call",
    "sleep",
)
_LAZY = {name: "plait.engine" for name in _ENGINE}
_LAZY.update(
    {
        "load_node": "plait.orm",
        "load_group": "plait.orm",
        "load_profile": "plait.storage",
        "get_profile": "plait.storage",
        "CalcJob": "plait.engine.calcjob",
        "CalcInfo": "plait.engine.calcjob",
        "CodeInfo": "plait.engine.calcjob",
        "Parser": "plait.engine.parser",
        "CalcJobMonitorAction": "plait.engine.monitors",
        "CalcJobMonitorResult": "plait.engine.monitors",
    }
)

__all__ = ["__version__", *sorted(_LAZY)]

if TYPE_CHECKING:
    from plait.engine import *  # noqa: F403
    from plait.orm import load_group, load_node  # noqa: F401
    from plait.storage import get_profile, load_profile  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plait' has no attribute '{name}'")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
