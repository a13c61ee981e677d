"""Durable async workflows (issue 13): replay after a crash, overhead against a work chain, sleepers.

Rows (``--row replay|overhead|sleepers|daemon-sleepers|all``), each printing one ``RESULT`` line:

* ``replay``: a ``@plait.workflow`` gathers ``-n`` calcfunction children in an interpreter that then
  dies (``os._exit``, as after ``kill -9``: nothing is cleaned up); ``plait.resume`` replays it.
  ``replay_s``: from the resume to the first launch after the recorded ones (target <= 1 s);
  ``children_run_again`` (target 0).
* ``overhead``: the same fan-out of ``-n`` calcfunctions as a work chain (``self.submit`` and
  ``ToContext``) and as a workflow (``asyncio.gather`` of ``plait.call``), in-process, best of 3;
  ``ratio`` = workflow / work chain (target <= 1.2).
* ``sleepers``: ``--sleepers`` workflows (default 10,000) each ``await plait.sleep(--nap)`` on one
  runner (one loop); ``all_asleep_at_once`` (false: the nap was shorter than launching them all) and
  ``last_asleep_after_s``, peak RSS, and how late each woke after its committed ``wake_at``:
  ``late_*`` when its ``plait.sleep`` returned (target: within 1 s), ``child_late_*`` when the
  calcfunction it launched next ran.
* ``daemon-sleepers``: the same sleepers submitted, then a daemon of one worker started
  (``--slots``): each parks on its timer holding no slot, is claimed at its ``wake_at`` and replayed;
  the worker's peak RSS, ``peak_waiting`` (how many were parked at once), ``late_*`` (when the
  replay that woke stored its next launch, the child's ``ctime``) and ``child_late_*``.

``--spread S`` spreads the sleepers' wake times over S seconds: without it they wake as fast as they
fell asleep, a burst whose lateness is the backlog of the work each does after waking.

Every row runs on a fresh SQLite scratch profile (see ``_common.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import _common

import plait
from plait.engine.durable import current_workflow
from plait.orm import Float, Int, LinkType

HERE = Path(__file__).resolve().parent
#: the crash script's switch: die right after the fan-out finished
CRASH = "PLAIT_BENCH_DURABLE_CRASH"
#: set in the resuming interpreter: the time the first new launch was made
_FIRST_NEW: list[float] = []


@plait.calcfunction
def square(x: Int) -> Int:
    return Int(x.value * x.value)


@plait.calcfunction
def total(**values: Int) -> Int:
    return Int(sum(v.value for v in values.values()))


@plait.calcfunction
def clock(after: Float) -> Float:
    return Float(time.time())


@plait.workflow
async def fan_out(n: Int) -> dict[str, Int]:
    squares = await asyncio.gather(*(plait.call(square, x=Int(i)) for i in range(n.value)))
    if os.environ.get(CRASH):
        os._exit(9)  # dies as under kill -9: no clean-up, no final commit
    _FIRST_NEW.append(time.perf_counter())
    return {"sum": await plait.call(total, **{f"v{i}": q for i, q in enumerate(squares)})}


class FanOutChain(plait.WorkChain):
    @classmethod
    def define(cls, spec):  # type: ignore[no-untyped-def]
        super().define(spec)
        spec.input("n", valid_type=Int)
        spec.outline(cls.launch, cls.collect)

    def launch(self):  # type: ignore[no-untyped-def]
        return plait.ToContext(**{f"s{i}": self.submit(square, x=Int(i)) for i in range(self.inputs.n.value)})

    def collect(self):  # type: ignore[no-untyped-def]
        assert len([k for k in self.ctx if k.startswith("s")]) == self.inputs.n.value


#: ``{workflow pk: time.time()}`` when its ``plait.sleep`` returned (this interpreter only)
_WOKE: dict[int, float] = {}


@plait.workflow
async def sleeper(nap: Float) -> dict[str, Float]:
    await plait.sleep(nap.value)
    flow = current_workflow()
    assert flow is not None and flow.pk is not None
    _WOKE[flow.pk] = time.time()  # not an input of a launch: a replay would see another value
    return {"woke": await plait.call(clock, after=nap)}


def _count(label: str) -> int:
    from plait.storage import get_backend

    return sum(1 for r in get_backend().list_processes() if r["process_label"] == label)


def row_replay(n: int) -> dict:
    script = f"import plait, bench_durable as b; from plait.orm import Int; plait.run(b.fan_out, n=Int({n}))"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **{CRASH: "1"}
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, timeout=3600, capture_output=True, text=True
    )
    first_run_s = time.perf_counter() - t0
    assert proc.returncode == 9, proc.stderr[-2000:]
    from plait.storage import get_backend

    (row,) = [r for r in get_backend().list_processes() if r["process_label"] == "fan_out"]
    before = _count("square")
    assert before == n
    t0 = time.perf_counter()
    outputs, node = plait.resume(row["id"])
    resume_s = time.perf_counter() - t0
    assert node.is_finished_ok and outputs["sum"].value == sum(i * i for i in range(n))
    return {
        "row": "replay",
        "n": n,
        "first_run_s": round(first_run_s, 3),
        "replay_s": round(_FIRST_NEW[-1] - t0, 4),
        "resume_total_s": round(resume_s, 4),
        "children_run_again": _count("square") - before,
    }


def row_overhead(n: int) -> dict:
    def best(process) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            _, node = plait.run_get_node(process, n=Int(n))
            times.append(time.perf_counter() - t0)
            assert node.is_finished_ok
        return min(times)

    plait.run(fan_out, n=Int(2))  # warm-up of both paths
    plait.run(FanOutChain, n=Int(2))
    chain_s, flow_s = best(FanOutChain), best(fan_out)
    return {
        "row": "overhead",
        "n": n,
        "workchain_s": round(chain_s, 4),
        "workflow_s": round(flow_s, 4),
        "ratio": round(flow_s / chain_s, 3),
    }


def row_sleepers(count: int, nap: float, spread: float = 0.0) -> dict:
    from plait.engine.runner import Runner
    from plait.storage import get_backend

    async def main() -> list:
        runner = Runner.for_loop()
        launches = [
            runner.arun_get_node(
                sleeper.process_class, {"nap": Float(nap + spread * i / count)}, {}, parent=None
            )
            for i in range(count)
        ]
        return await asyncio.gather(*launches)

    t0, started = time.perf_counter(), time.time()
    results = asyncio.run(main())
    wall = time.perf_counter() - t0
    late, child_late, wakes = [], [], []
    for outputs, node in results:
        assert node.is_finished_ok
        wake_at = get_backend().get_process(node.pk)["wake_at"]
        wakes.append(wake_at)
        late.append(_WOKE[node.pk] - wake_at)
        child_late.append(outputs["woke"].value - wake_at)
    late.sort()
    child_late.sort()
    return {
        "row": "sleepers",
        "n": count,
        "nap_s": nap,
        "spread_s": spread,
        "wall_s": round(wall, 2),
        # the last one fell asleep (committed its wake time) before the first one woke?
        "all_asleep_at_once": max(wakes) - nap - spread < min(_WOKE.values()),
        "last_asleep_after_s": round(max(wakes) - nap - spread - started, 2),
        "peak_rss_mib": round(_common.peak_rss_kib() / 1024, 1),
        "late_min_s": round(late[0], 3),
        "late_median_s": round(late[len(late) // 2], 3),
        "late_max_s": round(late[-1], 3),
        "child_late_median_s": round(child_late[len(child_late) // 2], 3),
        "child_late_max_s": round(child_late[-1], 3),
    }


def row_daemon_sleepers(count: int, nap: float, slots: int, spread: float = 0.0) -> dict:
    """``count`` sleepers submitted, then a daemon of one worker started: each wakes from its parked
    timer (claimed at its ``wake_at``), is replayed and launches a calcfunction that notes the time."""
    from plait.daemon import client
    from plait.storage import get_backend

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(HERE), os.environ.get("PYTHONPATH", "")] if p)
    pks = [plait.submit(sleeper, nap=Float(nap + spread * i / count)).pk for i in range(count)]
    t0, started = time.perf_counter(), time.time()
    status = client.start(workers=1, worker_slots=slots)
    (worker,) = [w["pid"] for w in status["workers"]]
    peak_asleep = 0
    try:
        while True:
            states = get_backend().count_processes()
            peak_asleep = max(peak_asleep, states.get("waiting", 0))
            if sum(states.get(k, 0) for k in ("finished", "excepted", "killed")) >= 2 * count:
                break  # each sleeper and its clock
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        worker_peak_kib = _proc_status_kib(worker, "VmHWM")
    finally:
        client.stop(timeout=120)
    late, child_late, wakes = [], [], []
    for pk in pks:
        node = plait.load_node(pk)
        assert node.is_finished_ok, pk
        wake_at = get_backend().get_process(pk)["wake_at"]
        wakes.append(wake_at)
        (launched,) = [child for _, _, child in node.get_outgoing((LinkType.CALL_CALC,))]
        late.append(launched.ctime.timestamp() - wake_at)  # stored by the replay that woke
        child_late.append(node.outputs.woke.value - wake_at)
    late.sort()
    child_late.sort()
    return {
        "row": "daemon-sleepers",
        "n": count,
        "nap_s": nap,
        "spread_s": spread,
        "slots": slots,
        "wall_s": round(wall, 2),
        "peak_waiting": peak_asleep,
        "all_asleep_at_once": peak_asleep >= count,
        "last_asleep_after_s": round(max(wakes) - nap - spread - started, 2),
        "worker_peak_rss_mib": round(worker_peak_kib / 1024, 1) if worker_peak_kib else None,
        "late_min_s": round(late[0], 3),
        "late_median_s": round(late[len(late) // 2], 3),
        "late_max_s": round(late[-1], 3),
        "child_late_min_s": round(child_late[0], 3),
        "child_late_median_s": round(child_late[len(child_late) // 2], 3),
        "child_late_max_s": round(child_late[-1], 3),
    }


def _proc_status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--row", choices=("replay", "overhead", "sleepers", "daemon-sleepers", "all"), default="all"
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="the i-th sleeper sleeps --nap + S*i/n: wake times spread over S seconds (default 0: all "
        "wake as fast as they fell asleep)",
    )
    parser.add_argument("--slots", type=int, default=200, help="worker slots (daemon-sleepers)")
    parser.add_argument("-n", type=int, default=1000, help="children of the fan-out (default 1,000)")
    parser.add_argument("--sleepers", type=int, default=10_000, help="sleeping workflows (default 10,000)")
    parser.add_argument(
        "--nap",
        type=float,
        default=120.0,
        help="how long each sleeps, s (default 120: longer than launching them)",
    )
    _common.add_common_args(parser)
    args = parser.parse_args()
    if args.row == "all":  # each row in its own interpreter, on its own scratch profile
        for row in ("replay", "overhead", "sleepers", "daemon-sleepers"):
            argv = [a for a in sys.argv[1:] if not a.startswith("--row")]
            subprocess.run([sys.executable, __file__, "--row", row, *argv], check=True, timeout=7200)
        return
    _common.fresh_home(f"durable-{args.row}", args)
    import bench_durable as b  # the importable module (a resumed workflow is loaded from it)

    if args.row == "replay":
        record = b.row_replay(args.n)
    elif args.row == "overhead":
        record = b.row_overhead(args.n)
    elif args.row == "sleepers":
        record = b.row_sleepers(args.sleepers, args.nap, args.spread)
    else:
        record = b.row_daemon_sleepers(args.sleepers, args.nap, args.slots, args.spread)
    _common.emit("bench_durable", record)


if __name__ == "__main__":
    main()
