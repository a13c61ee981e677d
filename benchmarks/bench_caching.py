"""Caching: a cache hit of a calculation job, and the hash lookup among many nodes (issue 12).

First N_CALCS calcfunction records are built in bulk, as rows (``bench_queries.build_plait_bulk``,
about 3 nodes each, every one with a content hash: ``--nodes 1000000`` gives a million nodes; where
that builder is missing, ``build_plait`` through the ORM), so both figures are taken in a large
database.  Then on localhost (local transport, direct
scheduler, ``/bin/bash``):

* ``real_run_s``: one ``ArithmeticAddCalculation`` that really runs (median of ``--reps`` runs with
  new inputs each time);
* ``cache_hit_s``: the same launch under ``plait.enable_caching()``: looked up before anything is
  stored, then inputs, node, cloned outputs and the finished state in one transaction, without a
  job, an event loop or a runner (``plait.engine.caching.launch_from_cache``; median of ``--reps``;
  ``cache_hit_cpu_s`` is the CPU time of the same calls, which a loaded machine inflates less);
* ``cache_hit_in_loop_s``: the same hit with ``await plait.arun_get_node`` from one running loop
  (an async service's way; the transaction runs in the runner's database thread);
* ``lookup_s``: ``plait.engine.caching.find_cache_source`` alone, the one indexed query (median).

Targets: cache hit <= 10 ms, lookup <= 5 ms among 1,000,000 nodes.

    python3 benchmarks/bench_caching.py [--nodes 1000000] [--reps 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import _common

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--nodes", type=int, default=1_000_000, help="about this many nodes are built first")
parser.add_argument("--reps", type=int, default=20)
_common.add_common_args(parser)
args = parser.parse_args()
name = f"caching{args.tag}"
_common.fresh_home(name, args)

try:
    from bench_queries import build_plait_bulk as build_plait
except ImportError:  # an older bench_queries: the same graph through the ORM (slower to build)
    from bench_queries import build_plait

import plait  # noqa: E402
from plait import run_get_node  # noqa: E402
from plait.calculations.arithmetic import ArithmeticAddCalculation  # noqa: E402
from plait.engine.caching import find_cache_source  # noqa: E402
from plait.orm import Computer, InstalledCode, Int  # noqa: E402
from plait.storage import get_backend  # noqa: E402

t0 = time.perf_counter()
build_plait(max(1, args.nodes // 3))
build_s = time.perf_counter() - t0
total_nodes = get_backend().count_nodes()

code = InstalledCode(
    computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
).store()


CPU: list[float] = []


def launch(i: int, cached: bool) -> tuple[float, object]:
    t, c = time.perf_counter(), time.process_time()
    if cached:
        with plait.enable_caching():
            outputs, node = run_get_node(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1))
    else:
        outputs, node = run_get_node(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1))
    elapsed = time.perf_counter() - t
    if cached:
        CPU.append(time.process_time() - c)
    assert node.is_finished_ok and outputs["sum"].value == i + 1
    assert (node.cached_from is not None) == cached, (node.pk, cached)
    return elapsed, node


launch(10**6, cached=False)  # warm-up: imports, the transport pool
real = [launch(i, cached=False)[0] for i in range(args.reps)]
hits = []
last = None
for i in range(args.reps):
    elapsed, last = launch(i, cached=True)  # the real run of i serves
    hits.append(elapsed)


async def hits_in_one_loop() -> list[float]:
    times = []
    for i in range(args.reps):  # the real runs of i serve again (new inputs, same hash)
        t = time.perf_counter()
        with plait.enable_caching():
            node = await plait.arun_get_node(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1))
        times.append(time.perf_counter() - t)
        assert node[1].cached_from is not None
    return times


in_loop = asyncio.run(hits_in_one_loop())
lookups = []
for _ in range(args.reps):
    t = time.perf_counter()
    found = find_cache_source(last)  # type: ignore[arg-type]
    lookups.append(time.perf_counter() - t)
    assert found is not None

_common.emit(
    name,
    {
        "nodes": total_nodes,
        "build_s": round(build_s, 2),
        "reps": args.reps,
        "real_run_s": round(statistics.median(real), 4),
        "cache_hit_s": round(statistics.median(hits), 4),
        "cache_hit_max_s": round(max(hits), 4),
        "cache_hit_cpu_s": round(statistics.median(CPU), 4),
        "cache_hit_in_loop_s": round(statistics.median(in_loop), 4),
        "lookup_s": round(statistics.median(lookups), 5),
        "lookup_max_s": round(max(lookups), 5),
    },
)
