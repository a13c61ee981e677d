"""Transfer speed of the SSH transports over loopback, and how long they stall the event loop.

Starts its own OpenSSH server on 127.0.0.1 (the same helper the tests use,
:class:`plait.transports.testing.LoopbackSshd`), then, for ``ssh``
(asyncssh) and ``ssh-blocking`` (paramiko behind ``as_async``), puts and
gets many small files with 1, 8 and 32 concurrent requesters sharing one
pooled connection, and one large file.  For every run it reports files/s,
MiB/s and the longest stall of the event loop, measured by a task that
sleeps 1 ms in a loop and records its largest overshoot.  The budget for a
stall is 20 ms: the transports must leave the loop free for the engine.

The longest garbage-collector pause of each run is reported beside it: a
full collection walks every object of the process (with asyncssh and
paramiko loaded, ~20 ms on a small machine), whatever code triggered it.  A
long-running engine should call :func:`gc.freeze` once it has started, as
this script does after its set-up (``--no-gc-freeze`` shows the difference).

Usage (from the repository root)::

    python3 benchmarks/transports.py
    python3 benchmarks/transports.py --files 100 --large-mib 50 --requesters 1 8

Figures only: nothing here is asserted by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import hashlib
import importlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from plait.transports import BlockingTransport, Transport, TransportPool
from plait.transports.ssh import SshTransport
from plait.transports.ssh_blocking import BlockingSshTransport
from plait.transports.testing.sshd import LoopbackSshd, sshd_missing_reason

MiB = 1024 * 1024
STALL_BUDGET = 0.020


@dataclass
class Row:
    plugin: str
    workload: str
    requesters: int
    seconds: float
    files: int
    size: int
    stall: float
    gc_pause: float

    def cells(self) -> list[str]:
        return [
            self.plugin,
            self.workload,
            str(self.requesters),
            f"{self.files / self.seconds:,.0f}",
            f"{self.size / MiB / self.seconds:,.1f}",
            f"{self.stall * 1000:.1f}",
            f"{self.gc_pause * 1000:.1f}",
            "ok" if self.stall < STALL_BUDGET else "OVER",
        ]


class StallMonitor:
    """Sleeps 1 ms in a loop on the event loop and keeps the largest overshoot (and GC pause)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.gc_worst = 0.0
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_worst = max(self.gc_worst, time.perf_counter() - self._gc_started)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, loop.time() - before - 0.001)

    async def __aenter__(self) -> StallMonitor:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        gc.callbacks.remove(self._on_gc)


def factory_for(plugin: str, server: LoopbackSshd) -> Callable[[], Transport | BlockingTransport]:
    options = server.transport_options()
    if plugin == "ssh":
        return lambda: SshTransport(server.host, **options)
    return lambda: BlockingSshTransport(server.host, **options)


async def timed(action: Callable[[], Awaitable[None]]) -> tuple[float, float, float]:
    """Run ``action`` under a stall monitor; (seconds, longest stall, longest GC pause)."""
    async with StallMonitor() as monitor:
        started = time.perf_counter()
        await action()
        elapsed = time.perf_counter() - started
    return elapsed, monitor.worst, monitor.gc_worst


async def many_files(
    pool: TransportPool,
    key: tuple[str, str, str],
    factory: Callable[[], Transport | BlockingTransport],
    requesters: int,
    jobs: list[tuple[str, str]],
    direction: str,
) -> None:
    """``requesters`` tasks, each with its own pool request, share the list of (source, target) jobs."""
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def requester() -> None:
        async with pool.request(key, factory, max_concurrent_operations=max(requesters, 8)) as transport:
            while not queue.empty():
                source, target = queue.get_nowait()
                if direction == "put":
                    await transport.put(source, target)
                else:
                    await transport.get(source, target)

    await asyncio.gather(*(requester() for _ in range(requesters)))


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(8 * MiB):
            sha.update(chunk)
    return sha.hexdigest()


async def bench_plugin(
    plugin: str, server: LoopbackSshd, scratch: Path, args: argparse.Namespace
) -> list[Row]:
    rows: list[Row] = []
    pool = TransportPool(idle_timeout=600)
    key = (plugin, server.host, server.username)
    factory = factory_for(plugin, server)
    small = sorted((scratch / "small").iterdir())

    async def measure(
        workload: str, requesters: int, jobs: list[tuple[str, str]], direction: str, size: int
    ) -> None:
        run = functools.partial(many_files, pool, key, factory, requesters, jobs, direction)
        seconds, stall, pause = await timed(run)
        rows.append(Row(plugin, workload, requesters, seconds, len(jobs), size, stall, pause))

    try:
        async with pool.request(key, factory) as transport:  # open once, outside the timings
            await transport.whoami()
        for requesters in args.requesters:
            remote = scratch / f"remote-{plugin}-{requesters}"
            back = scratch / f"back-{plugin}-{requesters}"
            remote.mkdir()
            back.mkdir()
            workload = f"{len(small)} x {args.file_size // 1024} KiB"
            size = len(small) * args.file_size
            puts = [(str(path), str(remote / path.name)) for path in small]
            await measure(f"put {workload}", requesters, puts, "put", size)
            gets = [(str(remote / path.name), str(back / path.name)) for path in small]
            await measure(f"get {workload}", requesters, gets, "get", size)
            assert sorted(p.name for p in back.iterdir()) == [p.name for p in small]
            await asyncio.to_thread(shutil.rmtree, remote)
            await asyncio.to_thread(shutil.rmtree, back)
        large = scratch / "large.bin"
        remote_large = scratch / f"remote-large-{plugin}.bin"
        back_large = scratch / f"back-large-{plugin}.bin"
        workload = f"1 x {args.large_mib} MiB"
        size = args.large_mib * MiB
        await measure(f"put {workload}", 1, [(str(large), str(remote_large))], "put", size)
        await measure(f"get {workload}", 1, [(str(remote_large), str(back_large))], "get", size)
        if await asyncio.to_thread(digest, back_large) != await asyncio.to_thread(digest, large):
            raise SystemExit(f"{plugin}: the large file came back different")
        remote_large.unlink()
        back_large.unlink()
    finally:
        await pool.close()
    return rows


def make_data(scratch: Path, args: argparse.Namespace) -> None:
    """Random data, so that no compression can flatter the figures."""
    (scratch / "small").mkdir()
    for index in range(args.files):
        (scratch / "small" / f"file-{index:04d}.bin").write_bytes(os.urandom(args.file_size))
    with open(scratch / "large.bin", "wb") as out:
        for _ in range(args.large_mib):
            out.write(os.urandom(MiB))


def print_table(rows: list[Row]) -> None:
    header = ["plugin", "workload", "requesters", "files/s", "MiB/s", "max stall ms", "max GC ms", "<20 ms"]
    table = [header] + [row.cells() for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for index, line in enumerate(table):
        print("  ".join(cell.rjust(width) if column >= 2 else cell.ljust(width)
                        for column, (cell, width) in enumerate(zip(line, widths, strict=True))))  # fmt: skip
        if index == 0:
            print("  ".join("-" * width for width in widths))


async def main(args: argparse.Namespace) -> int:
    missing = sshd_missing_reason()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="plait-bench-", dir=args.workdir))
    try:
        await asyncio.to_thread(make_data, scratch, args)
        with LoopbackSshd(scratch / "sshd") as server:
            if args.gc_freeze:
                await asyncio.to_thread(importlib.import_module, "asyncssh")
                await asyncio.to_thread(importlib.import_module, "paramiko")
                gc.collect()
                gc.freeze()  # what a long-running engine does once started
            rows = []
            for plugin in args.plugins:
                rows += await bench_plugin(plugin, server, scratch, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"loopback OpenSSH, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          f"ssh-blocking runs through as_async (one thread per connection); "
          f"gc.freeze() after set-up: {'yes' if args.gc_freeze else 'no'}")  # fmt: skip
    print_table(rows)
    over = [row for row in rows if row.stall >= STALL_BUDGET]
    if over:
        print(f"\n{len(over)} run(s) stalled the event loop for {STALL_BUDGET * 1000:.0f} ms or more.")
        return 1
    return 0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=500, help="small files per run (default 500)")
    parser.add_argument("--file-size", type=int, default=4096, help="bytes per small file (default 4096)")
    parser.add_argument(
        "--large-mib", type=int, default=200, help="size of the large file in MiB (default 200)"
    )
    parser.add_argument("--requesters", type=int, nargs="+", default=[1, 8, 32], help="concurrent requesters")
    parser.add_argument(
        "--plugins", nargs="+", default=["ssh", "ssh-blocking"], choices=["ssh", "ssh-blocking"]
    )
    parser.add_argument(
        "--no-gc-freeze", dest="gc_freeze", action="store_false", help="leave the set-up's objects to the GC"
    )
    parser.add_argument(
        "--workdir", default=None, help="where to put the scratch files (default: the temp dir)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_arguments())))
