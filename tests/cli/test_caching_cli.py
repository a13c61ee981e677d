"""``plait profile configure caching.*``, ``plait process show`` of a cached node, ``plait node rehash``."""

from __future__ import annotations

import tomllib

import plait.storage
from plait import calcfunction
from plait.engine import caching
from plait.orm import Int, load_node
from plait.storage import get_profile

from .helpers import assert_one_line_error


@calcfunction
def double(x):
    return x * 2


def _profile_file():
    return get_profile().path / "profile.toml"


def test_configure_turns_caching_on_and_show_tells_the_source(invoke):
    invoke("group", "list")  # makes the default profile
    _, first = double.run_get_node(Int(4))
    out = invoke("profile", "configure", "caching.default_enabled", "true").stdout
    assert "caching.default_enabled of profile 'default' set to True" in out
    invoke("profile", "configure", "caching.disabled_for", "other.*", "x:y")
    options = tomllib.loads(_profile_file().read_text())["options"]["caching"]
    assert options == {"default_enabled": True, "disabled_for": ["other.*", "x:y"]}
    plait.storage.reset()  # a new interpreter reads the profile again
    _, second = double.run_get_node(Int(4))
    assert second.cached_from == first
    shown = invoke("process", "show", str(second.pk)).stdout
    row = next(line for line in shown.splitlines() if line.strip().startswith("cached from"))
    assert row.split()[2:] == [str(first.pk), "double"]
    assert "cached from" not in invoke("process", "show", str(first.pk)).stdout
    dot = invoke("node", "graph", str(second.pk), "--format", "dot", "-o", "-").stdout
    assert f"cached from {first.uuid[:8]}" in dot
    invoke("profile", "configure", "caching.default_enabled", "--unset")
    assert "default_enabled" not in tomllib.loads(_profile_file().read_text())["options"]["caching"]


def test_configure_refuses_bad_values(invoke):
    invoke("group", "list")
    before = _profile_file().read_bytes()
    assert_one_line_error(
        invoke("profile", "configure", "caching.default_enabled", "maybe", code=2), "true or false"
    )
    assert_one_line_error(invoke("profile", "configure", "caching.enable", "true", code=2), "OPTION")
    assert_one_line_error(invoke("profile", "configure", "caching.enabled_for", code=2), "needs a value")
    assert_one_line_error(
        invoke("profile", "configure", "caching.enabled_for", "a", "--unset", code=2), "not both"
    )
    assert _profile_file().read_bytes() == before  # nothing written


def test_rehash_after_a_plugin_upgrade(invoke, monkeypatch):
    invoke("group", "list")
    _, node = double.run_get_node(Int(3))
    data = Int(9).store()
    old = node.node_hash
    assert "0 hashes changed" in invoke("node", "rehash", str(node.pk), str(data.pk)).stdout
    monkeypatch.setattr(caching, "plugin_version", lambda cls: "plugin==9.9")
    out = invoke("node", "rehash").stdout  # every node
    assert "1 hashes changed" in out
    assert load_node(node.pk).node_hash != old and load_node(data.pk).node_hash == data.node_hash
    assert_one_line_error(invoke("node", "rehash", "999999", code=1), "999999")
