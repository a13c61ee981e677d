"""(c) many concurrent CalcJobs in one process: N ``ShellJob``s running ``sleep 1`` at once (default N=1000).

Inside one ``asyncio.run``::

    await asyncio.gather(*(plait.arun_get_node(ShellJob, command=Str("sleep"), arguments=List(["1"]))
                           for _ in range(N)))

on the ``localhost`` computer (local transport, direct scheduler, its default options).  Reports the
wall time, jobs/s, the peak RSS of the process (``ru_maxrss``) and how many jobs finished ok (all must).
Also the longest stall of the event loop while the jobs ran, measured by a task that sleeps 5 ms in a
loop and records its largest overshoot (plait's rule: nothing blocks the loop for long), and beside it
the longest garbage-collector pause (``gc.callbacks``), which stalls the loop whatever code triggers it.
Every stall over ``--stall-ms`` (50 ms) is kept with its interval, and the share of it spent in
garbage collection (the collections that overlap it) is reported: for the longest stall, and over
all of them.  Targets (printed, never asserted): wall time <= 8 s for 1,000 jobs, no stall over 50 ms.
There is no aiida anchor for this row.

A warm-up of 1 job opens the profile first (not timed).

    python3 benchmarks/bench_concurrent_jobs.py [-n 1000] [--quick] [--wait-load 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

import _common

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("-n", type=int, default=1000, help="number of concurrent jobs")
parser.add_argument("--seconds", default="1", help="argument of sleep")
parser.add_argument("--warmup", type=int, default=1)
parser.add_argument("--stall-ms", type=float, default=50.0, help="report every stall over this (ms)")
parser.add_argument("--quick", action="store_true", help="a small smoke run (-n 50)")
_common.add_common_args(parser)
args = parser.parse_args()
if args.quick and args.n == 1000:
    args.n = 50
name = f"c_concurrent_jobs{args.tag}{'_quick' if args.quick else ''}"
_common.fresh_home(name, args)

import plait  # noqa: E402
from plait.calculations.shell import ShellJob  # noqa: E402
from plait.orm import Computer, List, Str  # noqa: E402

TICK = 0.005
GC = {"longest_s": 0.0, "longest_generation": None, "gen2_collections": 0, "_start": 0.0, "total_s": 0.0}
GC_PAUSES: list[tuple[float, float, int]] = []  # (start, end, generation) on time.monotonic, the loop's clock
STALLS: list[tuple[float, float]] = []  # (when the 5 ms timer was due, when it fired), over --stall-ms


def gc_watch(phase: str, info: dict) -> None:
    now = time.monotonic()
    if phase == "start":
        GC["_start"] = now
        return
    pause = now - GC["_start"]
    GC["total_s"] += pause
    GC_PAUSES.append((GC["_start"], now, info["generation"]))
    if info["generation"] == 2:
        GC["gen2_collections"] += 1
    if pause > GC["longest_s"]:
        GC["longest_s"], GC["longest_generation"] = pause, info["generation"]


def gc_in(start: float, end: float) -> float:
    """Seconds of garbage collection inside [start, end]."""
    return sum(max(0.0, min(end, e) - max(start, s)) for s, e, _ in GC_PAUSES if e > start and s < end)


async def watch_loop(stop: asyncio.Event, worst: list[float]) -> None:
    loop = asyncio.get_running_loop()
    threshold = args.stall_ms / 1000
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(TICK)
        now = loop.time()
        late = now - t - TICK
        if late > threshold:
            STALLS.append((t + TICK, now))
        worst[0] = max(worst[0], late)


async def launch(n: int) -> tuple[list, float, float]:
    stop, worst = asyncio.Event(), [0.0]
    watcher = asyncio.create_task(watch_loop(stop, worst))
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(
            plait.arun_get_node(ShellJob, command=Str("sleep"), arguments=List([args.seconds]))
            for _ in range(n)
        ),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - t0
    stop.set()
    await watcher
    return results, elapsed, worst[0]


if args.warmup:
    asyncio.run(launch(args.warmup))
rss_before = _common.peak_rss_kib()

gc.callbacks.append(gc_watch)
results, elapsed, stall = asyncio.run(launch(args.n))
gc.callbacks.remove(gc_watch)
STALLS.sort(key=lambda s: s[1] - s[0], reverse=True)
stall_gc = [gc_in(s, e) for s, e in STALLS]
stall_total = sum(e - s for s, e in STALLS)

errors = [r for r in results if isinstance(r, BaseException)]
ok = sum(1 for r in results if not isinstance(r, BaseException) and r[1].is_finished_ok)
not_ok = [r[1] for r in results if not isinstance(r, BaseException) and not r[1].is_finished_ok]
options = Computer.get("localhost").options
record = {
    "n": args.n,
    "command": f"sleep {args.seconds}",
    "finished_ok": ok,
    "all_finished_ok": ok == args.n,
    "errors": [repr(e)[:300] for e in errors[:3]],
    "not_ok": [(n.pk, str(n.process_state), n.exit_status) for n in not_ok[:3]],
    "minimum_poll_interval": options["minimum_poll_interval"],
    "safe_interval": options["safe_interval"],
    "max_concurrent_operations": options["max_concurrent_operations"],
    "elapsed_s": round(elapsed, 4),
    "jobs_per_s": round(args.n / elapsed, 2),
    "max_loop_stall_s": round(stall, 4),
    "longest_gc_pause_s": round(GC["longest_s"], 4),
    "longest_gc_pause_generation": GC["longest_generation"],
    "gen2_collections": GC["gen2_collections"],
    "gc_total_s": round(GC["total_s"], 4),
    "stall_threshold_ms": args.stall_ms,
    "stalls_over_threshold": len(STALLS),
    "stalls_over_threshold_total_s": round(stall_total, 4),
    "longest_stall_gc_s": round(stall_gc[0], 4) if STALLS else None,
    "longest_stall_gc_share": round(stall_gc[0] / (STALLS[0][1] - STALLS[0][0]), 3) if STALLS else None,
    "stalls_gc_share": round(sum(stall_gc) / stall_total, 3) if STALLS else None,
    "top_stalls_ms_gc_ms": [
        [round(1000 * (e - s), 1), round(1000 * g, 1)]
        for (s, e), g in list(zip(STALLS, stall_gc, strict=True))[:10]
    ],
    "targets": "wall <= 8 s (1,000 jobs), no loop stall over 50 ms",
    "peak_rss_kib_before": rss_before,
}
_common.emit(name, record)
assert ok == args.n, f"{ok}/{args.n} finished ok; errors {record['errors']}; not ok {record['not_ok']}"
