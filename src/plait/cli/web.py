"""``plait web``: serve the REST API of the profile (uvicorn, on 127.0.0.1 unless told otherwise).

The web layer is imported only when the command runs, so the rest of the
CLI starts without FastAPI; ``cli`` and ``web`` are peers, and this is the
one place where the CLI reaches the web layer: to start it.
"""

from __future__ import annotations

import ipaddress
import socket

import click

from plait.cli._common import CliError, CliState, pass_state

__all__ = ["web"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on."
)
@pass_state
def web(state: CliState, host: str, port: int) -> None:
    """Serve the REST API and the dashboard of the profile until interrupted (Ctrl-C).

    Every request needs the profile's token, made on first start and kept
    (mode 600) in the profile folder; the URL printed at start carries it.
    """
    if not host.strip():
        raise click.BadParameter("give an address, e.g. 127.0.0.1", param_hint="--host")
    try:
        import uvicorn

        from plait.web import create_app
        from plait.web.auth import TokenError, load_or_create_token, token_path
    except ImportError as exc:  # pragma: no cover - the web extra is part of the install
        raise CliError(f"the web server needs FastAPI and uvicorn ({exc.name} is missing)") from exc
    profile = state.load_profile()
    try:
        token = load_or_create_token(profile)
    except TokenError as exc:
        raise CliError(str(exc)) from exc
    sock = _listening_socket(host, port)
    port = sock.getsockname()[1]  # the port chosen by the system for --port 0
    app = create_app(profile, token=token)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"plait web API of profile '{profile.name}': http://{shown}:{port}/docs?token={token}")
    click.echo(f"dashboard: http://{shown}:{port}/#token={token}")
    click.echo(f"token (in {token_path(profile)}): send it as 'Authorization: Bearer <token>'", err=True)
    if not _is_loopback(host):
        click.echo(
            f"Warning: listening on {host}: anyone who can reach it and has the token controls this profile; "
            "the traffic is not encrypted (put a TLS proxy in front)",
            err=True,
        )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, so that a taken port or a bad address is one clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise click.BadParameter(
            f"'{host}' is not an address of this machine ({exc.strerror})", param_hint="--host"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
