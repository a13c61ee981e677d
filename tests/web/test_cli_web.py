"""``plait web`` as a user starts it: a real server in a subprocess, its printed URL and token."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess

import httpx
from click.testing import CliRunner

from cli.helpers import assert_one_line_error, plait_command
from plait.cli.main import cli


def test_plait_web_serves_the_profile_with_a_token_printed_and_kept_owner_only(plait_home):
    server = subprocess.Popen(
        [*plait_command(), "web", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PLAIT_HOME": str(plait_home)},
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)/docs\?token=(\S+)", line)
        assert found, line + (server.stderr.read() if server.poll() is not None else "")  # type: ignore[union-attr]
        url, token = found.groups()
        path = plait_home / "profiles" / "default" / "web-token"
        assert path.read_text().strip() == token and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert httpx.get(f"{url}/api/processes", timeout=30).status_code == 401
        answer = httpx.get(f"{url}/api/processes", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["total"] == 0
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_plait_web_refuses_a_taken_port_and_a_bad_address_in_one_line(plait_home):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["web", "--port", str(port)])
        assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}")
    finally:
        taken.close()
    result = CliRunner().invoke(cli, ["web", "--port", "70000"])
    assert result.exit_code == 2 and "--port" in result.stderr and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["web", "--host", "no-such-host.invalid"])
    assert result.exit_code == 2 and "--host" in result.stderr and "Traceback" not in result.output
