"""The two colours of the contract stay twins, and every implementation follows them.

``Transport`` (async) and ``BlockingTransport`` must have the same public
methods with the same parameters (names, kinds, defaults) and the same
annotations; only ``async def`` vs ``def`` and ``__aenter__``/``__aexit__`` vs
``__enter__``/``__exit__`` differ.  The adapters and the pool's handle must
spell out every method themselves (no ``__getattr__`` forwarding), with the
contract's exact signatures, and so must the built-in plugins.
"""

from __future__ import annotations

import inspect
import typing

import pytest

from plait.transports import (
    AsyncAdapter,
    BlockingAdapter,
    BlockingTransport,
    PooledTransport,
    Transport,
    as_async,
    as_blocking,
)
from plait.transports.local import LocalTransport
from plait.transports.ssh import SshTransport
from plait.transports.ssh_blocking import BlockingSshTransport

#: async name -> blocking name, where they differ.
RENAMED = {"__aenter__": "__enter__", "__aexit__": "__exit__"}
CLASS_ATTRIBUTES = {"plugin_name", "default_safe_interval"}


def contract_methods(cls: type) -> list[str]:
    """Public callables and properties of a contract class, plus its context-manager dunders."""
    names = [name for name in dir(cls) if not name.startswith("_") and name not in CLASS_ATTRIBUTES]
    dunders = ["__aenter__", "__aexit__"] if cls is Transport else ["__enter__", "__exit__"]
    return sorted(names) + dunders


ASYNC_METHODS = contract_methods(Transport)
PAIRS = [(name, RENAMED.get(name, name)) for name in ASYNC_METHODS]


def hints(cls: type, name: str) -> dict[str, object]:
    member = inspect.getattr_static(cls, name)
    if isinstance(member, property):
        assert member.fget is not None
        member = member.fget
    return typing.get_type_hints(member)


def normalised(value: object) -> object:
    """Map the async contract's own type onto the blocking one, for comparison."""
    if value is Transport:
        return BlockingTransport
    return value


def signature(cls: type, name: str) -> inspect.Signature:
    member = inspect.getattr_static(cls, name)
    if isinstance(member, property):
        assert member.fget is not None
        member = member.fget
    return inspect.signature(member)


def test_both_colours_have_the_same_methods() -> None:
    assert [RENAMED.get(name, name) for name in ASYNC_METHODS] == contract_methods(BlockingTransport)
    assert "exec_command_wait" in ASYNC_METHODS and "is_open" in ASYNC_METHODS


@pytest.mark.parametrize(("async_name", "blocking_name"), PAIRS)
def test_both_colours_have_the_same_signature(async_name: str, blocking_name: str) -> None:
    async_signature = signature(Transport, async_name)
    blocking_signature = signature(BlockingTransport, blocking_name)
    shape = [(p.name, p.kind, p.default) for p in async_signature.parameters.values()]
    assert shape == [(p.name, p.kind, p.default) for p in blocking_signature.parameters.values()]
    async_hints = {key: normalised(value) for key, value in hints(Transport, async_name).items()}
    assert async_hints == hints(BlockingTransport, blocking_name)


@pytest.mark.parametrize(("async_name", "blocking_name"), PAIRS)
def test_only_the_colour_differs(async_name: str, blocking_name: str) -> None:
    async_member = inspect.getattr_static(Transport, async_name)
    blocking_member = inspect.getattr_static(BlockingTransport, blocking_name)
    if isinstance(async_member, property):
        assert isinstance(blocking_member, property)
        return
    assert inspect.iscoroutinefunction(async_member)
    assert not inspect.iscoroutinefunction(blocking_member)


@pytest.mark.parametrize("cls", [AsyncAdapter, PooledTransport, BlockingAdapter])
def test_adapters_spell_out_every_method(cls: type) -> None:
    names = ASYNC_METHODS if issubclass(cls, Transport) else contract_methods(BlockingTransport)
    missing = [name for name in names if name not in cls.__dict__]
    assert missing == []
    assert "__getattr__" not in cls.__dict__ and "__getattribute__" not in cls.__dict__
    assert not inspect.isabstract(cls)


@pytest.mark.parametrize(
    "cls",
    [AsyncAdapter, PooledTransport, LocalTransport, SshTransport, BlockingAdapter, BlockingSshTransport],
)
def test_implementations_keep_the_contract_signatures(cls: type) -> None:
    contract = Transport if issubclass(cls, Transport) else BlockingTransport
    for name in contract_methods(contract):
        own = signature(cls, name)
        expected = signature(contract, name)
        assert [(p.name, p.kind, p.default) for p in own.parameters.values()] == [
            (p.name, p.kind, p.default) for p in expected.parameters.values()
        ], name
        assert hints(cls, name) == hints(contract, name), name
        assert inspect.iscoroutinefunction(inspect.getattr_static(cls, name)) == inspect.iscoroutinefunction(
            inspect.getattr_static(contract, name)
        ), name


def test_plugins_name_themselves() -> None:
    assert (LocalTransport.plugin_name, SshTransport.plugin_name, BlockingSshTransport.plugin_name) == (
        "local",
        "ssh",
        "ssh-blocking",
    )


def test_as_async_and_as_blocking_wrap_only_the_other_colour() -> None:
    local = LocalTransport()
    assert as_async(local) is local
    blocking = as_blocking(local)
    assert isinstance(blocking, BlockingAdapter) and blocking.wrapped is local
    assert as_blocking(blocking) is blocking
    adapted = as_async(blocking)
    assert isinstance(adapted, AsyncAdapter) and adapted.wrapped is blocking
    assert adapted.hostname == blocking.hostname == local.hostname == "localhost"
    with pytest.raises(TypeError, match="expected a Transport or a BlockingTransport"):
        as_async(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        as_blocking("localhost")  # type: ignore[arg-type]
