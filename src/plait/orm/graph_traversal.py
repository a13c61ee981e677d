"""The provenance traversal rules of deletion and export, and the one walk that applies them.

Deleting nodes and exporting them both start from some nodes and take with them every node that
provenance ties to them, following links by *rules*, as AiiDA's ``GraphTraversalRules`` do.  A
rule names a link type and a direction: ``forward`` follows a link from the node in the set to the
node it points to, ``backward`` from the node in the set to the node that points to it.  The two
uses differ only in their rule set:

=========================  ===================  ===================
rule                       deletion (DELETE)    export (EXPORT)
=========================  ===================  ===================
``input_calc_forward``     always               off, switchable
``input_calc_backward``    never                always
``create_forward``         on, switchable       always
``create_backward``        always               on, switchable
``return_forward``         never                always
``return_backward``        always               off, switchable
``input_work_forward``     always               off, switchable
``input_work_backward``    never                always
``call_calc_forward``      on, switchable       always
``call_calc_backward``     always               on, switchable
``call_work_forward``      on, switchable       always
``call_work_backward``     always               on, switchable
=========================  ===================  ===================

So an export always carries the inputs of every calculation and workflow, the data they created or
returned and the processes they called; by default also the creators of exported data and the
callers of exported processes.  Deletion takes what depends on the deleted nodes.

:func:`traversal_link_types` turns a rule set and the caller's switches into the link types to
follow in each direction; :func:`traverse_graph` walks the graph in the database by one recursive
query (:meth:`plait.storage.backend.StorageBackend.plan_node_deletion`, the walk deletion uses too),
never node by node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from plait.orm.node import LinkType, _backend

if TYPE_CHECKING:
    from plait.storage.backend import StorageBackend

__all__ = [
    "DELETE_RULES",
    "EXPORT_RULES",
    "TraversalResult",
    "TraversalRule",
    "traversal_link_types",
    "traverse_graph",
]


@dataclass(frozen=True)
class TraversalRule:
    """One provenance rule: follow ``link_type`` in ``direction``, if ``follow``."""

    link_type: LinkType
    direction: Literal["forward", "backward"]
    #: may the caller switch it?
    toggleable: bool
    #: is the link followed (when not switched)?
    follow: bool


def _rules(*specs: tuple[LinkType, bool, bool, bool, bool]) -> dict[str, TraversalRule]:
    """``(link type, forward toggleable, forward follows, backward toggleable, backward follows)``."""
    rules: dict[str, TraversalRule] = {}
    for link_type, f_toggle, f_follow, b_toggle, b_follow in specs:
        rules[f"{link_type.value}_forward"] = TraversalRule(link_type, "forward", f_toggle, f_follow)
        rules[f"{link_type.value}_backward"] = TraversalRule(link_type, "backward", b_toggle, b_follow)
    return rules


#: AiiDA's deletion rules (``GraphTraversalRules.DELETE``), by the names its users pass.
DELETE_RULES: dict[str, TraversalRule] = _rules(
    (LinkType.INPUT_CALC, False, True, False, False),
    (LinkType.CREATE, True, True, False, True),
    (LinkType.RETURN, False, False, False, True),
    (LinkType.INPUT_WORK, False, True, False, False),
    (LinkType.CALL_CALC, True, True, False, True),
    (LinkType.CALL_WORK, True, True, False, True),
)

#: AiiDA's export rules (``GraphTraversalRules.EXPORT``), by the names its users pass.
EXPORT_RULES: dict[str, TraversalRule] = _rules(
    (LinkType.INPUT_CALC, True, False, False, True),
    (LinkType.CREATE, False, True, True, True),
    (LinkType.RETURN, False, True, True, False),
    (LinkType.INPUT_WORK, True, False, False, True),
    (LinkType.CALL_CALC, False, True, True, True),
    (LinkType.CALL_WORK, False, True, True, True),
)


def traversal_link_types(
    rules: dict[str, TraversalRule], what: str = "traversal", /, **switches: bool
) -> tuple[list[str], list[str]]:
    """The link types followed forward and backward under ``rules`` with these switches.

    ``what`` names the rule set in messages (``"deletion"``, ``"export"``).  A fixed rule may be
    passed at its fixed value (plait accepts it; AiiDA refuses any fixed rule).

    Raises:
        ValueError: an unknown rule name, a value that is not a bool, or a fixed rule set against
            its fixed value (the message names the rule and the switchable ones).
    """
    switchable = ", ".join(name for name, rule in rules.items() if rule.toggleable)
    for name, value in switches.items():
        rule = rules.get(name)
        if rule is None:
            raise ValueError(f"unknown {what} rule '{name}': the rules that can be switched are {switchable}")
        if not isinstance(value, bool):
            raise ValueError(f"{what} rule '{name}' must be True or False, not {value!r}")
        if not rule.toggleable and value != rule.follow:
            raise ValueError(
                f"{what} rule '{name}' is fixed to {rule.follow} (provenance would break otherwise); "
                f"the rules that can be switched are {switchable}"
            )
    forward: list[str] = []
    backward: list[str] = []
    for name, rule in rules.items():
        if switches.get(name, rule.follow):
            (forward if rule.direction == "forward" else backward).append(rule.link_type.value)
    return forward, backward


def applied_rules(
    rules: dict[str, TraversalRule], what: str = "traversal", /, **switches: bool
) -> dict[str, bool]:
    """Every rule of ``rules`` with the value it takes under ``switches`` (validated as above)."""
    traversal_link_types(rules, what, **switches)
    return {name: switches.get(name, rule.follow) for name, rule in rules.items()}


@dataclass
class TraversalResult:
    """What :func:`traverse_graph` found."""

    #: every node reached, the starting ones included
    nodes: set[int]
    #: starting pks that are no node
    missing: set[int] = field(default_factory=set)
    #: ``{pk: state}`` of the processes among ``nodes`` that are not terminated
    active: dict[int, str] = field(default_factory=dict)
    #: every rule with the value it was applied with
    rules: dict[str, bool] = field(default_factory=dict)


def traverse_graph(
    starting_pks: Iterable[int],
    rules: dict[str, TraversalRule] = EXPORT_RULES,
    backend: StorageBackend | None = None,
    **switches: bool,
) -> TraversalResult:
    """Every node tied by ``rules`` (with ``switches``) to ``starting_pks``: aiida's ``get_nodes_export``.

    One recursive query in the database, however many nodes it reaches; cycles end.

    Raises:
        ValueError: a rule unknown, fixed, or not a bool (see :func:`traversal_link_types`).
        TypeError: a pk that is not an int.
    """
    seeds = []
    for pk in starting_pks:
        if isinstance(pk, bool) or not isinstance(pk, int):
            raise TypeError(f"a node pk is an int, not {pk!r} ({type(pk).__name__})")
        seeds.append(pk)
    what = "deletion" if rules is DELETE_RULES else "export" if rules is EXPORT_RULES else "traversal"
    forward, backward = traversal_link_types(rules, what, **switches)
    applied = {name: switches.get(name, rule.follow) for name, rule in rules.items()}
    if not seeds:
        return TraversalResult(set(), rules=applied)
    backend = backend or _backend()
    nodes, missing, active = backend.plan_node_deletion(list(dict.fromkeys(seeds)), forward, backward)
    return TraversalResult(nodes, missing, active, applied)
