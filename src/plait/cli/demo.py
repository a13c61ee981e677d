"""``plait demo``: run a small workflow end to end and show what was recorded.

The workflow is :class:`plait.workflows.demo.NewtonSqrtWorkChain`; it runs in
this interpreter (no daemon needed) on the current profile, then its
provenance is printed as a tree with the pks to explore it further.
"""

from __future__ import annotations

import time

import click
from rich.text import Text

from plait.cli._common import CliError, CliState, console, format_time, pass_state

__all__ = ["demo"]


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
@pass_state
def demo(state: CliState, number: float, tolerance: float, max_iterations: int) -> None:
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
    _, node = run_get_node(NewtonSqrtWorkChain, a=number, tolerance=tolerance, max_iterations=max_iterations)
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
