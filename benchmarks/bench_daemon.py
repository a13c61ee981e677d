"""(d) The daemon: CalcJobs through it, submission rate, parked processes, pause, kill and takeover.

Every run gets a fresh scratch ``PLAIT_HOME`` (see _common.py), starts its own daemon
(``plait.daemon.client.start``) with this folder on ``PYTHONPATH`` (the workers import
``bench_workflows``), and stops it in a ``finally``; the daemon's processes (supervisor and
workers, found by pid) are checked to be gone at the end, and killed by pid if they are not.
Completion is watched like the aiida anchor's monitor does: a read-only ``sqlite3`` SELECT on the
profile's database file every ``--poll-every`` seconds (default 0.1 s), no ORM, no lock
(on PostgreSQL, ``--postgres``: the same SELECTs through psycopg in autocommit mode).

Rows (one ``RESULT {json}`` line each)::

    python3 benchmarks/bench_daemon.py calcjob [-n 20] [--workers 1] [--broker database|rabbitmq]
    python3 benchmarks/bench_daemon.py submit [-n 500] [--no-daemon] [--broker ...]
    python3 benchmarks/bench_daemon.py parked [-n 10000] [--during-submit] [--broker ...]
    python3 benchmarks/bench_daemon.py pause [--samples 20] [--broker ...]
    python3 benchmarks/bench_daemon.py takeover [--kills 5] [-n 20] [--workers 2] [--postgres]
    python3 benchmarks/bench_daemon.py kill [--samples 5]

Every row takes ``--quick`` (a small smoke run: a few jobs, processes or samples),
``--postgres`` (a PostgreSQL profile on a database of its own, ``plait_bench_<pid>`` on
``--postgres-server``, created for the run and dropped at exit) and ``--wait-load LOAD``
(wait for a quiet machine first; see _common.py).

* ``calcjob`` — as the anchor's ``bench_calcjob.py --mode submit``: after 1 warm-up job submitted
  and awaited, the timer starts, N ``submit(ArithmeticAddCalculation, code=bash-add, x=Int(i),
  y=Int(1))`` back to back, and it stops when the monitor sees all N terminated.  Each must be
  finished ok with ``sum == i+1``.  Reports CalcJobs/min and the workers' peak RSS (``VmHWM``).
* ``submit`` — ``plait.submit(Trivial, x=Int(i))`` N times in a loop (after 1 warm-up submit),
  submits/s; with the daemon running (default; it then also waits for all N to finish ok and
  reports the end-to-end rate) or without (``--no-daemon``: all N must be stored as created).
* ``parked`` — N ``GateParent`` work chains, each submitting one ``GateChild`` that waits at an
  ``await asyncio.sleep`` until a gate file exists; 1 worker with the default 200 slots.  By
  default all N are submitted first and the daemon started after (a gated child holds a slot, so
  with the daemon running during the submission the 200 slots fill with children while most
  parents are not even claimed; ``--during-submit`` shows that).  Reports the time until
  >= 99 % of the parents are parked (waiting, no lease), the worker's RSS then, the time from
  opening the gate to all 2N terminated, the worker's peak RSS (``VmHWM``), and that all finished ok.
* ``pause`` — a ``GateChild`` held by the worker, waiting at its await: ``control.pause([pk])``
  (and, as a second series, the CLI ``plait process pause PK`` as a subprocess), timed from the
  call to the database showing ``paused`` (a read-only connection polled every 1 ms); then
  ``control.play`` and wait until the worker holds it again.  ``--samples`` of each.
* ``takeover`` — a daemon of ``--workers`` (2) workers with the default lease (30 s; ``--lease``
  sets ``PLAIT_LEASE_SECONDS``) holds N processes (half ``GateChild``, waiting at an await, half
  ``SpinChild``, running blocking step code), the gate never open.  ``--kills`` times: once both
  workers are live and registered and every process is held, the worker holding the most gets
  ``kill -9``; a watcher (its own connection, every ``--watch-every`` s) times until every
  process it held is held by another worker or terminal.  Reports median and max, who took the
  processes over (the surviving worker or the supervisor's replacement) and how long the
  replacement took to register.  Then the gate opens and all must finish ok.
* ``kill`` — the kill latency of a ``GateChild`` waiting at its await (gate never open), for a
  process nobody holds (submitted with no daemon running), one a daemon worker holds, and one a
  script holds (a subprocess running ``plait.run``): ``control.kill([pk])`` and, as a second
  series, the CLI ``plait process kill PK`` as a subprocess, timed from the call until it returns
  and until the database shows ``killed`` (a read-only connection polled every 1 ms).  The
  interpreter start of the CLI is reported separately: ``plait --help`` and ``python -c pass``.

``--broker rabbitmq`` creates the scratch profile with ``amqp://guest:guest@127.0.0.1:5672/``
(``--amqp-url``) instead of the embedded database broker.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import _common

HERE = Path(__file__).resolve().parent
TERMINAL = ("finished", "excepted", "killed")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ROWS = ["calcjob", "submit", "parked", "pause", "takeover", "kill"]
parser.add_argument("row", choices=ROWS)
parser.add_argument(
    "-n", type=int, default=None, help="calcjob 20, submit 500, parked 10000, takeover 20 (processes held)"
)
parser.add_argument("--workers", type=int, default=None, help="daemon workers (1; takeover: 2)")
parser.add_argument("--quick", action="store_true", help="a small smoke run of the row")
parser.add_argument("--postgres", action="store_true", help="a PostgreSQL profile on a database of its own")
parser.add_argument(
    "--postgres-server",
    default="postgresql://postgres@127.0.0.1:5432/postgres",
    help="where --postgres creates (and drops) its database plait_bench_<pid>",
)
parser.add_argument("--slots", type=int, default=200, help="worker slots (the default 200)")
parser.add_argument("--warmup", type=int, default=1)
parser.add_argument("--poll-every", type=float, default=0.1, help="monitor interval (the anchor's 0.1 s)")
parser.add_argument("--broker", default="database", help="database (default) or rabbitmq")
parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
parser.add_argument("--no-daemon", action="store_true", help="submit: no daemon running")
parser.add_argument("--during-submit", action="store_true", help="parked: start the daemon before submitting")
parser.add_argument("--parked-fraction", type=float, default=0.99)
parser.add_argument("--stall-s", type=float, default=30.0, help="parked: give up parking after no progress")
parser.add_argument("--samples", type=int, default=None, help="pause: samples per series (20); kill: 5")
parser.add_argument("--kills", type=int, default=5, help="takeover: worker kills (SIGKILL)")
parser.add_argument("--lease", type=float, default=None, help="takeover: PLAIT_LEASE_SECONDS (default: 30 s)")
parser.add_argument("--watch-every", type=float, default=0.01, help="takeover: watcher interval (s)")
parser.add_argument("--min-age", type=float, default=5.5, help="takeover: kill only workers this old (s)")
parser.add_argument("--help-reps", type=int, default=5, help="kill: runs of `plait --help`, `python -c pass`")
parser.add_argument("--no-cli", action="store_true", help="pause: skip the CLI series")
parser.add_argument("--max-wait", type=float, default=1800.0, help="give up waiting after this many seconds")
_common.add_common_args(parser)
args = parser.parse_args()
DEFAULT_N = {"calcjob": 20, "submit": 500, "parked": 10000, "pause": 0, "takeover": 20, "kill": 0}
QUICK_N = {"calcjob": 3, "submit": 50, "parked": 200, "pause": 0, "takeover": 4, "kill": 0}
N = args.n if args.n is not None else (QUICK_N if args.quick else DEFAULT_N)[args.row]
if args.workers is None:
    args.workers = 2 if args.row == "takeover" else 1
if args.samples is None:
    args.samples = (2 if args.quick else 5) if args.row == "kill" else (3 if args.quick else 20)
if args.quick:
    args.kills = min(args.kills, 1)
    args.help_reps = min(args.help_reps, 2)

tag = args.tag
if args.row == "calcjob":
    tag = f"_{args.workers}w{tag}"
if args.row == "submit":
    tag = f"_{'nodaemon' if args.no_daemon else 'daemon'}{tag}"
if args.broker != "database":
    tag = f"_{args.broker}{tag}"
if args.postgres:
    tag = f"_pg{tag}"
if args.quick:
    tag = f"{tag}_quick"
NAME = f"d_{args.row}{tag}"
home = _common.fresh_home(NAME, args)

# the workers inherit our environment: they must import bench_workflows from this folder
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(HERE), os.environ.get("PYTHONPATH", "")] if p)
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

if args.row == "takeover" and args.lease is not None:
    os.environ["PLAIT_LEASE_SECONDS"] = str(args.lease)
elif args.row == "takeover":
    os.environ.pop("PLAIT_LEASE_SECONDS", None)  # the default lease: what a user gets

if args.broker != "database" or args.postgres:
    if args.broker not in ("database", "rabbitmq"):
        parser.error("--broker is 'database' or 'rabbitmq'")
    # the RabbitMQ exchanges are named after the profile
    profile_name = f"bench-{'pg' if args.postgres else 'sqlite'}-{args.broker}-{os.getpid()}"
    storage_url = _common.postgres_database(args.postgres_server) if args.postgres else ""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from plait.storage.profile import create_profile; "
            "create_profile(sys.argv[1], broker_url=sys.argv[2], storage_url=sys.argv[3] or None, "
            "make_default=False); "
            "import plait.storage as s; s.load_profile(sys.argv[1]); s.get_backend()",
            profile_name,
            args.amqp_url if args.broker == "rabbitmq" else "database",
            storage_url,
        ],
        check=True,
        timeout=300,
    )
    os.environ["PLAIT_PROFILE"] = profile_name

t0 = time.perf_counter()
from plait import submit  # noqa: E402
from plait.daemon import client  # noqa: E402
from plait.orm import Int, Str, load_node  # noqa: E402
from plait.storage import get_backend, get_profile  # noqa: E402

t_import = time.perf_counter() - t0
PROFILE = get_profile()
IS_SQLITE = PROFILE.storage_backend == "sqlite"
DB_PATH = Path(PROFILE.storage_url[len("sqlite:///") :]) if IS_SQLITE else None
PG_URL = None if IS_SQLITE else PROFILE.storage_url.replace("postgresql+psycopg://", "postgresql://", 1)
RECORD: dict = {
    "row": args.row,
    "n": N,
    "quick": args.quick,
    "workers": args.workers,
    "slots": args.slots,
    "storage": PROFILE.storage_backend,
    "broker": PROFILE.broker_url if PROFILE.broker_url == "database" else "rabbitmq",
    "poll_every_s": args.poll_every,
    "import_s": round(t_import, 4),
}


# -- the monitor (raw sqlite3, read-only, like the anchor's) -------------------------------------------------


class Monitor:
    """Read-only SELECTs on the profile's SQLite file; no ORM, no lock held between looks.

    On PostgreSQL the same SELECTs go through psycopg in autocommit mode (one snapshot per look).
    """

    def __init__(self) -> None:
        self.owners: dict[int, str] = {}  # pk -> the first lease holder seen by wait_terminated
        if IS_SQLITE:
            self.con = sqlite3.connect(f"file:{DB_PATH}?mode=ro", uri=True, timeout=30, isolation_level=None)
        else:
            import psycopg

            self.con = psycopg.connect(PG_URL, autocommit=True)
            self.con.execute("SET default_transaction_read_only = on")

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not IS_SQLITE:
            return self.con.execute(sql.replace("?", "%s"), params).fetchall()
        while True:
            try:
                return self.con.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:  # "database is locked" under a writer: look again
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(0.001)

    def states(self, pks: list[int]) -> dict[int, tuple]:
        found: dict[int, tuple] = {}
        for i in range(0, len(pks), 500):
            part = pks[i : i + 500]
            marks = ",".join("?" * len(part))
            for row in self.query(
                f"SELECT node_id, state, exit_status, paused, lease_owner FROM processes "
                f"WHERE node_id IN ({marks})",
                tuple(part),
            ):
                found[row[0]] = row[1:]
        return found

    def wait_terminated(self, pks: list[int], every: float, max_wait: float) -> dict[int, tuple]:
        deadline = time.perf_counter() + max_wait
        while True:
            states = self.states(pks)
            for pk, state in states.items():
                if state[3] and pk not in self.owners:
                    self.owners[pk] = state[3]
            if len(states) == len(pks) and all(s[0] in TERMINAL for s in states.values()):
                return states
            if time.perf_counter() > deadline:
                raise TimeoutError(f"not all terminated after {max_wait:g} s")
            time.sleep(every)

    def close(self) -> None:
        self.con.close()


# -- the daemon ----------------------------------------------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (``/proc/<pid>/stat``)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (``/proc/stat``)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def alive(pid: int) -> bool:
    return _common.alive(pid)


def daemon_pids_of_this_home() -> list[int]:
    """``plait.daemon`` processes whose PLAIT_HOME is ours (never anybody else's)."""
    return _common.daemon_pids_of(home)


class Daemon:
    """Start the profile's daemon, wait until its workers are registered; stop it always."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pids: list[int] = []
        self.supervisor: int | None = None
        self.worker_pids: list[int] = []

    def start(self) -> None:
        t0 = time.perf_counter()
        status = client.start(workers=self.workers, worker_slots=args.slots)
        self.supervisor = status["pid"]
        self.worker_pids = [w["pid"] for w in status["workers"]]
        self.pids = [self.supervisor, *self.worker_pids]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # registered in the database: ready to claim
            rows = get_backend().list_workers()
            if len({r["pid"] for r in rows} & set(self.worker_pids)) == self.workers:
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("the workers did not register within 60 s")
        RECORD.setdefault("daemon_start_s", round(time.perf_counter() - t0, 4))

    def worker_memory(self) -> dict:
        return {
            "worker_rss_kib": [proc_status_kib(p, "VmRSS") for p in self.worker_pids],
            "worker_peak_rss_kib": [proc_status_kib(p, "VmHWM") for p in self.worker_pids],
            "worker_cpu_s": [proc_cpu_s(p) for p in self.worker_pids],
            "worker_peak_rss_kib_db": [
                (r["info"] or {}).get("peak_rss_kib")
                for r in get_backend().list_workers()
                if r["pid"] in self.worker_pids
            ],
        }

    def stop(self) -> None:
        t0 = time.perf_counter()
        try:
            client.stop(timeout=120)
        except Exception as exc:  # report, then make sure by pid
            print(f"daemon stop: {exc}", file=sys.stderr)
        RECORD["daemon_stop_s"] = round(time.perf_counter() - t0, 4)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(p) for p in self.pids):
            time.sleep(0.05)
        left = [p for p in {*self.pids, *daemon_pids_of_this_home()} if alive(p)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        RECORD["daemon_processes_left_after_stop"] = left


@contextlib.contextmanager
def running_daemon(workers: int):
    daemon = Daemon(workers)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


# -- rows ----------------------------------------------------------------------------------------------------


def row_calcjob() -> None:
    from plait.calculations.arithmetic import ArithmeticAddCalculation
    from plait.orm import Computer, InstalledCode

    computer = Computer.get("localhost")
    code = InstalledCode(computer=computer, filepath_executable="/bin/bash", label="bash-add").store()
    RECORD.update(
        computer_options=computer.options,
        minimum_poll_interval=computer.options.get("minimum_poll_interval"),
        safe_interval=computer.safe_interval(),
        login_shell=False,
    )
    monitor = Monitor()
    with running_daemon(args.workers) as daemon:
        t0 = time.perf_counter()
        warm = [
            submit(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1)).pk for i in range(args.warmup)
        ]
        states = monitor.wait_terminated(warm, args.poll_every, args.max_wait)
        assert all(s[:2] == ("finished", 0) for s in states.values()), states
        RECORD["warmup_s"] = round(time.perf_counter() - t0, 4)
        monitor.owners.clear()

        cpu0 = [proc_cpu_s(p) or 0.0 for p in daemon.worker_pids]
        machine0 = machine_cpu()
        t0 = time.perf_counter()
        pks = [submit(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1)).pk for i in range(N)]
        t_submitted = time.perf_counter() - t0
        states = monitor.wait_terminated(pks, args.poll_every, args.max_wait)
        elapsed = time.perf_counter() - t0
        RECORD.update(daemon.worker_memory())
        machine1 = machine_cpu()
        RECORD["machine_busy_fraction_timed"] = round(
            (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]), 3
        )
        RECORD["worker_cpu_s_timed"] = [
            round((c or 0.0) - c0, 2) for c, c0 in zip(RECORD["worker_cpu_s"], cpu0, strict=True)
        ]
        # who ran them (as far as the monitor's looks caught a holder): do several workers share a burst?
        by_owner: dict[str, int] = {}
        for owner in monitor.owners.values():
            by_owner[owner] = by_owner.get(owner, 0) + 1
        RECORD["jobs_seen_held_per_worker"] = sorted(by_owner.values(), reverse=True)
    bad = {pk: s for pk, s in states.items() if s[:2] != ("finished", 0)}
    assert not bad, bad
    for i, pk in enumerate(pks):
        node = load_node(pk)
        assert node.is_finished_ok, (pk, node.process_state, node.exit_status)
        assert node.outputs.sum.value == i + 1, (pk, node.outputs.sum.value)
    monitor.close()
    RECORD.update(
        submit_all_s=round(t_submitted, 4),
        elapsed_s=round(elapsed, 4),
        calcjobs_per_min=round(60 * N / elapsed, 2),
        s_per_calcjob=round(elapsed / N, 4),
        all_finished_ok=True,
    )


def row_submit() -> None:
    from bench_workflows import Trivial

    monitor = Monitor()
    stack = contextlib.ExitStack()
    with stack:
        daemon = None if args.no_daemon else stack.enter_context(running_daemon(args.workers))
        warm = [submit(Trivial, x=Int(-1 - i)).pk for i in range(args.warmup)]
        if daemon is not None:
            monitor.wait_terminated(warm, args.poll_every, args.max_wait)
        t0 = time.perf_counter()
        pks = [submit(Trivial, x=Int(i)).pk for i in range(N)]
        elapsed = time.perf_counter() - t0
        RECORD.update(
            submit_s=round(elapsed, 4),
            submits_per_s=round(N / elapsed, 1),
            ms_per_submit=round(1000 * elapsed / N, 3),
            daemon_running=daemon is not None,
        )
        if daemon is not None:
            states = monitor.wait_terminated(pks, args.poll_every, args.max_wait)
            done = time.perf_counter() - t0
            RECORD.update(daemon.worker_memory())
            bad = {pk: s for pk, s in states.items() if s[:2] != ("finished", 0)}
            assert not bad, list(bad.items())[:5]
            RECORD.update(
                all_done_s=round(done, 4),
                end_to_end_per_s=round(N / done, 1),
                all_finished_ok=True,
            )
        else:
            states = monitor.states(pks)
            assert len(states) == N and all(s[0] == "created" for s in states.values()), "not all stored"
            RECORD["all_stored_created"] = True
    monitor.close()


def count_parked(monitor: Monitor) -> dict[str, int]:
    rows = monitor.query(
        "SELECT process_label, state, lease_owner IS NULL, COUNT(*) FROM processes GROUP BY 1, 2, 3"
    )
    counts = {"parked_parents": 0, "parents": 0, "children": 0, "children_held": 0, "terminated": 0}
    for label, state, unheld, count in rows:
        if label == "GateParent":
            counts["parents"] += count
            if state == "waiting" and unheld:
                counts["parked_parents"] += count
        elif label == "GateChild":
            counts["children"] += count
            if not unheld and state not in TERMINAL:
                counts["children_held"] += count
        if state in TERMINAL:
            counts["terminated"] += count
    return counts


def row_parked() -> None:
    from bench_workflows import GateParent

    gate = home / "gate"
    path = Str(str(gate)).store()
    monitor = Monitor()
    wanted = int(args.parked_fraction * N + 0.9999)
    timeline: list[dict] = []
    daemon = Daemon(args.workers)
    try:
        if args.during_submit:
            daemon.start()
        t_first = time.perf_counter()
        parents = []
        for _ in range(N):
            parents.append(submit(GateParent, path=path).pk)
        t_submitted = time.perf_counter() - t_first
        if not args.during_submit:
            daemon.start()
        t0 = t_first if args.during_submit else time.perf_counter()
        last_print = 0.0
        peak_rss = 0
        stalled = False
        progress = (-1, 0.0)  # (parked count, when it last changed)
        t_wanted: float | None = None  # when >= --parked-fraction had parked
        while True:
            counts = count_parked(monitor)
            rss = proc_status_kib(daemon.worker_pids[0], "VmRSS") or 0
            peak_rss = max(peak_rss, rss)
            now = time.perf_counter() - t0
            if now - last_print >= 5.0:
                last_print = now
                timeline.append({"t_s": round(now, 1), **counts, "worker_rss_kib": rss})
                print(f"[{now:7.1f} s] {counts} worker RSS {rss / 1024:.0f} MiB", file=sys.stderr, flush=True)
            if counts["parked_parents"] >= wanted and t_wanted is None:
                t_wanted = now
            if counts["parked_parents"] >= N:
                break
            if counts["parked_parents"] != progress[0]:
                progress = (counts["parked_parents"], now)
            elif t_wanted is not None and now - progress[1] > min(args.stall_s, 10.0):
                break  # the last few do not park (yet): the fraction is what the row reports
            elif now - progress[1] > args.stall_s:
                # no parent parked for a while: the slots are full of gated children (--during-submit)
                stalled = True
                print(
                    f"stalled at {progress[0]} parked parents; opening the gate", file=sys.stderr, flush=True
                )
                break
            if now > args.max_wait:
                raise TimeoutError(f"only {counts['parked_parents']} of {N} parents parked after {now:.0f} s")
            time.sleep(max(args.poll_every, 0.2) if t_wanted is None else args.poll_every)
        t_parked = t_wanted if not stalled else None
        t_all_parked = now if counts["parked_parents"] >= N else None
        mem_parked = daemon.worker_memory()
        parked_counts = counts
        RECORD["daemon_info_at_parked"] = [r["info"] for r in get_backend().list_workers()]
        # then the steady state: every parent parked and the slots full of gated children
        full = min(args.slots * args.workers, N)
        t_full = mem_full = None
        if not stalled:
            deadline = time.perf_counter() + 120
            while time.perf_counter() < deadline:
                counts = count_parked(monitor)
                if counts["children_held"] >= full:
                    t_full = time.perf_counter() - t0
                    time.sleep(1.0)  # let the children settle into their await
                    mem_full = daemon.worker_memory()
                    break
                time.sleep(0.2)
            RECORD.update(
                slots_full_s=None if t_full is None else round(t_full, 3),
                worker_rss_kib_slots_full=None if mem_full is None else mem_full["worker_rss_kib"][0],
                counts_slots_full=counts,
            )

        gate.write_text("open")
        t1 = time.perf_counter()
        total = 2 * N
        while True:
            counts = count_parked(monitor)
            rss = proc_status_kib(daemon.worker_pids[0], "VmRSS") or 0
            peak_rss = max(peak_rss, rss)
            now = time.perf_counter() - t1
            if now - last_print >= 5.0 or counts["terminated"] >= total:
                last_print = now
                timeline.append({"t_gate_s": round(now, 1), **counts, "worker_rss_kib": rss})
                print(
                    f"[gate +{now:6.1f} s] {counts} worker RSS {rss / 1024:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
            if counts["terminated"] >= total:
                break
            if now > args.max_wait:
                raise TimeoutError(f"only {counts['terminated']} of {total} terminated after {now:.0f} s")
            time.sleep(max(args.poll_every, 0.2))
        t_drain = time.perf_counter() - t1
        mem_end = daemon.worker_memory()
    finally:
        daemon.stop()
    outcome = monitor.query(
        "SELECT process_label, state, exit_status, COUNT(*) FROM processes GROUP BY 1, 2, 3"
    )
    monitor.close()
    RECORD["outcome"] = [list(r) for r in outcome]
    ok = sum(
        c for label, s, e, c in outcome if label in ("GateParent", "GateChild") and s == "finished" and e == 0
    )
    assert ok == total, outcome
    RECORD.update(
        order="daemon running during submission"
        if args.during_submit
        else "all submitted, then daemon started",
        submit_s=round(t_submitted, 4),
        submits_per_s=round(N / t_submitted, 1),
        parked_wanted=wanted,
        parked=parked_counts["parked_parents"],
        counts_at_parked=parked_counts,
        time_to_parked_s=None if t_parked is None else round(t_parked, 3),
        time_to_all_parked_s=None if t_all_parked is None else round(t_all_parked, 3),
        stalled=stalled,
        stalled_after_s=round(progress[1], 1) if stalled else None,
        worker_rss_kib_at_parked=mem_parked["worker_rss_kib"][0],
        # CPU seconds the worker spent until all parked: steadier than the wall time on a busy machine
        worker_cpu_s_at_parked=mem_parked["worker_cpu_s"][0],
        worker_peak_rss_kib_at_parked=mem_parked["worker_peak_rss_kib"][0],
        gate_to_all_terminated_s=round(t_drain, 3),
        processes_per_s_after_gate=round(total / t_drain, 1),
        worker_peak_rss_kib=mem_end["worker_peak_rss_kib"][0],
        worker_peak_rss_kib_db=mem_end["worker_peak_rss_kib_db"],
        worker_rss_kib_end=mem_end["worker_rss_kib"][0],
        worker_rss_kib_max_sampled=peak_rss,
        finished_ok=ok,
        all_finished_ok=ok == total,
        timeline=timeline,
    )


def plait_cli() -> list[str]:
    exe = Path(sys.executable).parent / "plait"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from plait.cli.main import main; sys.exit(main())"]


class PausedWatcher(threading.Thread):
    """Polls the database (its own read-only connection) every 1 ms; notes when ``paused`` is first seen."""

    def __init__(self, pk: int) -> None:
        super().__init__(daemon=True)
        self.pk = pk
        self.seen_at: float | None = None
        self.go = threading.Event()
        self.stop_flag = False

    def run(self) -> None:
        monitor = Monitor()
        sql = "SELECT paused FROM processes WHERE node_id = ?"
        self.go.set()
        while not self.stop_flag:
            if monitor.query(sql, (self.pk,))[0][0]:
                self.seen_at = time.perf_counter()
                break
            time.sleep(0.001)
        monitor.close()


def row_pause() -> None:
    from bench_workflows import GateChild

    from plait.engine import control

    gate = home / "gate"
    monitor = Monitor()

    def row() -> tuple:
        return monitor.query("SELECT state, paused, lease_owner FROM processes WHERE node_id = ?", (pk,))[0]

    def wait_for(condition, what: str, timeout: float = 60.0, every: float = 0.001) -> float:
        deadline = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > deadline:
                raise TimeoutError(f"timed out waiting for {what}: {row()}")
            time.sleep(every)
        return time.perf_counter()

    def held() -> bool:
        state, paused, owner = row()
        return owner is not None and not paused and state in ("running", "waiting")

    series: dict[str, dict[str, list[float]]] = {}
    messages: dict[str, list[str]] = {}
    noisy_exits = 0
    with running_daemon(args.workers):
        pk = submit(GateChild, path=Str(str(gate))).pk
        for how in ["api"] + ([] if args.no_cli else ["cli"]):
            samples: dict[str, list[float]] = {"to_db_paused_s": [], "call_s": [], "play_to_held_s": []}
            messages[how] = []
            for _ in range(args.samples):
                wait_for(held, "the worker to hold it")
                time.sleep(0.3)  # well inside its await (asyncio.sleep in a loop)
                watcher = PausedWatcher(pk)
                watcher.start()
                watcher.go.wait()
                t0 = time.perf_counter()
                if how == "api":
                    message = control.pause([pk])[pk]
                else:
                    proc = subprocess.run(
                        [*plait_cli(), "process", "pause", str(pk)],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        timeout=120,
                    )
                    assert proc.returncode == 0, proc.stdout
                    message = proc.stdout.strip().splitlines()[0]
                    noisy_exits += "Task was destroyed" in proc.stdout or "Traceback" in proc.stdout
                t_call = time.perf_counter()
                watcher.join(60)
                watcher.stop_flag = True
                assert watcher.seen_at is not None, f"pause never reached the database: {row()}"
                messages[how].append(message)
                samples["to_db_paused_s"].append(watcher.seen_at - t0)
                samples["call_s"].append(t_call - t0)
                t1 = time.perf_counter()
                assert control.play([pk])[pk] == "played", row()
                samples["play_to_held_s"].append(wait_for(held, "held again after play") - t1)
            series[how] = samples
        gate.write_text("open")
        states = monitor.wait_terminated([pk], args.poll_every, 120)
    assert states[pk][:2] == ("finished", 0), states
    monitor.close()
    for how, samples in series.items():
        for key, values in samples.items():
            RECORD[f"{how}_{key}_median"] = round(statistics.median(values), 4)
            RECORD[f"{how}_{key}_max"] = round(max(values), 4)
            RECORD[f"{how}_{key}"] = [round(v, 4) for v in values]
        RECORD[f"{how}_messages"] = sorted(set(messages[how]))
    RECORD.update(samples=args.samples, all_finished_ok=True, cli_runs_with_tracebacks_at_exit=noisy_exits)


def live_workers() -> dict[str, dict]:
    """The supervisor's live workers that have registered: worker id -> {pid, started}."""
    try:
        alive_pids = {w["pid"]: w for w in client.status(timeout=10)["workers"] if w["alive"] and w["pid"]}
    except Exception:
        return {}
    return {
        r["id"]: {"pid": r["pid"], "started": alive_pids[r["pid"]]["started"]}
        for r in get_backend().list_workers()
        if r["pid"] in alive_pids and alive(r["pid"])
    }


def median_max(values: list[float]) -> dict:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 4), "max": round(max(values), 4)}


def row_takeover() -> None:
    from bench_workflows import GateChild, SpinChild

    gate = home / "gate"  # never opened until the kills are done
    path = Str(str(gate)).store()
    monitor = Monitor()

    def holders(pks: list[int]) -> dict[int, tuple]:
        return monitor.states(pks)  # pk -> (state, exit_status, paused, lease_owner)

    def wait_for(condition, what: str, timeout: float = 120.0, every: float = 0.05):
        deadline = time.perf_counter() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.perf_counter() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(every)

    kills: list[dict] = []
    with running_daemon(args.workers) as daemon:
        pks = [submit(GateChild if i % 2 == 0 else SpinChild, path=path).pk for i in range(N)]
        RECORD["kinds"] = {"GateChild": (N + 1) // 2, "SpinChild": N // 2}
        all_pids = set(daemon.pids)
        for k in range(args.kills):

            def ready():
                live = live_workers()
                if len(live) < args.workers:
                    return None
                if any(time.time() - w["started"] < args.min_age for w in live.values()):
                    return None  # a younger worker is restarted only after a back-off: not what we time
                states = holders(pks)
                if not all(s[3] in live and s[0] in ("running", "waiting") for s in states.values()):
                    return None
                return live, states

            live, states = wait_for(
                ready, "every process held by a live worker, both workers old enough", 180
            )
            all_pids.update(w["pid"] for w in live.values())
            count = {wid: sum(1 for s in states.values() if s[3] == wid) for wid in live}
            victim = max(count, key=count.get)
            pid = live[victim]["pid"]
            held_before = {pk for pk, s in states.items() if s[3] == victim}
            t_kill = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            held_after = {pk for pk, s in holders(pks).items() if s[3] == victim}
            held = sorted(held_before | held_after)
            survivors = set(live) - {victim}
            left = set(held)
            first: float | None = None
            taken_by: dict[str, int] = {}
            replaced_s: float | None = None
            replacement: str | None = None
            deadline = t_kill + 600
            t_done = 0.0
            next_status = t_kill
            while left or replaced_s is None:
                now = time.perf_counter()
                if now > deadline:
                    raise TimeoutError(f"kill {k}: {len(left)} processes not taken over after 600 s")
                if left:
                    for pk, s in holders(sorted(left)).items():
                        if s[0] in TERMINAL or (s[3] is not None and s[3] != victim):
                            left.discard(pk)
                            first = first if first is not None else now - t_kill
                            who = (
                                "terminal"
                                if s[0] in TERMINAL
                                else ("survivor" if s[3] in survivors else "replacement")
                            )
                            taken_by[who] = taken_by.get(who, 0) + 1
                            if who == "replacement":
                                replacement = s[3]
                    if not left:
                        t_done = now - t_kill
                if replaced_s is None and now >= next_status:  # the supervisor's socket, every 0.1 s
                    next_status = now + 0.1
                    new = set(live_workers()) - set(live)
                    if new:
                        replaced_s = time.perf_counter() - t_kill
                        replacement = replacement or next(iter(new))
                time.sleep(args.watch_every)
            kills.append(
                {
                    "held": len(held),
                    "takeover_s": round(t_done, 4),
                    "first_taken_s": None if first is None else round(first, 4),
                    "taken_by": taken_by,
                    "replacement_registered_s": round(replaced_s, 4),
                    "victim_age_s": round(time.time() - live[victim]["started"], 1),
                }
            )
            print(f"kill {k + 1}: {kills[-1]}", file=sys.stderr, flush=True)
        lease = [(r["info"] or {}).get("lease_seconds") for r in get_backend().list_workers()]
        RECORD["lease_seconds_of_workers"] = sorted({x for x in lease if x is not None})
        gate.write_text("open")
        states = monitor.wait_terminated(pks, args.poll_every, args.max_wait)
        daemon.pids = sorted(all_pids | {w["pid"] for w in live_workers().values()})
    monitor.close()
    bad = {pk: s for pk, s in states.items() if s[:2] != ("finished", 0)}
    takeovers = [k["takeover_s"] for k in kills]
    RECORD.update(
        kills=len(kills),
        kill_details=kills,
        takeover_s=takeovers,
        takeover_s_median=median_max(takeovers)["median"],
        takeover_s_max=median_max(takeovers)["max"],
        first_taken_s_median=median_max([k["first_taken_s"] for k in kills])["median"],
        replacement_registered_s_median=median_max([k["replacement_registered_s"] for k in kills])["median"],
        target_s=2.0,
        finished_ok=len(states) - len(bad),
        all_finished_ok=not bad,
    )
    assert not bad, list(bad.items())[:5]


class StateWatcher(threading.Thread):
    """Polls one process's state (its own read-only connection) every 1 ms; notes when ``state`` is seen."""

    def __init__(self, pk: int, state: str) -> None:
        super().__init__(daemon=True)
        self.pk, self.state = pk, state
        self.seen_at: float | None = None
        self.go = threading.Event()
        self.stop_flag = False

    def run(self) -> None:
        monitor = Monitor()
        sql = "SELECT state FROM processes WHERE node_id = ?"
        self.go.set()
        while not self.stop_flag:
            if monitor.query(sql, (self.pk,))[0][0] == self.state:
                self.seen_at = time.perf_counter()
                break
            time.sleep(0.001)
        monitor.close()


SCRIPT_HELD = """
import sys
import plait
from plait.orm import Str
from bench_workflows import GateChild
try:
    node = plait.run_get_node(GateChild, path=Str(sys.argv[1]))[1]
    print("SCRIPT-END", node.pk, node.process_state, flush=True)
except Exception as exc:  # run_get_node raises ProcessKilledError for a killed process
    print("SCRIPT-END", type(exc).__name__, exc, flush=True)
"""


def row_kill() -> None:
    import socket

    from bench_workflows import GateChild

    from plait.engine import control

    gate = home / "gate"  # never opened
    path = Str(str(gate)).store()
    monitor = Monitor()
    host = socket.gethostname()

    def row(pk: int) -> tuple:
        return monitor.query("SELECT state, lease_owner FROM processes WHERE node_id = ?", (pk,))[0]

    def wait_for(condition, what: str, timeout: float = 60.0, every: float = 0.002):
        deadline = time.perf_counter() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.perf_counter() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(every)

    def timed_kill(pk: int, how: str) -> dict:
        watcher = StateWatcher(pk, "killed")
        watcher.start()
        watcher.go.wait()
        t0 = time.perf_counter()
        if how == "api":
            message = control.kill([pk])[pk]
        else:
            proc = subprocess.run(
                [*plait_cli(), "process", "kill", str(pk)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
            )
            message = " ".join(proc.stdout.split())[:300]
            if proc.returncode:
                message = f"exit {proc.returncode}: {message}"
        t_call = time.perf_counter() - t0
        watcher.join(60)
        watcher.stop_flag = True
        if watcher.seen_at is None:
            print(f"{pk} never showed killed: {row(pk)} ({message})", file=sys.stderr, flush=True)
        seen = None if watcher.seen_at is None else watcher.seen_at - t0
        return {"call_s": t_call, "to_db_killed_s": seen, "message": message}

    samples: dict[str, list[dict]] = {}

    def record(kind: str, how: str, result: dict) -> None:
        samples.setdefault(f"{kind}_{how}", []).append(result)
        print(f"{kind:7s} {how}: {result}", file=sys.stderr, flush=True)

    # unheld: submitted, no daemon running (created, nobody holds it)
    for how in ("api", "cli"):
        for _ in range(args.samples):
            pk = submit(GateChild, path=path).pk
            assert row(pk) == ("created", None), row(pk)
            record("unheld", how, timed_kill(pk, how))

    with running_daemon(args.workers):
        workers = {r["id"] for r in get_backend().list_workers()}
        for how in ("api", "cli"):
            for _ in range(args.samples):
                pk = submit(GateChild, path=path).pk
                wait_for(
                    lambda pk=pk: row(pk)[0] == "running" and row(pk)[1] in workers, "held by the worker"
                )
                time.sleep(0.3)  # well inside its await
                record("daemon", how, timed_kill(pk, how))

        # script-held: a script running plait.run, while the daemon runs beside it
        for how in ("api", "cli"):
            for _ in range(args.samples):
                script = subprocess.Popen(
                    [sys.executable, "-c", SCRIPT_HELD, str(gate)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                prefix = f"{host}:{script.pid}:%"
                found = wait_for(
                    lambda prefix=prefix: monitor.query(
                        "SELECT node_id FROM processes WHERE lease_owner LIKE ? AND state = 'running'",
                        (prefix,),
                    ),
                    "the script to hold its process",
                )
                pk = found[0][0]
                time.sleep(0.3)
                result = timed_kill(pk, how)
                t0 = time.perf_counter()
                try:
                    out, _ = script.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    script.kill()
                    out, _ = script.communicate()
                result["script_exit_after_call_s"] = time.perf_counter() - t0
                result["script_said"] = " ".join(out.split()[-12:])
                record("script", how, result)

    # the CLI's interpreter start, timed apart
    def wall(argv: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=120)
        return time.perf_counter() - t0

    help_s = [wall([*plait_cli(), "--help"]) for _ in range(args.help_reps)]
    pass_s = [wall([sys.executable, "-c", "pass"]) for _ in range(args.help_reps)]
    monitor.close()
    for key, values in samples.items():
        for figure in ("call_s", "to_db_killed_s"):
            series = [v[figure] for v in values if v[figure] is not None]
            RECORD[f"{key}_{figure}"] = [None if v[figure] is None else round(v[figure], 4) for v in values]
            RECORD[f"{key}_{figure}_median"] = median_max(series)["median"]
            RECORD[f"{key}_{figure}_max"] = median_max(series)["max"]
        RECORD[f"{key}_messages"] = sorted({v["message"] for v in values})
    RECORD.update(
        samples=args.samples,
        plait_help_s=[round(v, 4) for v in help_s],
        plait_help_s_median=median_max(help_s)["median"],
        python_pass_s_median=median_max(pass_s)["median"],
        all_killed=all(v["to_db_killed_s"] is not None for values in samples.values() for v in values),
        failed_calls=sum(1 for values in samples.values() for v in values if v["message"].startswith("exit")),
    )


{
    "calcjob": row_calcjob,
    "submit": row_submit,
    "parked": row_parked,
    "pause": row_pause,
    "takeover": row_takeover,
    "kill": row_kill,
}[args.row]()
left = daemon_pids_of_this_home()
RECORD["daemon_processes_of_this_home_at_exit"] = left
assert not left, f"daemon processes left behind: {left}"
_common.emit(NAME, RECORD)
