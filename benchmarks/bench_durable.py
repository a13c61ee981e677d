"""Durable async workflows (issue 13): replay after a crash, overhead against a work chain, sleepers.

Rows (``--row replay|overhead|sleepers|all``), each printing one ``RESULT`` line:

* ``replay``: a ``@plait.workflow`` gathers ``-n`` calcfunction children in an interpreter that then
  dies (``os._exit``, as after ``kill -9``: nothing is cleaned up); ``plait.resume`` replays it.
  ``replay_s``: from the resume to the first launch after the recorded ones (target <= 1 s);
  ``children_run_again`` (target 0).
* ``overhead``: the same fan-out of ``-n`` calcfunctions as a work chain (``self.submit`` and
  ``ToContext``) and as a workflow (``asyncio.gather`` of ``plait.call``), in-process, best of 3;
  ``ratio`` = workflow / work chain (target <= 1.2).
* ``sleepers``: ``--sleepers`` workflows each ``await plait.sleep(--nap)`` on one runner (one loop);
  peak RSS, and how late each woke after its committed ``wake_at`` (target: within 1 s).

All rows run in-process on a fresh SQLite scratch profile (see ``_common.py``); the daemon's own
parking of sleepers is measured by ``bench_daemon.py parked``.
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
from plait.orm import Float, Int

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


@plait.workflow
async def sleeper(nap: Float) -> dict[str, Float]:
    await plait.sleep(nap.value)
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


def row_sleepers(count: int, nap: float) -> dict:
    from plait.engine.runner import Runner
    from plait.storage import get_backend

    async def main() -> list:
        runner = Runner.for_loop()
        return await asyncio.gather(
            *(
                runner.arun_get_node(sleeper.process_class, {"nap": Float(nap)}, {}, parent=None)
                for _ in range(count)
            )
        )

    t0 = time.perf_counter()
    results = asyncio.run(main())
    wall = time.perf_counter() - t0
    late = []
    for outputs, node in results:
        assert node.is_finished_ok
        late.append(outputs["woke"].value - get_backend().get_process(node.pk)["wake_at"])
    late.sort()
    return {
        "row": "sleepers",
        "n": count,
        "nap_s": nap,
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(_common.peak_rss_kib() / 1024, 1),
        "late_min_s": round(late[0], 3),
        "late_median_s": round(late[len(late) // 2], 3),
        "late_max_s": round(late[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", choices=("replay", "overhead", "sleepers", "all"), default="all")
    parser.add_argument("-n", type=int, default=1000, help="children of the fan-out (default 1,000)")
    parser.add_argument("--sleepers", type=int, default=10_000, help="sleeping workflows (default 10,000)")
    parser.add_argument("--nap", type=float, default=30.0, help="how long each sleeps, s (default 30)")
    _common.add_common_args(parser)
    args = parser.parse_args()
    if args.row == "all":  # each row in its own interpreter, on its own scratch profile
        for row in ("replay", "overhead", "sleepers"):
            argv = [a for a in sys.argv[1:] if not a.startswith("--row")]
            subprocess.run([sys.executable, __file__, "--row", row, *argv], check=True, timeout=7200)
        return
    _common.fresh_home(f"durable-{args.row}", args)
    import bench_durable as b  # the importable module (a resumed workflow is loaded from it)

    if args.row == "replay":
        record = b.row_replay(args.n)
    elif args.row == "overhead":
        record = b.row_overhead(args.n)
    else:
        record = b.row_sleepers(args.sleepers, args.nap)
    _common.emit("bench_durable", record)


if __name__ == "__main__":
    main()
