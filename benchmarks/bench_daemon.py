"""(d) The daemon: CalcJobs through it, submission rate, 10,000 parked processes, pause latency.

Every run gets a fresh scratch ``PLAIT_HOME`` (see _common.py), starts its own daemon
(``plait.daemon.client.start``) with this folder on ``PYTHONPATH`` (the workers import
``bench_workflows``), and stops it in a ``finally``; the daemon's processes (supervisor and
workers, found by pid) are checked to be gone at the end, and killed by pid if they are not.
Completion is watched like the aiida anchor's monitor does: a read-only ``sqlite3`` SELECT on the
profile's database file every ``--poll-every`` seconds (default 0.1 s), no ORM, no lock.

Rows (one ``RESULT {json}`` line each)::

    python3 benchmarks/bench_daemon.py calcjob [-n 20] [--workers 1] [--broker database|rabbitmq]
    python3 benchmarks/bench_daemon.py submit [-n 500] [--no-daemon] [--broker ...]
    python3 benchmarks/bench_daemon.py parked [-n 10000] [--during-submit] [--broker ...]
    python3 benchmarks/bench_daemon.py pause [--samples 20] [--broker ...]

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
parser.add_argument("row", choices=["calcjob", "submit", "parked", "pause"])
parser.add_argument("-n", type=int, default=None, help="calcjob 20, submit 500, parked 10000")
parser.add_argument("--workers", type=int, default=1)
parser.add_argument("--slots", type=int, default=200, help="worker slots (the default 200)")
parser.add_argument("--warmup", type=int, default=1)
parser.add_argument("--poll-every", type=float, default=0.1, help="monitor interval (the anchor's 0.1 s)")
parser.add_argument("--broker", default="database", help="database (default) or rabbitmq")
parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
parser.add_argument("--no-daemon", action="store_true", help="submit: no daemon running")
parser.add_argument("--during-submit", action="store_true", help="parked: start the daemon before submitting")
parser.add_argument("--parked-fraction", type=float, default=0.99)
parser.add_argument("--stall-s", type=float, default=30.0, help="parked: give up parking after no progress")
parser.add_argument("--samples", type=int, default=20, help="pause: samples per series")
parser.add_argument("--no-cli", action="store_true", help="pause: skip the CLI series")
parser.add_argument("--max-wait", type=float, default=1800.0, help="give up waiting after this many seconds")
_common.add_common_args(parser)
args = parser.parse_args()
N = args.n if args.n is not None else {"calcjob": 20, "submit": 500, "parked": 10000, "pause": 0}[args.row]

tag = args.tag
if args.row == "calcjob":
    tag = f"_{args.workers}w{tag}"
if args.row == "submit":
    tag = f"_{'nodaemon' if args.no_daemon else 'daemon'}{tag}"
if args.broker != "database":
    tag = f"_{args.broker}{tag}"
NAME = f"d_{args.row}{tag}"
home = _common.fresh_home(NAME, args)

# the workers inherit our environment: they must import bench_workflows from this folder
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(HERE), os.environ.get("PYTHONPATH", "")] if p)
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

if args.broker != "database":
    if args.broker != "rabbitmq":
        parser.error("--broker is 'database' or 'rabbitmq'")
    profile_name = f"bench-rmq-{os.getpid()}"  # the exchanges are named after the profile
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from plait.storage.profile import create_profile; "
            "create_profile(sys.argv[1], broker_url=sys.argv[2], make_default=False); "
            "import plait.storage as s; s.load_profile(sys.argv[1]); s.get_backend()",
            profile_name,
            args.amqp_url,
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
DB_PATH = Path(PROFILE.storage_url[len("sqlite:///") :])
RECORD: dict = {
    "row": args.row,
    "n": N,
    "workers": args.workers,
    "slots": args.slots,
    "broker": PROFILE.broker_url if PROFILE.broker_url == "database" else "rabbitmq",
    "poll_every_s": args.poll_every,
    "import_s": round(t_import, 4),
}


# -- the monitor (raw sqlite3, read-only, like the anchor's) -------------------------------------------------


class Monitor:
    """Read-only SELECTs on the profile's SQLite file; no ORM, no lock held between looks."""

    def __init__(self) -> None:
        self.con = sqlite3.connect(f"file:{DB_PATH}?mode=ro", uri=True, timeout=30, isolation_level=None)
        self.owners: dict[int, str] = {}  # pk -> the first lease holder seen by wait_terminated

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
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


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def daemon_pids_of_this_home() -> list[int]:
    """``plait.daemon`` processes whose PLAIT_HOME is ours (never anybody else's)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmd = handle.read()
            if b"plait.daemon" not in cmd:
                continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                env = handle.read().split(b"\0")
        except OSError:
            continue
        if f"PLAIT_HOME={home}".encode() in env and alive(int(entry)):
            found.append(int(entry))
    return found


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

        t0 = time.perf_counter()
        pks = [submit(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1)).pk for i in range(N)]
        t_submitted = time.perf_counter() - t0
        states = monitor.wait_terminated(pks, args.poll_every, args.max_wait)
        elapsed = time.perf_counter() - t0
        RECORD.update(daemon.worker_memory())
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
        while True:
            counts = count_parked(monitor)
            rss = proc_status_kib(daemon.worker_pids[0], "VmRSS") or 0
            peak_rss = max(peak_rss, rss)
            now = time.perf_counter() - t0
            if now - last_print >= 5.0:
                last_print = now
                timeline.append({"t_s": round(now, 1), **counts, "worker_rss_kib": rss})
                print(f"[{now:7.1f} s] {counts} worker RSS {rss / 1024:.0f} MiB", file=sys.stderr, flush=True)
            if counts["parked_parents"] >= wanted:
                break
            if counts["parked_parents"] != progress[0]:
                progress = (counts["parked_parents"], now)
            elif now - progress[1] > args.stall_s:
                # no parent parked for a while: the slots are full of gated children (--during-submit)
                stalled = True
                print(
                    f"stalled at {progress[0]} parked parents; opening the gate", file=sys.stderr, flush=True
                )
                break
            if now > args.max_wait:
                raise TimeoutError(f"only {counts['parked_parents']} of {N} parents parked after {now:.0f} s")
            time.sleep(max(args.poll_every, 0.2))
        t_parked = time.perf_counter() - t0 if not stalled else None
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
        stalled=stalled,
        stalled_after_s=round(progress[1], 1) if stalled else None,
        worker_rss_kib_at_parked=mem_parked["worker_rss_kib"][0],
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


{"calcjob": row_calcjob, "submit": row_submit, "parked": row_parked, "pause": row_pause}[args.row]()
left = daemon_pids_of_this_home()
RECORD["daemon_processes_of_this_home_at_exit"] = left
assert not left, f"daemon processes left behind: {left}"
_common.emit(NAME, RECORD)
