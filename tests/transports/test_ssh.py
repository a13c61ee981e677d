"""What is particular to the SSH plugins: host keys, credentials, ssh config, jump hosts, dead servers.

Every test runs for both ``ssh`` (asyncssh) and ``ssh-blocking`` (paramiko,
through ``as_async``), against real OpenSSH servers on loopback.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from plait.transports import (
    AuthenticationError,
    ConnectionFailedError,
    ConnectionLostError,
    HostKeyError,
    Transport,
    as_async,
)
from plait.transports._ssh_options import JumpHost, parse_proxy_jump
from plait.transports.ssh import SshTransport
from plait.transports.ssh_blocking import BlockingSshTransport
from plait.transports.testing import LoopbackSshd, free_port

pytestmark = pytest.mark.sshd

KINDS = ["ssh", "ssh-blocking"]


def make(kind: str, hostname: str, **options: Any) -> Transport:
    if kind == "ssh":
        return SshTransport(hostname, **options)
    return as_async(BlockingSshTransport(hostname, **options))


def new_key(folder: Path, name: str) -> Path:
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.mark.parametrize("kind", KINDS)
async def test_unknown_host_key_is_refused(kind: str, sshd: LoopbackSshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    transport = make(kind, sshd.host, **(sshd.transport_options() | {"known_hosts_file": str(empty)}))
    with pytest.raises(HostKeyError) as caught:
        await transport.open()
    message = str(caught.value)
    assert f"[127.0.0.1]:{sshd.port}" in message and "is unknown" in message
    assert "SHA256:" in message and "allow_unknown_host_key=True" in message and "ssh-keyscan" in message
    assert caught.value.host == sshd.host and not caught.value.retryable
    assert not transport.is_open


@pytest.mark.parametrize("kind", KINDS)
async def test_host_keys_are_checked_by_default(
    kind: str, sshd: LoopbackSshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty ~/.ssh/known_hosts
    options = sshd.transport_options()
    del options["known_hosts_file"]
    with pytest.raises(HostKeyError, match="is unknown"):
        await make(kind, sshd.host, **options).open()


@pytest.mark.parametrize("kind", KINDS)
async def test_allow_unknown_host_key_accepts_an_unknown_key(
    kind: str, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = sshd.transport_options() | {"known_hosts_file": str(empty), "allow_unknown_host_key": True}
    async with make(kind, sshd.host, **options) as transport:
        assert await transport.whoami() == sshd.username
    assert empty.read_text() == ""  # accepted for this connection only; the user's file is not rewritten


@pytest.mark.parametrize("kind", KINDS)
async def test_a_changed_host_key_is_always_refused(kind: str, sshd: LoopbackSshd, tmp_path: Path) -> None:
    impostor = new_key(tmp_path, "impostor")
    known_hosts = tmp_path / "known_hosts"
    sshd.write_known_hosts(known_hosts, " ".join((tmp_path / "impostor.pub").read_text().split()[:2]))
    del impostor
    options = sshd.transport_options() | {
        "known_hosts_file": str(known_hosts),
        "allow_unknown_host_key": True,
    }
    with pytest.raises(HostKeyError) as caught:
        await make(kind, sshd.host, **options).open()
    message = str(caught.value)
    assert "CHANGED" in message and f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in message
    assert not caught.value.retryable


@pytest.mark.parametrize("kind", KINDS)
async def test_a_refused_key_is_an_authentication_error(
    kind: str, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    stranger = new_key(tmp_path, "stranger")
    options = sshd.transport_options() | {"key_filenames": [str(stranger)]}
    with pytest.raises(AuthenticationError) as caught:
        await make(kind, sshd.host, **options).open()
    assert caught.value.host == sshd.host and not caught.value.retryable


@pytest.mark.parametrize("kind", KINDS)
async def test_nobody_listening_is_a_retryable_connection_failure(kind: str, sshd: LoopbackSshd) -> None:
    options = sshd.transport_options() | {"port": free_port(), "connect_timeout": 5.0}
    with pytest.raises(ConnectionFailedError) as caught:
        await make(kind, sshd.host, **options).open()
    assert caught.value.retryable and "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_ssh_config_supplies_host_port_user_and_key(
    kind: str, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host plait-test-alias\n"
        f"    HostName {sshd.host}\n    Port {sshd.port}\n    User {sshd.username}\n"
        f"    IdentityFile {sshd.client_key}\n"
    )
    options = {"config_file": str(config), "known_hosts_file": str(sshd.known_hosts), "use_agent": False}
    async with make(kind, "plait-test-alias", **options) as transport:
        assert transport.hostname == "plait-test-alias"
        assert await transport.whoami() == sshd.username


@pytest.mark.parametrize("kind", KINDS)
async def test_proxy_jump_goes_through_the_jump_host(
    kind: str, sshd: LoopbackSshd, fault_sshd: LoopbackSshd, tmp_path: Path
) -> None:
    jump = fault_sshd
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts.read_text() + jump.known_hosts.read_text())
    options = sshd.transport_options() | {
        "known_hosts_file": str(known_hosts),
        "key_filenames": [str(sshd.client_key), str(jump.client_key)],
        "proxy_jump": f"{jump.username}@{jump.host}:{jump.port}",
    }
    assert jump.session_pids() == []
    async with make(kind, sshd.host, **options) as transport:
        assert jump.session_pids(), "no session on the jump host"
        assert await transport.whoami() == sshd.username
        result = await transport.exec_command_wait("echo through")
        assert result.stdout == "through\n"
    jump.stop()
    with pytest.raises(ConnectionFailedError):
        await make(kind, sshd.host, **(options | {"connect_timeout": 5.0})).open()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_server_that_stops_answering_is_declared_lost(kind: str, fault_sshd: LoopbackSshd) -> None:
    options = fault_sshd.transport_options() | {"keepalive_interval": 0.5, "keepalive_count_max": 2}
    transport = make(kind, fault_sshd.host, **options)
    await transport.open()
    assert (await transport.stat("/")).is_dir
    fault_sshd.freeze()  # the TCP connection stays up, nothing answers
    started = time.monotonic()
    with pytest.raises(ConnectionLostError) as caught:
        await asyncio.wait_for(transport.stat("/"), 30)
    assert time.monotonic() - started < 15
    assert caught.value.retryable and caught.value.host == fault_sshd.host
    assert not transport.is_open
    fault_sshd.thaw()
    await transport.close()


async def test_more_commands_than_the_server_allows_sessions(sshd: LoopbackSshd) -> None:
    """OpenSSH allows 10 channels per connection; the plugin queues the rest instead of failing."""
    async with SshTransport(sshd.host, **sshd.transport_options()) as transport:
        results = await asyncio.gather(
            *(transport.exec_command_wait(f"sleep 0.2; echo {index}") for index in range(25))
        )
    assert [r.stdout for r in results] == [f"{index}\n" for index in range(25)]


@pytest.mark.parametrize("cls", [SshTransport, BlockingSshTransport])
@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"port": 0}, "port"),
        ({"key_filenames": ["/nonexistent/id_rsa"]}, "key_filenames"),
        ({"proxy_jump": "jump:notaport"}, "proxy_jump"),
        ({"keepalive_count_max": 0}, "keepalive_count_max"),
        ({"keepalive_interval": -1}, "keepalive_interval"),
        ({"connect_timeout": 0}, "connect_timeout"),
    ],
)
def test_bad_options_are_refused_before_connecting(
    cls: type, options: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        cls("cluster.example.org", **options)


def test_empty_hostname_and_sessions_are_refused() -> None:
    with pytest.raises(ValueError, match="hostname"):
        BlockingSshTransport("")
    with pytest.raises(ValueError, match="max_sessions"):
        SshTransport("cluster", max_sessions=0)


def test_proxy_jump_syntax() -> None:
    assert parse_proxy_jump("alice@gate:2222,inner") == (JumpHost("gate", 2222, "alice"), JumpHost("inner"))
    assert parse_proxy_jump("ssh://bob@[::1]:22") == (JumpHost("::1", 22, "bob"),)
