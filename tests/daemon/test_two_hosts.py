"""Two daemon hosts on one PostgreSQL, and a network partition that cuts one of them off.

Each "host" is a network namespace of its own (``plait-a-<pid>``, ``plait-b-<pid>``) joined to the
root namespace by a veth pair (a /30 of 10.231.x.0/24, chosen free on this machine); it has a
route to the root-side address of its veth and to nothing else.  PostgreSQL listens on 127.0.0.1
only, so the test runs a small TCP forwarder in the root namespace that listens on each veth's
root-side address and forwards to the server.  Each host runs one daemon worker
(``ip netns exec NS unshare --uts ... python -m plait.daemon.worker --profile host-X``, a hostname
of its own) whose profile points at its forwarder address, with TCP keepalives and a TCP user
timeout in the URL (libpq options passed through the profile's URL), a 3 s lease, and its own
``application_name``, which an audit trigger installed by the test records with every row written
to ``processes``, ``logs``, ``process_checkpoints``, ``links`` and ``process_waits``.

The run: host A's worker starts alone and 40 ``TwoHostChain`` work chains are submitted (each calls
a calcfunction, submits two ``TwoHostChild`` children, parks, naps, sums; every fourth has a child
whose step naps 45 s in its thread); once A holds a long child in its nap, host B's worker starts;
then **A's link is cut** (``ip link set <A's root-side veth> down``: a partition, not a kill — A's
worker lives on and its steps go on).  A's leases expire and B takes A's processes over.  Once B
holds every submitted process that A held and the partition has lasted long enough for every
database call A had in flight to have failed, **the link comes back**; A's long naps end only then,
so A's worker tries to go on with processes that B now holds.

Asserted at the end:

* exactly once: every chain finished with exit status 0 and its expected total; no process is
  left non-terminal; no two processes share ``(caller_id, call_key)``; each chain called exactly
  ``th_add, TwoHostChild, TwoHostChild, th_add`` and each child one ``th_add``; the provenance of
  a sample (the chains B took over first) equals that of a crash-free twin run in the test process;
* fencing: for every process that A held at the cut and B took over, no row of any audited table
  touching it was written by A after B's first write to it (unless A legitimately claimed it
  again later); no checkpoint ``(process, seq)`` was ever inserted twice;
* the partition was real: A held processes at the cut (a long child among them), B finished some
  of them, A's worker survived, noticed that it lost them (its log says so), and its long naps
  ended after the link was back.

Needs root (network namespaces), ``ip`` (iproute2) and ``unshare`` (util-linux): the test fails in
CI (``PLAIT_CI``) when one is missing and is skipped elsewhere.  Traffic goes only to loopback and
to the veth addresses made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import TESTS, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

TERMINAL = ("finished", "excepted", "killed")
N_CHAINS = 40
LEASE_S = 3.0
#: the workers' naps (see tests/wf_two_hosts.py); the long one must outlast the whole partition
NAPS = {"PLAIT_TWO_HOSTS_STEP": "1.5", "PLAIT_TWO_HOSTS_NAP": "1.0", "PLAIT_TWO_HOSTS_LONG": "45"}
LONG_S = float(NAPS["PLAIT_TWO_HOSTS_LONG"])
#: the partition lasts at least this long: every database call A had in flight at the cut (TCP user
#: timeout 4 s, a pool pre-ping, a reconnect whose timeout plait fixes at 10 s) has failed by then
PARTITION_MIN_S = 25.0
PARTITION_MAX_S = 60.0  # B must have taken over everything A held within this
#: libpq options in the hosts' URLs: a dead link is noticed within seconds, not hours
URL_OPTIONS = {
    "connect_timeout": "3",
    "keepalives": "1",
    "keepalives_idle": "2",
    "keepalives_interval": "1",
    "keepalives_count": "2",
    "tcp_user_timeout": "4000",
}
#: the forwarder's side of each host link, as a server with tcp_keepalives_* and tcp_user_timeout
#: set would: a session whose client vanished is closed (its transaction rolled back, its row
#: locks released) within seconds
FORWARDER_KEEPALIVE = (2, 1, 2)  # idle, interval, count (s, s, probes)
FORWARDER_USER_TIMEOUT_MS = 4000
SAMPLE = 8  # chains compared with a crash-free twin


# -- what the machine must offer -----------------------------------------------------------------------


def _require_namespaces() -> None:
    """Fail (in CI) or skip (elsewhere) unless network namespaces can be made here."""
    missing = [tool for tool in ("ip", "unshare") if shutil.which(tool) is None]
    problem = None
    if missing:
        package = {"ip": "iproute2", "unshare": "util-linux"}
        problem = f"{', '.join(missing)} missing (install {', '.join(package[m] for m in missing)})"
    elif os.geteuid() != 0:
        problem = "network namespaces need root"
    if problem:
        if os.environ.get("PLAIT_CI"):
            pytest.fail(f"{problem}: CI must provide it (.ci/run)", pytrace=False)
        pytest.skip(problem)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.231.x.0/24 that no interface of this machine uses (another run may use its own)."""
    used = set(re.findall(r"inet (10\.231\.\d+)\.", _ip("-4", "-o", "addr", "show").stdout))
    start = os.getpid() % 240 + 8
    for k in range(240):
        third = (start + k) % 240 + 8
        if f"10.231.{third}" not in used:
            return ipaddress.IPv4Network(f"10.231.{third}.0/24")
    raise RuntimeError("no free 10.231.x.0/24 on this machine")


# -- the hosts ---------------------------------------------------------------------------------------


@dataclass
class Host:
    """One test host: a network namespace, its veth link, its profile and its daemon worker."""

    name: str  # "a" or "b"
    namespace: str
    root_if: str  # the root-side end of the veth pair (cutting the link sets this one down)
    ns_if: str
    root_ip: str
    ns_ip: str
    hostname: str = ""
    profile: str = ""
    app: str = ""  # the application_name of its database sessions (recorded by the audit trigger)
    port: int = 0  # the forwarder's port on root_ip
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    worker_id: str = ""


@pytest.fixture
def hosts() -> Iterator[dict[str, Host]]:
    """Two network namespaces, each with a veth pair to the root namespace; always deleted."""
    _require_namespaces()
    pid = os.getpid()
    net = _free_subnet()
    base = net.network_address
    made: dict[str, Host] = {}
    try:
        for i, name in enumerate(("a", "b")):
            host = Host(
                name=name,
                namespace=f"plait-{name}-{pid}",
                root_if=f"pl{name}{pid}r",
                ns_if=f"pl{name}{pid}n",
                root_ip=str(base + 4 * i + 1),
                ns_ip=str(base + 4 * i + 2),
            )
            _ip("netns", "del", host.namespace, check=False)  # left over by an earlier run of this pid
            _ip("link", "del", host.root_if, check=False)
            _ip("netns", "add", host.namespace)
            made[name] = host
            _ip("link", "add", host.root_if, "type", "veth", "peer", "name", host.ns_if)
            _ip("link", "set", host.ns_if, "netns", host.namespace)
            _ip("addr", "add", f"{host.root_ip}/30", "dev", host.root_if)
            _ip("link", "set", host.root_if, "up")
            _ip("-n", host.namespace, "addr", "add", f"{host.ns_ip}/30", "dev", host.ns_if)
            _ip("-n", host.namespace, "link", "set", host.ns_if, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made.values():
            _stop_worker(host)
        for host in made.values():
            _ip("netns", "del", host.namespace, check=False)  # deletes its veth pair too
            _ip("link", "del", host.root_if, check=False)


def _stop_worker(host: Host) -> None:
    proc = host.proc
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


# -- the forwarder ---------------------------------------------------------------------------------


class Forwarder:
    """TCP forwarding from addresses of the root namespace to PostgreSQL, on an event loop thread."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="two-hosts-forwarder", daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()  # host sessions that ended with an error (a dead link)

    def listen(self, name: str, host: str) -> int:
        """Forward connections to ``host`` (any port: the one returned) from host ``name``."""

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(lambda r, w: self._serve(name, r, w), host, 0)

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=30)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _serve(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted[name] += 1
        sock = writer.get_extra_info("socket")
        idle, interval, count = FORWARDER_KEEPALIVE
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, FORWARDER_USER_TIMEOUT_MS)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, from_host: bool) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                if from_host:
                    self.lost[name] += 1
            finally:
                sink.close()  # either side gone: the other goes too (PostgreSQL ends the session)

        try:
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        finally:
            for w in (writer, up_writer):
                w.close()
                self.writers.discard(w)

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            for writer in list(self.writers):
                writer.close()
            await asyncio.sleep(0.1)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture
def forwarder() -> Iterator[Forwarder]:
    from conftest import POSTGRES_SERVER_URL, _server_address

    fwd = Forwarder(_server_address(POSTGRES_SERVER_URL))
    try:
        yield fwd
    finally:
        fwd.close()


# -- the audit trigger --------------------------------------------------------------------------------

AUDIT_SQL = """
CREATE TABLE two_hosts_audit (
    id bigserial PRIMARY KEY,
    at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
    app text NOT NULL DEFAULT current_setting('application_name'),
    tbl text NOT NULL,
    op text NOT NULL,
    process_id bigint,
    other_id bigint,
    state text,
    old_state text,
    owner text,
    old_owner text,
    detail text
);
CREATE FUNCTION two_hosts_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'processes' THEN
        IF TG_OP = 'UPDATE' THEN
            -- a lease renewal changes lease_expires only: not recorded (there are thousands)
            IF (to_jsonb(OLD) - 'lease_expires') = (to_jsonb(NEW) - 'lease_expires') THEN
                RETURN NULL;
            END IF;
            INSERT INTO two_hosts_audit (tbl, op, process_id, other_id, state, old_state, owner, old_owner,
                                         detail)
            VALUES ('processes', TG_OP, NEW.node_id, NEW.caller_id, NEW.state, OLD.state, NEW.lease_owner,
                    OLD.lease_owner, NEW.checkpoint_seq::text);
        ELSE
            INSERT INTO two_hosts_audit (tbl, op, process_id, other_id, state, owner, detail)
            VALUES ('processes', TG_OP, NEW.node_id, NEW.caller_id, NEW.state, NEW.lease_owner,
                    NEW.process_label);
        END IF;
    ELSIF TG_TABLE_NAME = 'logs' THEN
        INSERT INTO two_hosts_audit (tbl, op, process_id, detail)
        VALUES ('logs', TG_OP, NEW.node_id, NEW.message);
    ELSIF TG_TABLE_NAME = 'process_checkpoints' THEN
        INSERT INTO two_hosts_audit (tbl, op, process_id, other_id, detail)
        VALUES ('process_checkpoints', TG_OP, NEW.process_id, NEW.seq, NEW.step);
    ELSIF TG_TABLE_NAME = 'links' THEN
        INSERT INTO two_hosts_audit (tbl, op, process_id, other_id, detail)
        VALUES ('links', TG_OP, NEW.output_id, NEW.input_id, NEW.link_type || ' ' || NEW.label);
    ELSIF TG_TABLE_NAME = 'process_waits' THEN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO two_hosts_audit (tbl, op, process_id, other_id)
            VALUES ('process_waits', TG_OP, OLD.parent_id, OLD.child_id);
        ELSE
            INSERT INTO two_hosts_audit (tbl, op, process_id, other_id)
            VALUES ('process_waits', TG_OP, NEW.parent_id, NEW.child_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER two_hosts_audit AFTER INSERT OR UPDATE ON processes
    FOR EACH ROW EXECUTE FUNCTION two_hosts_audit_row();
CREATE TRIGGER two_hosts_audit AFTER INSERT ON logs
    FOR EACH ROW EXECUTE FUNCTION two_hosts_audit_row();
CREATE TRIGGER two_hosts_audit AFTER INSERT ON process_checkpoints
    FOR EACH ROW EXECUTE FUNCTION two_hosts_audit_row();
CREATE TRIGGER two_hosts_audit AFTER INSERT ON links
    FOR EACH ROW EXECUTE FUNCTION two_hosts_audit_row();
CREATE TRIGGER two_hosts_audit AFTER INSERT OR DELETE ON process_waits
    FOR EACH ROW EXECUTE FUNCTION two_hosts_audit_row();
"""

AUDIT_DROP_SQL = """
DROP TRIGGER IF EXISTS two_hosts_audit ON processes;
DROP TRIGGER IF EXISTS two_hosts_audit ON logs;
DROP TRIGGER IF EXISTS two_hosts_audit ON process_checkpoints;
DROP TRIGGER IF EXISTS two_hosts_audit ON links;
DROP TRIGGER IF EXISTS two_hosts_audit ON process_waits;
DROP FUNCTION IF EXISTS two_hosts_audit_row();
DROP TABLE IF EXISTS two_hosts_audit;
"""

AUDIT_COLUMNS = ("id", "at", "app", "tbl", "op", "process_id", "other_id", "state", "old_state", "owner",
                 "old_owner", "detail")  # fmt: skip


@pytest.fixture
def audit(postgres_profile: str, postgres_url: str) -> Iterator[Any]:
    """The audit table and triggers in this run's database (the schema made first); dropped after."""
    import psycopg

    from plait.storage import get_backend

    get_backend()  # creates plait's schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(AUDIT_DROP_SQL)
        conn.execute(AUDIT_SQL)

    def rows() -> list[dict[str, Any]]:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            found = conn.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM two_hosts_audit ORDER BY id")
            return [dict(zip(AUDIT_COLUMNS, row, strict=True)) for row in found.fetchall()]

    try:
        yield rows
    finally:
        with contextlib.suppress(Exception), psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(AUDIT_DROP_SQL)


# -- helpers ----------------------------------------------------------------------------------------------


def _host_url(postgres_url: str, host: Host) -> str:
    from sqlalchemy.engine import make_url

    query = {**URL_OPTIONS, "application_name": host.app}
    url = make_url(postgres_url).set(host=host.root_ip, port=host.port, query=query)
    return url.render_as_string(hide_password=False)


def _start_worker(host: Host, env: dict[str, str]) -> None:
    assert host.log is not None
    command = [
        "ip", "netns", "exec", host.namespace,
        "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host.hostname,
        sys.executable, "-m", "plait.daemon.worker", "--profile", host.profile,
    ]  # fmt: skip
    with host.log.open("ab") as log:
        # ip netns exec, unshare and sh all exec: the pid is the worker's
        host.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _registered(backend: Any, host: Host) -> bool:
    assert host.proc is not None
    if host.proc.poll() is not None:
        raise AssertionError(f"the worker of host {host.name} exited ({host.proc.returncode}): {_tail(host)}")
    for row in backend.list_workers():
        if row["pid"] == host.proc.pid:
            host.worker_id = row["id"]
            return True
    return False


def _tail(host: Host, lines: int = 30) -> str:
    if host.log is None or not host.log.exists():
        return ""
    return "\n".join(host.log.read_text(errors="replace").splitlines()[-lines:])


def _all_terminal(backend: Any, pks: list[int]) -> bool:
    rows = backend.list_processes(pks=pks)
    return len(rows) == len(pks) and all(r["state"] in TERMINAL for r in rows)


def _touches(row: dict[str, Any], pk: int) -> bool:
    """Whether an audit row is a write for process ``pk`` (its row, its calls, logs, checkpoints, links
    out of it, its waits)."""
    tbl = row["tbl"]
    if tbl == "processes":
        return row["process_id"] == pk or (row["op"] == "INSERT" and row["other_id"] == pk)
    if tbl in ("logs", "process_checkpoints"):
        return row["process_id"] == pk
    if tbl == "links":
        return row["other_id"] == pk  # CALL, CREATE and RETURN links start at the process
    if tbl == "process_waits":
        return row["op"] == "INSERT" and row["process_id"] == pk  # parking (a child's end deletes)
    return False


# -- the test ------------------------------------------------------------------------------------------


def test_a_partitioned_host_commits_nothing_for_the_processes_the_other_host_took_over(
    hosts, forwarder, audit, postgres_url, tmp_path
):
    import plait
    from engine.test_resume import shape
    from plait import run_get_node, submit
    from plait.orm import Int, load_node
    from plait.storage import create_profile, get_backend
    from wf_two_hosts import CHAIN_CALLS, LONG_NAP, TwoHostChain, expected_total, is_long

    t0 = time.monotonic()
    backend = get_backend()
    a, b = hosts["a"], hosts["b"]
    for host in (a, b):
        host.hostname = f"plait-host-{host.name}"
        host.profile = f"host-{host.name}-{os.getpid()}"
        host.app = f"plait-two-hosts-{host.name}-{os.getpid()}"
        host.port = forwarder.listen(host.name, host.root_ip)
        host.log = tmp_path / f"worker-{host.name}.log"
        create_profile(host.profile, storage_url=_host_url(postgres_url, host))

    env = {k: v for k, v in os.environ.items() if k != "PLAIT_PROFILE"}
    src = str(Path(plait.__file__).resolve().parents[1])
    env.update(NAPS)
    env.update(
        PYTHONPATH=os.pathsep.join([str(TESTS), src, os.environ.get("PYTHONPATH", "")]),
        PLAIT_LEASE_SECONDS=str(LEASE_S),
        PLAIT_SUPERVISOR_PID=str(os.getpid()),  # the workers leave by themselves if this test dies
        PLAIT_LOG_LEVEL="INFO",
    )
    events: list[str] = []

    def note(what: str) -> None:
        events.append(f"{time.monotonic() - t0:6.1f} s  {time.strftime('%H:%M:%S')}  {what}")

    def summary() -> str:
        return (
            "\n".join(events) + f"\n-- host A's worker log:\n{_tail(a)}\n-- host B's worker log:\n{_tail(b)}"
        )

    # -- host A alone claims the chains; host B starts once A holds a long child in its nap -------------
    _start_worker(a, env)
    wait_for(lambda: _registered(backend, a), 60, f"host A's worker to register ({_tail(a)})", interval=0.2)
    note(f"host A's worker {a.worker_id} up")
    chains = {submit(TwoHostChain, seed=Int(seed)).pk: seed for seed in range(N_CHAINS)}
    note(f"{len(chains)} chains submitted")

    def long_naps_of(app: str) -> dict[int, float]:
        return {r["process_id"]: r["at"] for r in audit() if r["tbl"] == "logs" and r["detail"] == LONG_NAP
                and r["app"] == app}  # fmt: skip

    wait_for(lambda: long_naps_of(a.app), 60, f"host A to start a long nap\n{summary()}", interval=0.2)
    _start_worker(b, env)
    wait_for(lambda: _registered(backend, b), 60, f"host B's worker to register\n{summary()}", interval=0.2)
    note(f"host B's worker {b.worker_id} up")
    with contextlib.suppress(AssertionError):  # B gets some work of its own, if it can, before the cut
        wait_for(lambda: bool(backend.held_by(b.worker_id)), 5, "host B to hold something", interval=0.1)

    # -- the cut -----------------------------------------------------------------------------------
    _ip("link", "set", a.root_if, "down")
    cut = time.time()
    note(f"host A's link cut (B held {len(backend.held_by(b.worker_id))})")
    time.sleep(0.3)  # whatever A had on the wire has landed: A writes nothing more until the link is back
    held_at_cut = set(backend.held_by(a.worker_id))
    cut_rows = {r["id"]: r for r in backend.list_processes(pks=sorted(held_at_cut))}
    naps_at_cut = {pk: at for pk, at in long_naps_of(a.app).items() if pk in held_at_cut}
    submitted_at_cut = {pk for pk, r in cut_rows.items() if r["submitted"]}
    kinds = Counter(f"{r['process_label']}/{r['state']}" for r in cut_rows.values())
    note(f"A held {len(held_at_cut)} at the cut: {dict(kinds)}; {len(naps_at_cut)} long child(ren) napping")
    assert held_at_cut, f"host A held nothing at the cut: the test proves nothing\n{summary()}"
    assert naps_at_cut, f"host A held no long child in its nap at the cut\n{summary()}"

    def still_with_a() -> set[int]:
        return {r["id"] for r in backend.list_processes(pks=sorted(submitted_at_cut))
                if r["lease_owner"] == a.worker_id}  # fmt: skip

    wait_for(
        lambda: not still_with_a(),
        PARTITION_MAX_S,
        f"host B to take over every submitted process host A held ({sorted(still_with_a())})\n{summary()}",
        interval=0.2,
    )
    note("host B holds (or has finished) every submitted process A held")
    time.sleep(max(0.0, cut + PARTITION_MIN_S - time.time()))

    # -- the link comes back -----------------------------------------------------------------------
    _ip("link", "set", a.root_if, "up")
    heal = time.time()
    note(
        f"host A's link back after {heal - cut:.1f} s (forwarder: {dict(forwarder.lost)} host sessions lost)"
    )
    assert a.proc is not None and a.proc.poll() is None, f"host A's worker died in the partition\n{summary()}"
    # A's long naps end after the link is back: A then tries to go on with processes B holds
    assert heal < min(naps_at_cut.values()) + LONG_S - 5, (
        f"the partition outlasted A's long naps\n{summary()}"
    )

    chain_pks = sorted(chains)
    wait_for(
        lambda: _all_terminal(backend, chain_pks),
        150,
        f"every chain to end after the partition\n{summary()}",
        interval=0.5,
    )
    everything = [r["id"] for r in backend.list_processes(states=None)]
    with contextlib.suppress(AssertionError):
        wait_for(lambda: _all_terminal(backend, everything), 20, "every process to end", interval=0.5)
    time.sleep(2.0)  # A's last attempts (its naps ended long ago) have landed
    note("every chain ended")
    a_alive = a.proc.poll() is None
    for host in (a, b):
        _stop_worker(host)
    note(f"workers stopped (A had survived the partition: {a_alive})")

    # -- exactly once --------------------------------------------------------------------------------
    problems: list[str] = []
    rows = {r["id"]: r for r in backend.list_processes(states=None)}
    bad = {pk: rows[pk] for pk in chains if (rows[pk]["state"], rows[pk]["exit_status"]) != ("finished", 0)}
    if bad:
        details = [
            (pk, r["state"], r["exit_status"], r["exit_message"], (r["exception"] or "").strip()[-300:])
            for pk, r in list(bad.items())[:4]
        ]
        problems.append(f"{len(bad)} of {len(chains)} chains did not finish ok: {details}")
    active = [(r["id"], r["process_label"], r["state"], r["lease_owner"]) for r in rows.values()
              if r["state"] not in TERMINAL]  # fmt: skip
    if active:
        problems.append(f"{len(active)} processes are not terminal: {active[:8]}")
    calls = Counter((r["caller_id"], r["call_key"]) for r in rows.values() if r["caller_id"] is not None)
    twice = {key: n for key, n in calls.items() if n > 1}
    if twice:
        problems.append(
            f"{len(twice)} (caller, call_key) pairs are shared (a call made twice): {list(twice)[:5]}"
        )
    called: dict[int, list[str]] = {}
    for r in sorted(rows.values(), key=lambda r: r["id"]):
        if r["caller_id"] is not None:
            called.setdefault(r["caller_id"], []).append(r["process_label"])
    wrong = [(pk, called.get(pk)) for pk in chains if called.get(pk) != CHAIN_CALLS]
    wrong += [(pk, called.get(pk)) for pk, r in rows.items()
              if r["process_label"] == "TwoHostChild" and called.get(pk) != ["th_add"]]  # fmt: skip
    if wrong:
        problems.append(f"{len(wrong)} processes did not call exactly their expected children: {wrong[:5]}")
    totals = [(pk, seed) for pk, seed in chains.items() if pk not in bad
              and load_node(pk).outputs.total.value != expected_total(seed)]  # fmt: skip
    if totals:
        problems.append(f"{len(totals)} chains have a wrong total: {totals[:5]}")

    # -- fencing -----------------------------------------------------------------------------------
    log = audit()
    takeover: dict[int, float] = {}  # process -> B's first write to it after the cut (its claim)
    for r in log:
        if r["tbl"] == "processes" and r["app"] == b.app and r["at"] > cut and r["process_id"] in held_at_cut:
            takeover.setdefault(r["process_id"], r["at"])
    reclaim: dict[int, float] = {}  # a later claim of it by A itself: A's writes count from then on
    for r in log:
        pk = r["process_id"]
        if (r["tbl"] == "processes" and r["app"] == a.app and pk in takeover and r["at"] > takeover[pk]
                and r["owner"] == a.worker_id and r["old_owner"] != a.worker_id):  # fmt: skip
            reclaim.setdefault(pk, r["at"])

    def holder_at(pk: int, at: float) -> str | None:
        """Who held ``pk`` at ``at``: the lease owner of the last recorded write of its row before then."""
        owner = None
        for r in log:
            if r["at"] > at:
                break
            if r["tbl"] == "processes" and r["process_id"] == pk:
                owner = r["owner"]
        return owner

    late = []
    for r in log:
        if r["app"] != a.app or r["at"] <= cut:
            continue
        for pk, since in takeover.items():
            if r["at"] > since and r["at"] < reclaim.get(pk, float("inf")) and _touches(r, pk):
                holder = holder_at(pk, r["at"])
                when = round(r["at"] - cut, 2)
                late.append((pk, when, r["tbl"], r["op"], r["process_id"], r["detail"], holder))
    if late:
        problems.append(
            f"fencing: host A wrote {len(late)} row(s) for processes B had taken over, after B took them "
            f"(pk, s after the cut, table, op, row's process, detail, the lease holder then): {late[:20]}"
        )
    seqs = Counter((r["process_id"], r["other_id"]) for r in log if r["tbl"] == "process_checkpoints")
    dup = [key for key, n in seqs.items() if n > 1]
    if dup:
        problems.append(f"fencing: {len(dup)} checkpoint (process, seq) inserted twice: {dup[:5]}")
    in_partition = [(r["process_id"], r["tbl"], round(r["at"] - cut, 3)) for r in log
                    if r["app"] == a.app and cut < r["at"] < heal]  # fmt: skip
    after_heal = Counter(r["tbl"] for r in log if r["app"] == a.app and r["at"] >= heal)
    finished_by_b = {
        r["process_id"] for r in log
        if r["tbl"] == "processes" and r["process_id"] in takeover and r["state"] == "finished"
        and r["old_state"] != "finished" and r["app"] == b.app
    }  # fmt: skip
    note(
        f"{len(takeover)} of the {len(held_at_cut)} processes A held were taken over by B, "
        f"{len(finished_by_b)} of them finished by B, {len(reclaim)} claimed again by A later; "
        f"A wrote {len(in_partition)} row(s) during the partition {in_partition[:5]}, "
        f"{sum(after_heal.values())} after it ({dict(after_heal)})"
    )

    # -- the partition was real ------------------------------------------------------------------------
    if not takeover or not finished_by_b:
        problems.append("host B took over (and finished) none of the processes host A held")
    if not set(naps_at_cut) & set(takeover):
        problems.append(f"host B took over none of A's long children in their nap ({sorted(naps_at_cut)})")
    a_log = a.log.read_text(errors="replace") if a.log else ""
    let_go = {int(pk) for pk in re.findall(r"process (\d+) (?:is now held by|was taken over by)", a_log)}
    if not a_alive:
        last = [line for line in a_log.splitlines() if line and not line.startswith((" ", "\t"))][-3:]
        problems.append(
            f"host A's worker did not survive the partition (exit status {a.proc.returncode}): {last}"
        )
    elif not let_go & set(takeover):
        problems.append(
            f"host A's worker never said it lost the lease of a process B took over ({sorted(let_go)})"
        )
    note(f"host A's worker let go of {sorted(let_go & set(takeover))}")

    # -- provenance of a sample, against a crash-free twin run here --------------------------------
    if not bad:  # (a chain that did not finish has no twin to compare with)
        caller = {pk: r["caller_id"] for pk, r in rows.items()}

        def chain_of(pk: int | None) -> int | None:
            while pk is not None and pk not in chains:
                pk = caller.get(pk)
            return pk

        hit = sorted(
            {c for c in map(chain_of, takeover) if c is not None}, key=lambda pk: -is_long(chains[pk])
        )
        sample = hit[: SAMPLE - 2] + [pk for pk in chain_pks if pk not in hit][:2]
        differ = []
        for pk in sample:
            _, twin = run_get_node(TwoHostChain, seed=Int(chains[pk]))
            if shape(load_node(pk)) != shape(twin):
                differ.append((pk, shape(load_node(pk)), shape(twin)))
        if differ:
            pk, mine, theirs = differ[0]
            problems.append(
                f"{len(differ)} of {len(sample)} chains differ from their twin: <{pk}> {mine} != {theirs}"
            )
        note(f"provenance of {len(sample)} chains ({len(hit)} touched by the takeover) compared with a twin")

    note(f"done in {time.monotonic() - t0:.0f} s")
    assert not problems, "\n".join(problems) + "\n" + summary()
