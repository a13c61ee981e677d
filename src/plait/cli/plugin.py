"""``plait plugin list``: what plugins are installed, found by name as the engine finds them.

``plait plugin list`` shows every group with the names registered in it;
``plait plugin list calculations`` shows each plugin of a group with the
first line of its docstring (importing them); ``plait plugin list
calculations shell`` shows one plugin: where it comes from, its docstring
and, for processes, its inputs, outputs and exit codes.
"""

from __future__ import annotations

import inspect
from typing import Any

import click

from plait.cli._common import CliError, console, kv_table, table

__all__ = ["plugin"]


@click.group()
def plugin() -> None:
    """Show the installed plugins (calculations, parsers, data, transports, schedulers, ...)."""


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _load(group: str, name: str) -> Any:
    from plait.plugins import entry_points as lookup

    return lookup.load_plugin(group, name)


def _ports(namespace: Any, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(name, types, required or default, help)`` for every port, namespaces flattened."""
    from plait.engine.ports import UNSPECIFIED, PortNamespace

    rows: list[tuple[str, str, str, str]] = []
    for name in namespace:
        port = namespace[name]
        full = f"{prefix}{name}"
        if isinstance(port, PortNamespace):
            if name == "metadata" and not prefix:
                continue
            rows.extend(_ports(port, f"{full}."))
            continue
        types = " | ".join(t.__name__ for t in port.valid_type) if port.valid_type else "any"
        default = getattr(port, "default", UNSPECIFIED)
        if port.required:
            need = "required"
        elif default is UNSPECIFIED:
            need = "optional"
        else:
            need = "default: " + ("(computed)" if callable(default) else repr(default))
        rows.append((full, types, need, port.help or ""))
    return rows


@plugin.command("list")
@click.argument("group", required=False)
@click.argument("name", required=False)
def list_(group: str | None, name: str | None) -> None:
    """List the plugin groups, the plugins of GROUP, or show plugin NAME of GROUP.

    GROUP is a kind (calculations, parsers, data, transports, schedulers,
    workflows, monitors) or its entry point group (plait.calculations).
    """
    from plait.plugins import entry_points as lookup

    if group is None:
        out = table("group", "entry point group", "plugins")
        for kind, full in lookup.GROUPS.items():
            out.add_row(kind, full, ", ".join(lookup.plugin_names(kind)) or "-")
        console().print(out)
        return
    kind = _kind(group)
    if name is None:
        out = table("name", "registered as", "what it is")
        for plugin_name, found in lookup.plugin_entry_points(kind).items():
            try:
                summary = _first_line(found.load())
            except Exception as exc:  # a broken plugin is shown, not fatal to the listing
                summary = f"cannot be imported: {type(exc).__name__}: {exc}"
            out.add_row(plugin_name, found.value, summary)
        console().print(out)
        return
    try:
        obj = _load(kind, name)
    except lookup.MissingPluginError as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:
        raise CliError(f"the plugin {name!r} of {lookup.GROUPS[kind]!r} cannot be imported: {exc}") from None
    _show(kind, name, obj)


def _kind(group: str) -> str:
    from plait.plugins import entry_points as lookup

    for kind, full in lookup.GROUPS.items():
        if group in (kind, full):
            return kind
    groups = ", ".join(lookup.GROUPS)
    raise click.BadParameter(f"{group!r} is not a plugin group (groups: {groups})", param_hint="GROUP")


def _show(kind: str, name: str, obj: Any) -> None:
    from plait.plugins import entry_points as lookup

    found = lookup.entry_point(kind, name)
    info = kv_table()
    info.add_row("name", name)
    info.add_row("group", lookup.GROUPS[kind])
    info.add_row("registered as", found.value)
    if found.dist is not None:
        info.add_row("package", f"{found.dist.name} {found.dist.version}")
    doc = inspect.getdoc(obj)
    if doc:
        info.add_row("description", doc.strip())
    console().print(info)
    process_class = getattr(obj, "process_class", obj)
    spec = getattr(process_class, "spec", None)
    if not (isinstance(process_class, type) and callable(spec)):
        return
    the_spec = spec()
    for title, namespace in (("inputs", the_spec.inputs), ("outputs", the_spec.outputs)):
        rows = _ports(namespace)
        out = table("port", "type", "need", "help", title=title)
        for row in rows:
            out.add_row(*row)
        console().print(out)
    codes = list(the_spec.exit_codes)
    if codes:
        out = table("status", "label", "message", title="exit codes")
        for code in sorted(codes, key=lambda c: c.status):
            out.add_row(str(code.status), code.label or "", code.message or "")
        console().print(out)
