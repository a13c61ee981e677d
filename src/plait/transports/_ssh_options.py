"""What the two SSH plugins share about connecting: options, jump hosts, host-key messages.

``ssh`` (asyncssh) and ``ssh-blocking`` (paramiko) accept the same keyword
arguments; :class:`SshOptions` checks them once, at construction, so that a
typo in a computer's configuration is reported before any connection is
tried (and names the option).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .contract import LocalPath
from .errors import HostKeyError

DEFAULT_CONFIG_FILE = "~/.ssh/config"
DEFAULT_KNOWN_HOSTS_FILE = "~/.ssh/known_hosts"


@dataclass(frozen=True, slots=True)
class JumpHost:
    """One hop of ``proxy_jump`` (``[user@]host[:port]``)."""

    hostname: str
    port: int | None = None
    username: str | None = None


def parse_proxy_jump(spec: str) -> tuple[JumpHost, ...]:
    """Parse OpenSSH's ``ProxyJump`` syntax: ``[user@]host[:port]``, hops separated by commas.

    Raises:
        ValueError: an empty hop or a port that is not a number.
    """
    hops = []
    for hop in spec.split(","):
        hop = hop.strip()
        if hop.startswith("ssh://"):
            hop = hop[len("ssh://") :]
        username: str | None = None
        if "@" in hop:
            username, hop = hop.rsplit("@", 1)
        port: int | None = None
        if hop.startswith("["):  # [ipv6]:port
            host, _, rest = hop[1:].partition("]")
            if rest.startswith(":"):
                port = _port(rest[1:], spec)
        elif hop.count(":") == 1:
            host, port_text = hop.split(":")
            port = _port(port_text, spec)
        else:
            host = hop
        if not host:
            raise ValueError(f"proxy_jump {spec!r}: empty host name")
        hops.append(JumpHost(host, port, username or None))
    return tuple(hops)


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"proxy_jump {spec!r}: bad port {text!r}")
    return int(text)


def _expand(path: LocalPath | None) -> str | None:
    return None if path is None else os.path.expanduser(os.fspath(path))


@dataclass(frozen=True, slots=True)
class SshOptions:
    """The validated connection options of an SSH transport.  See :meth:`build`."""

    hostname: str
    port: int | None
    username: str | None
    key_filenames: tuple[str, ...] | None
    use_agent: bool
    config_file: str | None
    known_hosts_file: str | None
    allow_unknown_host_key: bool
    proxy_jump: tuple[JumpHost, ...]
    keepalive_interval: float | None
    keepalive_count_max: int
    connect_timeout: float | None

    @classmethod
    def build(
        cls,
        hostname: str,
        *,
        port: int | None,
        username: str | None,
        key_filenames: LocalPath | Sequence[LocalPath] | None,
        use_agent: bool | None,
        config_file: LocalPath | None,
        known_hosts_file: LocalPath | None,
        allow_unknown_host_key: bool,
        proxy_jump: str | None,
        keepalive_interval: float | None,
        keepalive_count_max: int,
        connect_timeout: float | None,
    ) -> SshOptions:
        """Check and normalise the keyword arguments of the SSH plugins.

        Raises:
            ValueError: naming the bad option.
        """
        if not hostname:
            raise ValueError("hostname must not be empty")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {port}")
        if keepalive_interval is not None and keepalive_interval <= 0:
            raise ValueError(f"keepalive_interval must be > 0 or None, got {keepalive_interval}")
        if keepalive_count_max < 1:
            raise ValueError(f"keepalive_count_max must be >= 1, got {keepalive_count_max}")
        if connect_timeout is not None and connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0 or None, got {connect_timeout}")
        keys: tuple[str, ...] | None = None
        if key_filenames is not None:
            if isinstance(key_filenames, str | os.PathLike):
                key_filenames = [key_filenames]
            keys = tuple(os.path.expanduser(os.fspath(k)) for k in key_filenames)
            missing = [k for k in keys if not os.path.isfile(k)]
            if missing:
                raise ValueError(f"key_filenames: no such private key file: {', '.join(missing)}")
        config = _expand(config_file)
        if config is not None and not os.path.isfile(config):
            config = None  # like ssh: no ~/.ssh/config means no configuration
        if use_agent is None:
            use_agent = bool(os.environ.get("SSH_AUTH_SOCK"))
        return cls(
            hostname=hostname,
            port=port,
            username=username,
            key_filenames=keys,
            use_agent=use_agent,
            config_file=config,
            known_hosts_file=_expand(known_hosts_file),
            allow_unknown_host_key=allow_unknown_host_key,
            proxy_jump=parse_proxy_jump(proxy_jump) if proxy_jump else (),
            keepalive_interval=keepalive_interval,
            keepalive_count_max=keepalive_count_max,
            connect_timeout=connect_timeout,
        )


def known_hosts_name(host: str, port: int | None) -> str:
    """How OpenSSH writes ``host`` in known_hosts: ``host``, or ``[host]:port`` off port 22."""
    return host if port in (None, 22) else f"[{host}]:{port}"


def unknown_host_key_error(
    host: str, port: int | None, key_description: str, known_hosts_file: str | None, configured_host: str
) -> HostKeyError:
    """The error for a server whose key is in no known_hosts entry."""
    where = known_hosts_name(host, port)
    file = known_hosts_file or DEFAULT_KNOWN_HOSTS_FILE
    keyscan = f"ssh-keyscan {'-p ' + str(port) + ' ' if port not in (None, 22) else ''}{host} >> {file}"
    return HostKeyError(
        f"the host key of {where} is unknown: {file} has no entry for it (the server offered "
        f"{key_description}). Check that fingerprint with the computer's administrators, then add "
        f"the key to {file} (for example `{keyscan}`, or connect once with `ssh`), or accept unknown "
        "keys for this computer with allow_unknown_host_key=True.",
        host=configured_host,
        operation="open",
    )


def changed_host_key_error(
    host: str, port: int | None, key_description: str, known_hosts_file: str | None, configured_host: str
) -> HostKeyError:
    """The error for a server whose key differs from its known_hosts entry; never accepted."""
    where = known_hosts_name(host, port)
    file = known_hosts_file or DEFAULT_KNOWN_HOSTS_FILE
    return HostKeyError(
        f"the host key of {where} has CHANGED: {file} holds a different key than the one the "
        f"server offered ({key_description}). Someone may be intercepting the connection, or the "
        "server was reinstalled. plait never accepts a changed key: ask the computer's "
        f"administrators for the new fingerprint, then remove the old entry with "
        f"`ssh-keygen -R '{where}' -f {file}` and add the new key.",
        host=configured_host,
        operation="open",
    )
