"""Chaos: hundreds of work chains through a daemon whose workers are killed with SIGKILL again and again.

The daemon (2 workers, a 2 s lease) runs :class:`wf_library.ChaosChain` work chains, submitted at a
steady pace, while the test kills a random live worker that holds processes with ``kill -9`` at
random intervals (and waits for the supervisor to replace it), and once kills the supervisor
itself (its workers then stop by themselves, and the test starts the daemon again).  Each chain
calls a calcfunction inline, submits a calcfunction, and every tenth runs an
``ArithmeticAddCalculation`` on ``localhost``.

Exactly once means, once everything is terminal: every chain finished ok with its expected result;
no process anywhere is left non-terminal; no two processes share a ``(caller, call_key)`` (no call
was launched twice); each chain called exactly its expected children; and the provenance of a
random sample of chains equals that of a crash-free twin run in-process with ``run_get_node``.

The kills must hit busy workers (the victim held processes when it died: read just before and just
after the kill), or the test proves nothing: that is asserted too.  Every assertion message says
how many kills happened and what the victims held.  ``PLAIT_CHAOS_SEED`` replays a run's choices.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import time
from collections import Counter
from typing import Any

import pytest

from engine.test_resume import shape
from plait import run_get_node, submit
from plait.orm import Computer, InstalledCode, Int, load_node
from plait.storage import get_backend

from .conftest import wait_for

pytestmark = pytest.mark.timeout(480)  # the bounded waits below add up to less

TERMINAL = ("finished", "excepted", "killed")
WORKERS = 2
LEASE_S = 2.0
N_CHAINS = 200  # at least this many chains; more while the kills are not done (at most MAX_CHAINS)
MAX_CHAINS = 400
#: worker kills; the supervisor is killed once, after SUPERVISOR_KILL_AFTER of them (the test keeps the
#: suite's time; benchmarks/bench_chaos.py is the long run: 100 kills, 1,000 chains)
N_KILLS = 16
SUPERVISOR_KILL_AFTER = 8
BURST = 40  # chains submitted at once before the first kill, then one every SUBMIT_EVERY_S
SUBMIT_EVERY_S = 0.3
#: the supervisor restarts a worker that lived >= 5 s after 0.2 s, a younger one after a back-off that
#: doubles with every death (2, 4, 8 ... 60 s); and a worker takes 1-4 s to start on a busy 2-core
#: machine: only workers older than this are killed, so that each has a few seconds of work in it
MIN_AGE_S = 7.0
KILL_JITTER_S = (0.1, 0.8)  # a random pause before each kill, once the previous victim was replaced
KILL_PHASE_S = 180.0  # the kills must be done within this (about 60 s here)
FINISH_WAIT_S = 90.0  # then everything must be terminal within this
SAMPLE = 20  # chains compared with a crash-free twin
#: ChaosChain's naps in the daemon: at an await, in the submitted calcfunction, in a step after its calls
NAPS = {"PLAIT_CHAOS_NAP": "1.5", "PLAIT_CHAOS_SLEEP": "0.3", "PLAIT_CHAOS_STEP": "0.6"}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"plait.daemon.worker" in handle.read()
    except OSError:
        return False


def _why(exception: str | None) -> str:
    """The line of a recorded traceback that names the error (``SomeError: message``), shortened."""
    lines = [line.strip() for line in (exception or "").strip().splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit|Interrupt|Warning)\b", line)]
    line = (named or lines or [""])[-1]
    return line if len(line) <= 300 else line[:300] + "..."


def normalised_shape(node: Any) -> str:
    """``shape()`` of the provenance, with the job's scratch folder (a fresh uuid per run) blanked."""
    return re.sub(r"'remote_path': '[^']*'", "'remote_path': '<job folder>'", repr(shape(node)))


class Chaos:
    """Submits chains at a steady pace and kills workers (and once the supervisor) at random."""

    def __init__(self, start_daemon: Any, code: InstalledCode, rng: random.Random) -> None:
        self.start_daemon = start_daemon
        self.code = code
        self.rng = rng
        self.backend = get_backend()
        self.handle = start_daemon(workers=WORKERS, lease=LEASE_S)
        self.seen_workers: set[int] = set()
        self.chains: dict[int, int] = {}  # pk -> seed
        self.kills: list[dict[str, Any]] = []  # one per worker kill
        self.supervisor_kill: dict[str, Any] | None = None
        self.held_kinds: Counter[str] = Counter()  # label/state of what the victims held
        self.t0 = time.monotonic()
        self.phases: dict[str, float] = {}  # seconds: kills, settle

    # -- what the daemon looks like ---------------------------------------------------------------
    def alive_workers(self) -> list[dict[str, Any]]:
        """The live workers of the current supervisor, as it reports them."""
        try:
            workers = [w for w in self.handle.client.status(timeout=10)["workers"] if w["alive"]]
        except Exception:  # the supervisor is busy or gone: none this round
            return []
        self.seen_workers.update(w["pid"] for w in workers if w["pid"])
        return workers

    def live_workers(self) -> list[dict[str, Any]]:
        """Live workers of the current supervisor that have registered in the database (with their id)."""
        workers = self.alive_workers()
        ids = {row["pid"]: row["id"] for row in self.backend.list_workers()}
        return [{**w, "worker_id": ids[w["pid"]]} for w in workers if w["pid"] in ids]

    def summary(self) -> str:
        hits = sum(1 for k in self.kills if k["held"])
        held = sum(len(k["held"]) for k in self.kills)
        sup = self.supervisor_kill
        return (
            f"{len(self.kills)} worker kill(s) with SIGKILL, {hits} of them of a worker holding processes "
            f"({held} held in all: {dict(self.held_kinds.most_common())}); supervisor killed: "
            + (f"once, after kill {sup['after_kill']} (it held {sup['held']})" if sup else "no")
            + f"; {len(self.chains)} chains submitted; {time.monotonic() - self.t0:.0f} s so far"
            + "".join(f", {name} {seconds:.0f} s" for name, seconds in self.phases.items())
            + f"; held per kill {[len(k['held']) for k in self.kills]}"
        )

    # -- the run ---------------------------------------------------------------------------------
    def submit_one(self) -> None:
        from wf_library import ChaosChain

        seed = len(self.chains)
        self.chains[submit(ChaosChain, seed=Int(seed), code=self.code).pk] = seed

    def run(self) -> None:
        for _ in range(BURST):
            self.submit_one()
        next_submit = time.monotonic()
        next_kill = time.monotonic() + self.rng.uniform(*KILL_JITTER_S) + 1.0
        replacing: int | None = None  # the pid of the last victim, until the supervisor replaced it
        replace_deadline = 0.0
        deadline = self.t0 + KILL_PHASE_S
        while len(self.kills) < N_KILLS:
            now = time.monotonic()
            assert now < deadline, f"the kills took longer than {KILL_PHASE_S:g} s: {self.summary()}"
            if now >= next_submit and len(self.chains) < MAX_CHAINS:
                self.submit_one()
                next_submit = now + SUBMIT_EVERY_S
            if replacing is not None:
                # replaced once the supervisor runs a new worker in its place (registered or not yet:
                # the next victim is one that has registered and lived long enough)
                live = self.alive_workers()
                if len(live) == WORKERS and replacing not in {w["pid"] for w in live}:
                    replacing = None
                    next_kill = time.monotonic() + self.rng.uniform(*KILL_JITTER_S)
                else:
                    assert now < replace_deadline, (
                        f"the supervisor did not replace worker {replacing} within 30 s "
                        f"(live: {[w['pid'] for w in live]}): {self.summary()}"
                    )
            elif now >= next_kill:
                if self.supervisor_kill is None and len(self.kills) >= SUPERVISOR_KILL_AFTER:
                    self.kill_supervisor()
                    next_kill = time.monotonic() + self.rng.uniform(*KILL_JITTER_S)
                    continue
                # a random one of the workers that are old enough and hold processes right now
                old = [w for w in self.live_workers() if time.time() - w["started"] >= MIN_AGE_S]
                busy = [w for w in old if self.backend.held_by(w["worker_id"])]
                if busy:
                    replacing = self.kill_worker(self.rng.choice(busy))
                    replace_deadline = time.monotonic() + 30.0
            time.sleep(0.05)
        while len(self.chains) < N_CHAINS:  # the kills were quicker than the pace: the rest at once
            self.submit_one()

    def kill_worker(self, worker: dict[str, Any]) -> int:
        pid, worker_id = worker["pid"], worker["worker_id"]
        before = self.backend.held_by(worker_id)
        os.kill(pid, signal.SIGKILL)
        after = self.backend.held_by(worker_id)  # a dead worker changes nothing: what it held as it died
        held = sorted({*before, *after})
        self.kills.append({"pid": pid, "t": round(time.monotonic() - self.t0, 2), "held": held})
        for row in self.backend.list_processes(pks=held):
            self.held_kinds[f"{row['process_label']}/{row['state']}"] += 1
        return pid

    def kill_supervisor(self) -> None:
        live = self.live_workers()
        workers = [w["pid"] for w in self.handle.client.status(timeout=30)["workers"] if w["pid"]]
        self.seen_workers.update(workers)
        held = sum(len(self.backend.held_by(w["worker_id"])) for w in live)
        os.kill(self.handle.pid, signal.SIGKILL)
        self.supervisor_kill = {"after_kill": len(self.kills), "held": held, "workers": workers}
        # its workers see that they were re-parented and stop by themselves (gracefully)
        wait_for(
            lambda: not any(_alive(pid) for pid in workers),
            30,
            f"the workers {workers} of the killed supervisor to stop by themselves ({self.summary()})",
            interval=0.1,
        )
        self.handle = self.start_daemon(workers=WORKERS, lease=LEASE_S)

    def cleanup(self) -> None:
        """Kill any worker of ours left running (a worker of a killed supervisor is nobody's child)."""
        for pid in self.seen_workers:
            if _alive(pid) and _is_worker(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def check(chaos: Chaos, rng: random.Random) -> list[str]:
    """Everything exactly once must guarantee, as a list of what is wrong (empty: all good)."""
    from wf_library import ChaosChain, chaos_expected, chaos_has_job

    backend = get_backend()
    problems: list[str] = []
    rows = {r["id"]: r for r in backend.list_processes(states=None)}
    chains = chaos.chains

    bad = {pk: rows[pk] for pk in chains if (rows[pk]["state"], rows[pk]["exit_status"]) != ("finished", 0)}
    if bad:
        details = [
            f"<{pk}> seed {chains[pk]}: {r['state']}, exit status {r['exit_status']}, "
            f"{r['exit_message'] or ''!r}, {_why(r['exception'])!r}"
            for pk, r in list(bad.items())[:5]
        ]
        states = Counter(f"{r['state']}/{r['exit_status']}" for r in bad.values())
        problems.append(
            f"{len(bad)} of {len(chains)} chains did not finish ok ({dict(states)}), e.g. {details}"
        )

    active = [r for r in rows.values() if r["state"] not in TERMINAL]
    if active:
        sample = [(r["id"], r["process_label"], r["state"], r["lease_owner"]) for r in active[:8]]
        by = Counter(f"{r['process_label']}/{r['state']}" for r in active)
        problems.append(f"{len(active)} processes are not terminal ({dict(by)}), e.g. {sample}")

    calls = Counter((r["caller_id"], r["call_key"]) for r in rows.values() if r["caller_id"] is not None)
    twice = {key: n for key, n in calls.items() if n > 1}
    if twice:
        labels = Counter(
            rows[pk]["process_label"] for pk in rows if (rows[pk]["caller_id"], rows[pk]["call_key"]) in twice
        )
        problems.append(
            f"{len(twice)} (caller, call_key) pairs are shared by several processes (launched twice): "
            f"{dict(labels)}, e.g. {list(twice.items())[:5]}"
        )

    wrong_children, wrong_results = [], []
    children: dict[int, list[dict[str, Any]]] = {}
    for row in rows.values():
        if row["caller_id"] in chains:
            children.setdefault(row["caller_id"], []).append(row)
    for pk, seed in chains.items():
        if pk in bad:  # a chain that did not finish did not call everything: reported above
            continue
        result, labels = chaos_expected(seed)
        got = [r["process_label"] for r in sorted(children.get(pk, []), key=lambda r: r["id"])]
        if got != labels:
            wrong_children.append((pk, seed, got))
            continue
        node = load_node(pk)
        if [c.process_label for c in node.called] != labels:
            wrong_children.append((pk, seed, "links:", [c.process_label for c in node.called]))
        elif node.outputs.result.value != result:
            wrong_results.append((pk, seed, node.outputs.result.value, result))
    if wrong_children:
        problems.append(
            f"{len(wrong_children)} chains did not call exactly their expected children "
            f"(chaos_first, chaos_square, [ArithmeticAddCalculation], chaos_combine), "
            f"e.g. {wrong_children[:5]}"
        )
    if wrong_results:
        problems.append(f"{len(wrong_results)} chains have a wrong result, e.g. {wrong_results[:5]}")

    # the provenance of a sample, with and without the crashes: a few job chains, the rest any
    with_job = [pk for pk, seed in chains.items() if chaos_has_job(seed)]
    others = [pk for pk, seed in chains.items() if not chaos_has_job(seed)]
    sample = rng.sample(with_job, min(4, len(with_job)))
    sample += rng.sample(others, min(SAMPLE - len(sample), len(others)))
    differ = []
    for pk in sorted(sample):
        _, twin = run_get_node(ChaosChain, seed=Int(chains[pk]), code=chaos.code)
        if normalised_shape(load_node(pk)) != normalised_shape(twin):
            differ.append((pk, twin))
    if differ:
        pk, twin = differ[0]
        mine, theirs = shape(load_node(pk)), shape(twin)
        if [c[0] for c in mine[5]] != [c[0] for c in theirs[5]]:
            detail = f"<{pk}> called {[c[0] for c in mine[5]]}, its twin {[c[0] for c in theirs[5]]}"
        else:
            detail = f"<{pk}> {normalised_shape(load_node(pk))} != twin {normalised_shape(twin)}"
        problems.append(
            f"{len(differ)} of {len(sample)} sampled chains differ from their crash-free twin "
            f"{[pk for pk, _ in differ]}: {detail}"
        )
    return problems


def test_chains_run_exactly_once_while_workers_and_the_supervisor_are_killed(
    any_profile, daemon, monkeypatch
):
    seed = int(os.environ.get("PLAIT_CHAOS_SEED") or time.time())
    rng = random.Random(seed)
    for name, value in NAPS.items():
        monkeypatch.setenv(name, value)  # the daemon's workers inherit them
    code = InstalledCode(
        computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
    ).store()
    chaos = Chaos(daemon, code, rng)
    try:
        chaos.run()
        chaos.phases["kills"] = time.monotonic() - chaos.t0
        pks = list(chaos.chains)
        backend = get_backend()

        def settled() -> bool:
            states = backend.get_process_states(pks)
            return len(states) == len(pks) and all(s in TERMINAL for s, _ in states.values())

        with contextlib.suppress(AssertionError):  # what is left is reported by check() below
            wait_for(settled, FINISH_WAIT_S, "every chain to be terminal", interval=0.5)
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: not backend.list_processes(states=["created", "running", "waiting"]),
                15,
                "every process to be terminal",
                interval=0.5,
            )
        chaos.phases["then settling"] = time.monotonic() - chaos.t0 - chaos.phases["kills"]
        chaos.handle.stop()  # the twins run in this interpreter, with the daemon out of the way
    finally:
        chaos.cleanup()
    summary = f"{chaos.summary()}; random seed {seed} (PLAIT_CHAOS_SEED)"
    assert chaos.supervisor_kill is not None, summary
    kills, hits = len(chaos.kills), sum(1 for k in chaos.kills if k["held"])
    assert kills >= N_KILLS, summary
    assert hits >= 2 * N_KILLS // 3, f"too few kills hit a worker holding processes: {summary}"

    for name in NAPS:
        monkeypatch.delenv(name)  # the twins need no naps: timing changes no provenance
    problems = check(chaos, rng)
    print(summary, *problems, sep="\n- ")
    assert not problems, f"{summary}:\n- " + "\n- ".join(problems)
