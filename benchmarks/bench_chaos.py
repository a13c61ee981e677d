"""(d) Chaos: 1,000 work chains through a daemon whose workers are killed with SIGKILL 100 times.

The scenario of ``tests/daemon/test_chaos.py``, bigger, with figures instead of assertions::

    python3 benchmarks/bench_chaos.py [-n 1000] [--kills 100] [--workers 2] [--lease 2]
        [--supervisor-kills 1] [--submit-every 0.3] [--sample 20] [--seed S] [--postgres-url URL]

A fresh scratch ``PLAIT_HOME`` (see _common.py) and a daemon of ``--workers`` workers with a lease of
``--lease`` seconds (``PLAIT_LEASE_SECONDS``).  The daemon runs ``ChaosChain`` work chains of
``tests/wf_library.py`` (``tests/`` is put on the workers' ``PYTHONPATH``): each calls a calcfunction
inline, naps at an ``await``, submits a calcfunction, every tenth also submits an
``ArithmeticAddCalculation`` (``bash`` on ``localhost``, direct scheduler), and combines the results
with another inline calcfunction; its first and third steps linger after their calls, before their
checkpoint (``--nap``, ``--sleep``, ``--step``).  ``--burst`` chains are submitted at once, then one
every ``--submit-every`` seconds, at least ``-n`` of them and more while the kills are not done (at
most ``--max-chains``).  Meanwhile a random live worker that holds processes (any, with
``--idle-victims``) and has lived at least ``--min-age`` seconds (7; the supervisor restarts a worker
younger than 5 s only after a growing back-off, and a worker takes 1-4 s to start on a busy 2-core
machine) gets ``kill -9`` after a random
pause of ``--jitter`` seconds, and the run waits until the supervisor has replaced it (runs a new
worker in its place; the next victim is one that has registered); after half of
the kills the supervisor itself gets ``kill -9`` (``--supervisor-kills``), its workers must stop by
themselves, and the daemon is started again.

Figures (the ``RESULT`` line, and a table on stderr):

* ``chains_ok`` / ``chains_failed``: chains finished with exit status 0 / anything else;
* ``processes_not_terminal``: processes anywhere left ``created``, ``running`` or ``waiting``;
* ``duplicate_call_keys``: ``(caller, call_key)`` pairs shared by two processes (a call launched twice);
* ``chains_wrong_children`` / ``chains_wrong_result``: chains that did not call exactly their expected
  children, or whose result is not what ``wf_library.chaos_expected`` says;
* ``twins_differ``: of ``--sample`` random chains (4 of them with a job), those whose provenance
  (``shape()`` of ``tests/engine/test_resume.py``, the job's scratch path blanked) differs from a
  crash-free twin run in this interpreter with ``run_get_node`` once the daemon is stopped;
* ``wall_s``: first submit to every chain terminal; ``busy_kills``: kills of a worker that held
  processes (``held_by`` just before and just after the kill);
* ``takeover_s_median`` / ``takeover_s_max``: per busy kill, the time from the ``kill -9`` until every
  process the victim held is terminal, held by another worker, or has moved on (a new checkpoint or
  state: another worker ran it and parked it between two looks); a watcher thread looks every
  ``--watch-every`` seconds (default 0.02 s).  ``replaced_s_*``: kill until the supervisor runs a new
  worker in its place; ``registered_s_*``: until that worker has registered in the database.

The run exits with status 1, after its ``RESULT`` line, if anything above is wrong (a failed chain, a
process left non-terminal, a duplicate, a wrong child or result, a twin that differs).

``--postgres-url URL`` runs on a PostgreSQL profile on that database instead of SQLite: **its plait
tables are dropped first**, so give it a database of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
TERMINAL = ("finished", "excepted", "killed")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("-n", type=int, default=1000, help="chains submitted at least (default 1000)")
parser.add_argument("--kills", type=int, default=100, help="worker kills with SIGKILL (default 100)")
parser.add_argument("--supervisor-kills", type=int, default=1, help="supervisor kills (0 or 1; default 1)")
parser.add_argument("--workers", type=int, default=2)
parser.add_argument("--lease", type=float, default=2.0, help="lease seconds (PLAIT_LEASE_SECONDS)")
parser.add_argument("--slots", type=int, default=200, help="worker slots (the default 200)")
parser.add_argument("--burst", type=int, default=40, help="chains submitted at once at the start")
parser.add_argument("--submit-every", type=float, default=0.3, help="then one chain every S seconds")
parser.add_argument("--max-chains", type=int, default=None, help="at most this many chains (default 2n)")
parser.add_argument("--min-age", type=float, default=7.0, help="kill only workers older than S seconds")
parser.add_argument("--idle-victims", action="store_true", help="also kill workers that hold nothing")
parser.add_argument("--jitter", type=float, nargs=2, default=(0.1, 0.8), help="random pause before a kill")
parser.add_argument("--nap", type=float, default=1.5, help="ChaosChain's await nap, at most (s)")
parser.add_argument("--sleep", type=float, default=0.3, help="the submitted calcfunction's sleep, at most")
parser.add_argument("--step", type=float, default=0.6, help="a step's linger after its calls, at most")
parser.add_argument("--sample", type=int, default=20, help="chains compared with a crash-free twin")
parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
parser.add_argument("--watch-every", type=float, default=0.02, help="takeover watcher interval (s)")
parser.add_argument("--max-wait", type=float, default=900.0, help="give up waiting for a phase after S")
parser.add_argument("--postgres-url", default=None, help="run on PostgreSQL (its plait tables are dropped)")
_common.add_common_args(parser)
args = parser.parse_args()
MAX_CHAINS = args.max_chains or 2 * args.n
SEED = args.seed if args.seed is not None else int(time.time())
RNG = random.Random(SEED)

NAME = f"d_chaos{'_pg' if args.postgres_url else ''}{args.tag}"
home = _common.fresh_home(NAME, args)

# the workers inherit our environment: they import wf_library from tests/, and nap as told
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(TESTS), os.environ.get("PYTHONPATH", "")] if p)
os.environ["PLAIT_LEASE_SECONDS"] = str(args.lease)
NAPS = {"PLAIT_CHAOS_NAP": args.nap, "PLAIT_CHAOS_SLEEP": args.sleep, "PLAIT_CHAOS_STEP": args.step}
os.environ.update({name: str(value) for name, value in NAPS.items()})
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

if args.postgres_url:
    from conftest import drop_plait_tables  # tests/conftest.py: the list of plait's tables

    drop_plait_tables(args.postgres_url)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from plait.storage.profile import create_profile; "
            "create_profile('chaos-pg', storage_url=sys.argv[1], make_default=False); "
            "import plait.storage as s; s.load_profile('chaos-pg'); s.get_backend()",
            args.postgres_url,
        ],
        check=True,
        timeout=300,
    )
    os.environ["PLAIT_PROFILE"] = "chaos-pg"

from engine.test_resume import shape  # noqa: E402
from plait import run_get_node, submit  # noqa: E402
from plait.daemon import client  # noqa: E402
from plait.orm import Computer, InstalledCode, Int, load_node  # noqa: E402
from plait.storage import get_backend, get_profile  # noqa: E402
from wf_library import ChaosChain, chaos_expected, chaos_has_job  # noqa: E402

PROFILE = get_profile()
BACKEND = get_backend()
RECORD: dict[str, Any] = {
    "n": args.n,
    "kills_wanted": args.kills,
    "supervisor_kills_wanted": args.supervisor_kills,
    "workers": args.workers,
    "lease_s": args.lease,
    "slots": args.slots,
    "storage": PROFILE.storage_backend,
    "burst": args.burst,
    "submit_every_s": args.submit_every,
    "min_age_s": args.min_age,
    "jitter_s": list(args.jitter),
    "naps_s": NAPS,
    "seed": SEED,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- processes of this run -------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    return _common.alive(pid)


def daemon_pids_of_this_home() -> list[int]:
    """``plait.daemon`` processes whose PLAIT_HOME is ours (never anybody else's)."""
    return _common.daemon_pids_of(home)


def wait_until(condition, timeout: float, what: str, every: float = 0.05) -> float:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - t0


# -- the takeover watcher ---------------------------------------------------------------------------------


class Watcher(threading.Thread):
    """Times, for each kill, until everything the victim held was taken over (see the module doc)."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="takeover-watcher")
        self.lock = threading.Lock()
        self.pending: list[dict[str, Any]] = []
        self.done: list[dict[str, Any]] = []
        self.stop_flag = threading.Event()

    def add(self, t_kill: float, victim: str, rows: list[dict[str, Any]]) -> None:
        job = {
            "t_kill": t_kill,
            "victim": victim,
            "at_kill": {r["id"]: (r["state"], r["checkpoint_seq"]) for r in rows},
            "left": {r["id"] for r in rows},
        }
        with self.lock:
            self.pending.append(job)

    @staticmethod
    def moved_on(row: dict[str, Any] | None, victim: str, at_kill: tuple[str, int]) -> bool:
        if row is None:
            return False
        if row["state"] in TERMINAL:
            return True
        if row["lease_owner"] not in (None, victim):
            return True
        return (row["state"], row["checkpoint_seq"]) != at_kill

    def run(self) -> None:
        while not self.stop_flag.is_set():
            with self.lock:
                jobs = list(self.pending)
            if jobs:
                pks = sorted({pk for job in jobs for pk in job["left"]})
                try:
                    rows = {r["id"]: r for r in BACKEND.list_processes(pks=pks)}
                except Exception as exc:  # a busy database: look again
                    log(f"watcher: {exc}")
                    rows = None
                now = time.monotonic()
                if rows is not None:
                    for job in jobs:
                        job["left"] = {
                            pk
                            for pk in job["left"]
                            if not self.moved_on(rows.get(pk), job["victim"], job["at_kill"][pk])
                        }
                        if not job["left"]:
                            job["takeover_s"] = now - job["t_kill"]
                            with self.lock:
                                self.pending.remove(job)
                                self.done.append(job)
            time.sleep(args.watch_every)


# -- the daemon and the chaos ------------------------------------------------------------------------------


class Chaos:
    def __init__(self, code: InstalledCode) -> None:
        self.code = code
        self.watcher = Watcher()
        self.chains: dict[int, int] = {}  # pk -> seed
        self.kills: list[dict[str, Any]] = []
        self.supervisor_kills: list[dict[str, Any]] = []
        self.all_pids: set[int] = set()
        self.supervisor: int | None = None

    def start_daemon(self) -> float:
        t0 = time.monotonic()
        status = client.start(workers=args.workers, worker_slots=args.slots)
        self.supervisor = status["pid"]
        self.all_pids.add(status["pid"])
        return time.monotonic() - t0

    def alive_workers(self) -> list[dict[str, Any]]:
        """The live workers of the current supervisor, as it reports them."""
        try:
            workers = [w for w in client.status(timeout=10)["workers"] if w["alive"]]
        except Exception:
            return []
        self.all_pids.update(w["pid"] for w in workers if w["pid"])
        return workers

    def live_workers(self) -> list[dict[str, Any]]:
        """Live workers of the current supervisor that have registered in the database (with their id)."""
        workers = self.alive_workers()
        ids = {row["pid"]: row["id"] for row in BACKEND.list_workers()}
        return [{**w, "worker_id": ids[w["pid"]]} for w in workers if w["pid"] in ids]

    def note_registrations(self) -> None:
        """Time from a kill until the worker that replaced it has registered in the database."""
        waiting = [k for k in self.kills if k.get("replacement") and "registered_s" not in k]
        if waiting:
            pids = {row["pid"] for row in BACKEND.list_workers()}
            for kill in waiting:
                if kill["replacement"] in pids:
                    kill["registered_s"] = time.monotonic() - kill["t_kill"]

    def submit_one(self) -> None:
        seed = len(self.chains)
        self.chains[submit(ChaosChain, seed=Int(seed), code=self.code).pk] = seed

    def kill_worker(self, worker: dict[str, Any]) -> int:
        pid, worker_id = worker["pid"], worker["worker_id"]
        pids_at_kill = {w["pid"] for w in self.alive_workers()}
        before = BACKEND.held_by(worker_id)
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        after = BACKEND.held_by(worker_id)
        held = sorted({*before, *after})
        rows = BACKEND.list_processes(pks=held) if held else []
        rows = [r for r in rows if r["state"] not in TERMINAL]
        if rows:
            self.watcher.add(t_kill, worker_id, rows)
        self.kills.append(
            {
                "pid": pid,
                "t_kill": t_kill,
                "held": len(held),
                "held_kinds": dict(Counter(f"{r['process_label']}/{r['state']}" for r in rows)),
                "age_s": round(time.time() - worker["started"], 2),
                "pids_at_kill": pids_at_kill,
            }
        )
        return pid

    def kill_supervisor(self) -> None:
        live = self.live_workers()
        pids = [w["pid"] for w in client.status(timeout=30)["workers"] if w["pid"]]
        self.all_pids.update(pids)
        held = sum(len(BACKEND.held_by(w["worker_id"])) for w in live)
        assert self.supervisor is not None
        os.kill(self.supervisor, signal.SIGKILL)
        stopped = wait_until(
            lambda: not any(alive(pid) for pid in pids), 120, f"the workers {pids} to stop by themselves"
        )
        restart = self.start_daemon()
        self.supervisor_kills.append(
            {"after_kill": len(self.kills), "held": held, "workers_stopped_s": stopped, "restart_s": restart}
        )
        log(f"supervisor killed: its workers stopped in {stopped:.1f} s; daemon restarted in {restart:.1f} s")

    def run(self) -> None:
        self.watcher.start()
        for _ in range(args.burst):
            self.submit_one()
        next_submit = time.monotonic()
        next_kill = time.monotonic() + RNG.uniform(*args.jitter) + 1.0
        replacing: dict[str, Any] | None = None
        deadline = time.monotonic() + args.max_wait
        supervisor_at = args.kills // 2 if args.supervisor_kills else None
        last_log = 0.0
        while len(self.kills) < args.kills:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"only {len(self.kills)} kills after {args.max_wait:g} s")
            if now - last_log > 15:
                last_log = now
                log(f"{len(self.kills)} kills, {len(self.chains)} chains submitted")
            if now >= next_submit and len(self.chains) < MAX_CHAINS:
                self.submit_one()
                next_submit = now + args.submit_every
            self.note_registrations()
            if replacing is not None:
                # replaced once the supervisor runs a new worker in its place (registered or not yet:
                # the next victim is one that has registered and lived long enough)
                live = {w["pid"] for w in self.alive_workers()}
                if len(live) == args.workers and replacing["pid"] not in live:
                    replacing["replaced_s"] = time.monotonic() - replacing["t_kill"]
                    replacing["replacement"] = next(iter(live - replacing["pids_at_kill"]), None)
                    replacing = None
                    next_kill = time.monotonic() + RNG.uniform(*args.jitter)
                elif now - replacing["t_kill"] > 60:
                    raise TimeoutError(f"the supervisor did not replace worker {replacing['pid']} in 60 s")
            elif now >= next_kill:
                if (
                    supervisor_at is not None
                    and not self.supervisor_kills
                    and len(self.kills) >= supervisor_at
                ):
                    self.kill_supervisor()
                    next_kill = time.monotonic() + RNG.uniform(*args.jitter)
                    continue
                # a random one of the workers that are old enough and hold processes right now
                old = [w for w in self.live_workers() if time.time() - w["started"] >= args.min_age]
                busy = [w for w in old if args.idle_victims or BACKEND.held_by(w["worker_id"])]
                if busy:
                    self.kill_worker(RNG.choice(busy))
                    replacing = self.kills[-1]
            time.sleep(0.05)
        while len(self.chains) < args.n:
            self.submit_one()

    def stop(self) -> None:
        t0 = time.monotonic()
        try:
            client.stop(timeout=120)
        except Exception as exc:
            log(f"daemon stop: {exc}")
        RECORD["daemon_stop_s"] = round(time.monotonic() - t0, 3)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(p) for p in self.all_pids):
            time.sleep(0.05)
        left = [p for p in {*self.all_pids, *daemon_pids_of_this_home()} if alive(p)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        RECORD["daemon_processes_left_after_stop"] = left


def normalised_shape(node: Any) -> str:
    return re.sub(r"'remote_path': '[^']*'", "'remote_path': '<job folder>'", repr(shape(node)))


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def check(chaos: Chaos) -> None:
    rows = {r["id"]: r for r in BACKEND.list_processes(states=None)}
    chains = chaos.chains
    bad = [pk for pk in chains if (rows[pk]["state"], rows[pk]["exit_status"]) != ("finished", 0)]
    active = [r for r in rows.values() if r["state"] not in TERMINAL]
    calls = Counter((r["caller_id"], r["call_key"]) for r in rows.values() if r["caller_id"] is not None)
    twice = {key: n for key, n in calls.items() if n > 1}
    children: dict[int, list[dict[str, Any]]] = {}
    for row in rows.values():
        if row["caller_id"] in chains:
            children.setdefault(row["caller_id"], []).append(row)
    wrong_children, wrong_result = [], []
    bad_set = set(bad)
    for pk, seed in chains.items():
        if pk in bad_set:
            continue
        result, labels = chaos_expected(seed)
        got = [r["process_label"] for r in sorted(children.get(pk, []), key=lambda r: r["id"])]
        node = load_node(pk)
        if got != labels or [c.process_label for c in node.called] != labels:
            wrong_children.append(pk)
        elif node.outputs.result.value != result:
            wrong_result.append(pk)
    with_job = [pk for pk, seed in chains.items() if chaos_has_job(seed)]
    others = [pk for pk, seed in chains.items() if not chaos_has_job(seed)]
    sample = RNG.sample(with_job, min(4, len(with_job), args.sample))
    sample += RNG.sample(others, min(args.sample - len(sample), len(others)))
    for name in NAPS:
        os.environ.pop(name, None)  # the twins need no naps: timing changes no provenance
    differ = []
    for pk in sorted(sample):
        _, twin = run_get_node(ChaosChain, seed=Int(chains[pk]), code=chaos.code)
        if normalised_shape(load_node(pk)) != normalised_shape(twin):
            differ.append(pk)
    RECORD.update(
        chains=len(chains),
        chains_ok=len(chains) - len(bad),
        chains_failed=len(bad),
        chains_failed_states=dict(Counter(f"{rows[pk]['state']}/{rows[pk]['exit_status']}" for pk in bad)),
        chains_failed_examples=[
            [pk, rows[pk]["state"], rows[pk]["exit_status"], rows[pk]["exit_message"]] for pk in bad[:5]
        ],
        processes=len(rows),
        processes_not_terminal=len(active),
        processes_not_terminal_kinds=dict(Counter(f"{r['process_label']}/{r['state']}" for r in active)),
        duplicate_call_keys=len(twice),
        duplicate_call_key_examples=[[c, k, n] for (c, k), n in list(twice.items())[:5]],
        chains_wrong_children=len(wrong_children),
        chains_wrong_result=len(wrong_result),
        twins_compared=len(sample),
        twins_differ=len(differ),
        twins_differ_pks=differ,
    )


def main() -> int:
    code = InstalledCode(
        computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
    ).store()
    chaos = Chaos(code)
    t0 = time.monotonic()
    finished = False
    try:
        RECORD["daemon_start_s"] = round(chaos.start_daemon(), 3)
        chaos.run()
        RECORD["kill_phase_s"] = round(time.monotonic() - t0, 3)
        log(f"{len(chaos.kills)} kills done; waiting for {len(chaos.chains)} chains")
        pks = list(chaos.chains)

        def settled() -> bool:
            states = BACKEND.get_process_states(pks)
            return len(states) == len(pks) and all(s in TERMINAL for s, _ in states.values())

        try:
            wait_until(settled, args.max_wait, "every chain to be terminal", every=0.2)
            finished = True
        except TimeoutError as exc:
            log(str(exc))
        RECORD["wall_s"] = round(time.monotonic() - t0, 3)
        with contextlib.suppress(TimeoutError):  # the watcher's last looks, the last registration
            wait_until(lambda: not chaos.watcher.pending, 10, "the last takeovers", every=0.1)
        chaos.note_registrations()
    finally:
        chaos.watcher.stop_flag.set()
        chaos.stop()
    RECORD["all_chains_terminal"] = finished
    busy = [k for k in chaos.kills if k["held"]]
    takeovers = [job["takeover_s"] for job in chaos.watcher.done]
    held_kinds: Counter[str] = Counter()
    for kill in chaos.kills:
        held_kinds.update(kill["held_kinds"])
    RECORD.update(
        kills=len(chaos.kills),
        busy_kills=len(busy),
        held_at_kills=sum(k["held"] for k in chaos.kills),
        held_kinds=dict(held_kinds.most_common()),
        supervisor_kills=chaos.supervisor_kills,
        takeovers_timed=len(takeovers),
        takeovers_never=len(chaos.watcher.pending),
        takeover_s_median=stats(takeovers)["median"],
        takeover_s_max=stats(takeovers)["max"],
        takeover_s=[round(t, 3) for t in takeovers],
        replaced_s_median=stats([k["replaced_s"] for k in chaos.kills if "replaced_s" in k])["median"],
        replaced_s_max=stats([k["replaced_s"] for k in chaos.kills if "replaced_s" in k])["max"],
        registered_s_median=stats([k["registered_s"] for k in chaos.kills if "registered_s" in k])["median"],
        registered_s_max=stats([k["registered_s"] for k in chaos.kills if "registered_s" in k])["max"],
    )
    check(chaos)
    left = daemon_pids_of_this_home()
    RECORD["daemon_processes_of_this_home_at_exit"] = left
    r = RECORD
    rows = [
        ("chains ok / failed", f"{r['chains_ok']} / {r['chains_failed']} of {r['chains']}"),
        ("processes not terminal", f"{r['processes_not_terminal']} of {r['processes']}"),
        ("duplicate (caller, call_key)", r["duplicate_call_keys"]),
        ("chains with wrong children / result", f"{r['chains_wrong_children']} / {r['chains_wrong_result']}"),
        ("twins that differ", f"{r['twins_differ']} of {r['twins_compared']}"),
        ("wall time (first submit to all terminal)", f"{r['wall_s']} s"),
        (
            "worker kills (busy) / supervisor kills",
            f"{r['kills']} ({r['busy_kills']}) / {len(chaos.supervisor_kills)}",
        ),
        (
            "takeover after a kill, median / max",
            f"{r['takeover_s_median']} / {r['takeover_s_max']} s "
            f"({r['takeovers_timed']} timed, {r['takeovers_never']} never)",
        ),
        (
            "kill to the new worker started / registered, median (max)",
            f"{r['replaced_s_median']} ({r['replaced_s_max']}) / {r['registered_s_median']} "
            f"({r['registered_s_max']}) s",
        ),
    ]
    print("\n".join(f"| {name} | {value} |" for name, value in rows), file=sys.stderr, flush=True)
    _common.emit(NAME, RECORD)
    wrong = (
        RECORD["chains_failed"]
        + RECORD["processes_not_terminal"]
        + RECORD["duplicate_call_keys"]
        + RECORD["chains_wrong_children"]
        + RECORD["chains_wrong_result"]
        + RECORD["twins_differ"]
        + len(left)
    )
    return 1 if wrong else 0


sys.exit(main())
