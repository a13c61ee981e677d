"""``plait demo``: run a small workflow end to end and show what was recorded.

The workflow is :class:`plait.workflows.demo.NewtonSqrtWorkChain`; it runs in
this interpreter (no daemon needed) on the current profile — or, with
``--daemon``, it is submitted to the profile's running daemon and awaited —
then its provenance is printed as a tree with the pks to explore it further.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from plait.cli._common import CliError, CliState, console, format_time, pass_state

if TYPE_CHECKING:
    from plait.engine.process import Process
    from plait.orm import ProcessNode
    from plait.storage.profile import Profile

__all__ = ["demo"]


def _through_daemon(
    profile: Profile, process_class: type[Process], inputs: dict[str, Any], timeout: float, out: Console
) -> ProcessNode:
    from plait.daemon import client
    from plait.engine import submit

    if not client.is_running(profile):
        raise CliError(
            f"the daemon of profile '{profile.name}' is not running: start it with `plait daemon start`"
        )
    node = submit(process_class, **inputs)
    out.print(Text(f"Submitted as process {node.pk}; waiting for the daemon..."))
    deadline = time.monotonic() + timeout
    while not node.refresh().is_terminated:
        if time.monotonic() > deadline:
            raise CliError(
                f"process {node.pk} did not finish within {timeout:g} s (see `plait process show {node.pk}`)"
            )
        time.sleep(0.1)
    return node


@click.command()
@click.option(
    "--number", "-n", type=float, default=2.0, show_default=True, help="Compute the square root of this."
)
@click.option(
    "--tolerance", type=float, default=1e-6, show_default=True, help="Stop when |x*x - number| < this."
)
@click.option(
    "--max-iterations", type=int, default=20, show_default=True, help="Give up after this many iterations."
)
@click.option(
    "--daemon",
    "through_daemon",
    is_flag=True,
    help="Submit it to the running daemon instead of running it here.",
)
@click.option(
    "--timeout", type=float, default=120.0, show_default=True, help="With --daemon: seconds to wait."
)
@pass_state
def demo(
    state: CliState,
    number: float,
    tolerance: float,
    max_iterations: int,
    through_daemon: bool,
    timeout: float,
) -> None:
    """Run the demo workflow (a square root by Newton's method) and print its provenance."""
    profile = state.load_profile()
    backend = state.backend()
    out = console()
    out.print(
        Text(
            f"Running NewtonSqrtWorkChain: sqrt({number:g}) by Newton's method, on profile '{profile.name}' "
            f"({backend.database.display_url})"
        )
    )

    from plait.engine import run_get_node
    from plait.workflows.demo import NewtonSqrtWorkChain

    started = time.perf_counter()
    inputs: dict[str, Any] = {"a": number, "tolerance": tolerance, "max_iterations": max_iterations}
    if through_daemon:
        node = _through_daemon(profile, NewtonSqrtWorkChain, inputs, timeout, out)
    else:
        _, node = run_get_node(NewtonSqrtWorkChain, **inputs)
    elapsed = time.perf_counter() - started

    from plait.cli._tree import provenance_tree

    out.print(Text(f"Done in {elapsed:.2f} s. Provenance recorded in the database:"))
    out.print()
    out.print(provenance_tree(node), soft_wrap=False)
    out.print()
    out.print(Text("Report:", style="bold"))
    for record in node.get_report():
        out.print(Text(f"  {format_time(record['time'])}  {record['level']:<7} {record['message']}"))
    out.print()
    out.print(Text("Explore it:", style="bold"))
    hints = [
        ("plait process show", node.pk, "the work chain: state, inputs, outputs, called processes"),
        ("plait process report", node.pk, "its report, and its children's"),
        ("plait node graph", f"{node.pk} --descendants 2 --format svg", "the provenance graph as a picture"),
        ("plait process list -a", "", "every process of this profile"),
    ]
    outputs = node.get_outgoing()
    root = next((n for label, _, n in outputs if label == "root"), None)
    if root is not None:
        hints.insert(2, ("plait node show", root.pk, "the result node: its value, hash, where it came from"))
    commands = [f"{command} {argument}".strip() for command, argument, _ in hints]
    width = max(len(command) for command in commands)
    for command, (_, _, why) in zip(commands, hints, strict=True):
        out.print(Text.assemble("  ", (command.ljust(width), "bold"), f"   # {why}"))
    if not node.is_finished_ok:
        what = (
            f"exit status {node.exit_status}: {node.exit_message}"
            if node.is_finished
            else node.process_state.value
        )
        raise CliError(f"the demo work chain {node.pk} did not succeed ({what})")
