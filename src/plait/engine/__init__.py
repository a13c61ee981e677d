"""The engine: processes, work chains, process functions, the runner and the launch functions."""

from plait.engine.builder import ProcessBuilder
from plait.engine.caching import disable_caching, enable_caching
from plait.engine.checkpoint import AttributeDict, CheckpointError
from plait.engine.context import current_process
from plait.engine.durable import NonDeterminismError, call, sleep, workflow
from plait.engine.exit_code import ExitCode
from plait.engine.launch import aresume, arun, arun_get_node, resume, run, run_get_node, run_get_pk, submit
from plait.engine.ports import InputValidationError, OutputValidationError
from plait.engine.process import Process, ProcessKilledError
from plait.engine.process_function import calcfunction, workfunction
from plait.engine.restart import BaseRestartWorkChain, ProcessHandlerReport, process_handler
from plait.engine.restart_from import RestartError, restart
from plait.engine.runner import Runner
from plait.engine.spec import ProcessSpec
from plait.engine.waiting import aawait_processes, await_processes
from plait.engine.watch import ProcessEvent, asubmit, wait, watch
from plait.engine.workchain import ToContext, WorkChain, append_, if_, return_, while_

__all__ = [
    "AttributeDict",
    "BaseRestartWorkChain",
    "CheckpointError",
    "ExitCode",
    "InputValidationError",
    "NonDeterminismError",
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
    "WorkChain",
    "aawait_processes",
    "append_",
    "aresume",
    "arun",
    "arun_get_node",
    "asubmit",
    "await_processes",
    "calcfunction",
    "call",
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
    "sleep",
    "submit",
    "wait",
    "watch",
    "while_",
    "workflow",
    "workfunction",
]
