"""Deleting nodes without breaking provenance: :func:`delete_nodes` and the traversal rules.

A node cannot simply go: a calculation whose input is gone no longer says
how its outputs were made, and a workflow that lost one of its steps no
longer says what it did.  So deleting some nodes deletes with them every
node that provenance ties to them, by the rules AiiDA calls the *provenance
consistency rules* (``verdi node delete``, ``aiida.tools.delete_nodes``).
Each rule names a link type and a direction: ``forward`` follows a link
from the node being deleted to the node it points to, ``backward`` from the
node being deleted to the node that points to it.  When a rule is on, the
node at the other end goes too, and the rules apply again to it, until the
set stops growing.

Deleting follows these rules (``rule: when it applies - why``):

- ``input_calc_forward``: always - a calculation whose input is gone is not reproducible;
- ``input_work_forward``: always - the same for a workflow;
- ``create_backward``: always - data whose creator is gone is unexplained;
- ``return_backward``: always - a workflow missing a result it returned is incomplete;
- ``call_calc_backward``: always - a workflow missing one of its steps is incomplete;
- ``call_work_backward``: always - the same for a sub-workflow;
- ``create_forward``: by default - the outputs of a deleted calculation go too;
- ``call_calc_forward``: by default - the calculations a deleted workflow called;
- ``call_work_forward``: by default - the workflows a deleted workflow called;
- ``input_calc_backward``, ``input_work_backward``: never - inputs stay;
- ``return_forward``: never - returned data stays (a calculation created it, and decides).

Only the three *default* rules can be switched off (``create_forward=False``
...), as in AiiDA; setting a fixed rule to its fixed value is accepted,
setting it otherwise is refused.  The set is found by one recursive query in
the database (:meth:`plait.storage.backend.StorageBackend.plan_node_deletion`),
never by loading nodes one by one, so it stays quick for a graph of a
hundred thousand nodes.

A process that is not terminated (created, running, waiting) is never
deleted: its runner would write to rows that are gone.  The deletion is one
transaction: the set is found again inside it, must be the one found (and,
through ``dry_run=callable``, confirmed) before, and is deleted whole or not
at all.  The nodes' files stay in the repository, where other nodes may
share them, until ``plait storage maintain`` removes those nobody refers to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from plait.orm.errors import ModificationNotAllowed, NotExistentError
from plait.orm.graph_traversal import DELETE_RULES, TraversalRule, traversal_link_types
from plait.orm.node import _backend
from plait.orm.process_nodes import ProcessState

if TYPE_CHECKING:
    from plait.storage.backend import StorageBackend

__all__ = ["DELETION_RULES", "DeletionRefusedError", "TraversalRule", "delete_nodes", "deletion_link_types"]

LOGGER = logging.getLogger("plait.delete")


class DeletionRefusedError(ModificationNotAllowed):
    """A deletion that would take a process that is still running, or a set that changed meanwhile.

    ``nodes`` is every pk that the deletion would take; ``active`` maps each process among them
    that is not terminated to its state.
    """

    def __init__(self, message: str, nodes: set[int], active: dict[int, str] | None = None) -> None:
        super().__init__(message)
        self.nodes = nodes
        self.active = dict(active or {})


#: AiiDA's deletion rules (``GraphTraversalRules.DELETE``), by the names its users pass; the rule
#: sets of deletion and export live together in :mod:`plait.orm.graph_traversal`.
DELETION_RULES: dict[str, TraversalRule] = DELETE_RULES


def deletion_link_types(**traversal_rules: bool) -> tuple[list[str], list[str]]:
    """The link types followed forward and backward under these rule switches (AiiDA's names).

    Raises:
        ValueError: an unknown rule name, a value that is not a bool, or a fixed rule set
            against its fixed value (the message names the rule and the switchable ones).
    """
    return traversal_link_types(DELETE_RULES, "deletion", **traversal_rules)


def _seed_pks(pks: Iterable[int]) -> list[int]:
    if isinstance(pks, (int, str, bytes)):
        raise TypeError(
            f"pks must be an iterable of node pks, not a single {type(pks).__name__}: use [{pks!r}]"
        )
    seeds = []
    for pk in pks:
        if isinstance(pk, bool) or not isinstance(pk, int):
            raise TypeError(f"a node pk is an int, not {pk!r} ({type(pk).__name__})")
        seeds.append(pk)
    return list(dict.fromkeys(seeds))


def _refuse(nodes: set[int], missing: set[int], active: dict[int, str]) -> None:
    """Raise if some seeds are no node, or some process of the set is not terminated."""
    if missing:
        listed = ", ".join(str(pk) for pk in sorted(missing))
        raise NotExistentError(f"no node with pk {listed}: nothing was deleted")
    running = {pk: state for pk, state in active.items() if not ProcessState(state).is_terminal}
    if running:
        shown = sorted(running)[:10]
        listed = ", ".join(f"process {pk} is {running[pk]}" for pk in shown)
        more = f" (and {len(running) - len(shown)} more)" if len(running) > len(shown) else ""
        raise DeletionRefusedError(
            f"cannot delete the {len(nodes)} nodes: {listed}{more}; only terminated processes can be "
            "deleted: wait for them to end or kill them (plait process kill)",
            nodes,
            running,
        )


def delete_nodes(
    pks: Iterable[int],
    dry_run: bool | Callable[[set[int]], bool] = True,
    backend: StorageBackend | None = None,
    **traversal_rules: bool,
) -> tuple[set[int], bool]:
    """Delete the nodes ``pks`` and every node the provenance rules tie to them.

    ``delete_nodes([pk])`` only *tells*: with the default ``dry_run=True`` it returns the pks
    that would go and deletes nothing.  ``dry_run=False`` deletes them.  ``dry_run`` may also be
    a function that gets the set and returns True to stop (a dry run) or False to go on: the
    command line's confirmation.  The switchable rules are keyword arguments
    (``create_forward``, ``call_calc_forward``, ``call_work_forward``; see the module's table).

    Returns ``(pks, deleted)``: every pk in the set (the ones asked for included) and whether
    they were deleted — AiiDA's ``aiida.tools.delete_nodes`` shape.

    The deletion is one transaction: the set is found again inside it and must be the one
    found before (and shown to ``dry_run``); processes must all be terminated; then the nodes,
    their links, process rows, checkpoints, logs, group memberships and comments are deleted
    together, or, if anything fails, nothing is.  Files stay in the repository until
    ``plait storage maintain``.

    Differences from AiiDA, on purpose: a pk of no node is an error (AiiDA logs a warning and
    skips it), a set holding a process that is not terminated is refused (in a dry run too, so a
    dry run says what a real one would do), and a fixed rule may be passed at its fixed value.

    Raises:
        NotExistentError: some of ``pks`` are no node (nothing is deleted).
        DeletionRefusedError: a process in the set is not terminated (its pk and state are in the
            message), or the set changed between the dry run shown and the deletion.
        ValueError: an unknown or fixed rule switched (see :func:`deletion_link_types`).
        TypeError: ``pks`` is not an iterable of ints, or ``dry_run`` is neither a bool nor callable.
    """
    forward, backward = deletion_link_types(**traversal_rules)
    if not isinstance(dry_run, bool) and not callable(dry_run):
        raise TypeError(f"dry_run must be True, False or a function of the set of pks, not {dry_run!r}")
    seeds = _seed_pks(pks)
    backend = backend or _backend()
    if not seeds:
        return set(), dry_run is False

    planned: set[int] | None = None
    if dry_run is not False:
        planned, missing, active = backend.plan_node_deletion(seeds, forward, backward)
        _refuse(planned, missing, active)
        LOGGER.info("%d node(s) marked for deletion", len(planned))
        if dry_run is True or dry_run(set(planned)):
            return planned, False

    def accept(nodes: set[int], missing: set[int], active: dict[int, str]) -> None:
        _refuse(nodes, missing, active)
        if planned is not None and nodes != planned:
            gained, lost = len(nodes - planned), len(planned - nodes)
            raise DeletionRefusedError(
                f"the nodes to delete changed since they were listed ({gained} more, {lost} fewer: "
                "other processes are adding to or deleting from this part of the graph); nothing was "
                "deleted: run again",
                nodes,
            )

    deleted = backend.delete_node_closure(seeds, forward, backward, accept)
    LOGGER.info("deleted %d node(s)", len(deleted))
    return deleted, True
