"""(a) Export then import of a plait archive of N calcfunction nodes (issue 12), plait alone.

The graph is the query benchmark's (``bench_queries.build_plait``: N calcfunctions with two
``Int`` inputs and one output, chains of 3, 100 groups).  Then, each in an interpreter of its own
so that its peak RSS is its own:

* export: ``create_archive(path, all=True)`` from the profile holding the graph;
* import: ``import_archive(path, pk_map=False)`` into a fresh profile;
* import again: the same archive into the same profile (everything is there: nothing added).

Run::

    python3 benchmarks/bench_archive.py [-n 10000]

The side-by-side with ``verdi archive create/import`` comes with the AiiDA-format work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def peak_rss_kib() -> int:
    """This interpreter's own peak RSS: VmHWM (ru_maxrss would carry the parent's across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover - not Linux


def phase(name: str, archive: str, profile: str) -> dict[str, Any]:
    """Run one phase here (called in a child interpreter): time it, measure peak RSS."""
    import plait.storage
    from plait.archive import create_archive, import_archive

    plait.storage.load_profile(profile)
    plait.storage.get_backend()
    t0 = time.perf_counter()
    if name == "export":
        made = create_archive(archive, all=True, overwrite=True, progress=False)
        counts: dict[str, int] = made.counts
    else:
        done = import_archive(archive, progress=False, pk_map=False)
        counts = {f"added_{k}": v for k, v in done.added.items() if v}
        counts.update({f"existing_{k}": v for k, v in done.existing.items() if v})
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mib": round(peak_rss_kib() / 1024, 1),
        "counts": counts,
    }


def run_phase(name: str, archive: Path, profile: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--archive", str(archive), "--profile", profile],
        check=True,
        capture_output=True,
        text=True,
        timeout=7200,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="calcfunction nodes (default 10,000)")
    parser.add_argument("--phase", choices=("export", "import"), help=argparse.SUPPRESS)
    parser.add_argument("--archive", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    if "--phase" in sys.argv:
        args = parser.parse_args()
        print(json.dumps(phase(args.phase, args.archive, args.profile)))
        return
    sys.path.insert(0, str(HERE))
    import _common

    _common.add_common_args(parser)
    args = parser.parse_args()
    home = _common.fresh_home("a_archive", args)
    from bench_queries import build_plait

    import plait.storage

    t0 = time.perf_counter()
    build_plait(args.n)
    build_s = time.perf_counter() - t0
    plait.storage.create_profile("target", make_default=False)
    plait.storage.reset()
    archive = home / "graph.plait"
    export = run_phase("export", archive, "default")
    first = run_phase("import", archive, "target")
    again = run_phase("import", archive, "target")
    record = {
        "engine": "plait",
        "storage": "sqlite",
        "n": args.n,
        "build_s": round(build_s, 2),
        "archive_bytes": archive.stat().st_size,
        "export": export,
        "import": first,
        "import_again": again,
        "plait": _common.plait_version(),
    }
    nodes = export["counts"]["nodes"]
    print(f"\n{args.n:,} calcfunctions = {nodes:,} nodes, archive {archive.stat().st_size / 1e6:.1f} MB")
    for name, row in (("export", export), ("import", first), ("import again", again)):
        rate = nodes / row["seconds"] if row["seconds"] else float("inf")
        rss = row["peak_rss_mib"]
        print(f"{name:<13} {row['seconds']:8.2f} s  {rate:10,.0f} nodes/s  peak RSS {rss:7.1f} MiB")
    _common.emit("a_archive" + (args.tag or ""), record)
    os.environ.pop("PLAIT_PROFILE", None)


if __name__ == "__main__":
    main()
