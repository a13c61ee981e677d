"""(a) Export then import of an archive of N calcfunction nodes (issue 12), plait and aiida-core.

The graph is the query benchmark's (``bench_queries.build_plait`` / ``build_aiida``: N calcfunctions
with two ``Int`` inputs and one output, chains of 3, 100 groups), built through each ORM (above
100,000 calcfunctions plait's is built as bulk rows, ``build_plait_bulk``).  Then, each phase in an
interpreter of its own so that its peak RSS (VmHWM) is its own, and timed around the one call:

* export: plait ``create_archive(path, all=True)``; aiida ``aiida.tools.archive.create_archive(None,
  filename=path)`` (what ``verdi archive create --all`` calls), from the profile holding the graph;
* import: plait ``import_archive(path, pk_map=False)``; aiida ``import_archive(path)`` (what ``verdi
  archive import`` calls), into a fresh profile;
* import again: the same archive into the same profile (everything is there: nothing added).

aiida-core runs in its own venv (``--aiida-venv``, ``$AIIDA_VENV``, else ``~/.cache/plait-ci/aiida-venv``
or ``/work/scratch/aiida-venv``) on two throw-away ``verdi presto --no-broker`` profiles
(core.sqlite_dos) in a scratch ``AIIDA_PATH`` under ``$AIIDA_SCRATCH`` (default: the system's temp
folder; made if missing), deleted at the end.  Run::

    python3 benchmarks/bench_archive.py [-n 10000] [--engine both|plait|aiida]
    python3 benchmarks/bench_archive.py -n 1000000 --engine plait
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


def aiida_phase(name: str, archive: str, profile: str, n: int) -> dict[str, Any]:
    """One aiida phase (called in a child interpreter of the aiida venv): build, export or import."""
    from aiida import load_profile, orm

    load_profile(profile)
    t0 = time.perf_counter()
    if name == "build":
        sys.path.insert(0, str(HERE))
        from bench_queries import build_aiida

        build_aiida(n)
        # a calcfunction that really ran is sealed, and aiida exports only sealed process nodes
        for calc in orm.QueryBuilder().append(orm.CalcFunctionNode).iterall(batch_size=1000):
            calc[0].seal()
    elif name == "export":
        from aiida.tools.archive import create_archive

        create_archive(None, filename=archive, overwrite=True)
    else:
        from aiida.tools.archive import import_archive

        import_archive(archive)
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mib": round(peak_rss_kib() / 1024, 1),
        "counts": {"nodes": orm.QueryBuilder().append(orm.Node).count()},
    }


def find_aiida_venv(given: str | None) -> Path | None:
    candidates = (
        [given] if given else [str(Path.home() / ".cache/plait-ci/aiida-venv"), "/work/scratch/aiida-venv"]
    )
    for candidate in candidates:
        if candidate and (Path(candidate) / "bin" / "verdi").exists():
            return Path(candidate)
    return None


def run_aiida(n: int, venv: Path) -> dict[str, Any]:
    """aiida's build, export, import and import again, in two throw-away presto profiles."""
    import _common

    home = _common.aiida_home("aiida-archive-")
    env = {**os.environ, "AIIDA_PATH": str(home), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PLAIT_HOME", None)
    env.pop("PLAIT_PROFILE", None)
    archive = home / "graph.aiida"

    def child(phase_name: str, profile: str) -> dict[str, Any]:
        command = [str(venv / "bin" / "python"), __file__, "--aiida-phase", phase_name]
        command += ["--archive", str(archive), "--profile", profile, "-n", str(n)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=7200)
        if done.returncode != 0:
            raise SystemExit(f"aiida {phase_name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    try:
        for profile in ("source", "target"):
            subprocess.run(
                [str(venv / "bin" / "verdi"), "presto", "-n", "-p", profile, "--no-broker"],
                check=True,
                capture_output=True,
                env=env,
                timeout=600,
            )
        build = child("build", "source")
        export = child("export", "source")
        first = child("import", "target")
        again = child("import", "target")
        size = archive.stat().st_size
    finally:
        shutil.rmtree(home, ignore_errors=True)
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import aiida; print(aiida.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.strip()
    return {
        "engine": "aiida",
        "aiida": version,
        "storage": "core.sqlite_dos",
        "n": n,
        "build_s": build["seconds"],
        "archive_bytes": size,
        "export": export,
        "import": first,
        "import_again": again,
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
    parser.add_argument("--engine", choices=("both", "plait", "aiida"), default="both")
    parser.add_argument("--aiida-venv", default=os.environ.get("AIIDA_VENV"), help="aiida-core 2.9.4 venv")
    parser.add_argument("--phase", choices=("export", "import"), help=argparse.SUPPRESS)
    parser.add_argument("--aiida-phase", choices=("build", "export", "import"), help=argparse.SUPPRESS)
    parser.add_argument("--archive", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    if "--phase" in sys.argv:
        args = parser.parse_args()
        print(json.dumps(phase(args.phase, args.archive, args.profile)))
        return
    if "--aiida-phase" in sys.argv:
        args = parser.parse_args()
        print(json.dumps(aiida_phase(args.aiida_phase, args.archive, args.profile, args.n)))
        return
    sys.path.insert(0, str(HERE))
    import _common

    _common.add_common_args(parser)
    args = parser.parse_args()
    venv = find_aiida_venv(args.aiida_venv) if args.engine != "plait" else None
    if args.engine == "aiida" and venv is None:
        raise SystemExit("no aiida-core venv: give --aiida-venv (benchmarks/setup_aiida.sh makes one)")
    records: dict[str, dict[str, Any]] = {}
    if args.engine != "aiida":
        records["plait"] = run_plait(args)
    if venv is not None:
        records["aiida"] = run_aiida(args.n, venv)
        print("AIIDA " + json.dumps(records["aiida"], sort_keys=True))  # _common.emit records plait runs
    elif args.engine == "both":
        print("(no aiida-core venv found: plait only; give --aiida-venv for the side by side)")
    print(f"\n{args.n:,} calcfunctions")
    for engine, record in records.items():
        nodes = record["export"]["counts"]["nodes"]
        size = record["archive_bytes"] / 1e6
        print(f"{engine}: {nodes:,} nodes, archive {size:.1f} MB, built in {record['build_s']} s")
    header = f"{'phase':<13}" + "".join(f"{e + ' s':>11}{e + ' RSS MiB':>16}" for e in records)
    print(header + ("   aiida/plait" if len(records) == 2 else ""))
    for key, label in (("export", "export"), ("import", "import"), ("import_again", "import again")):
        cells = "".join(f"{r[key]['seconds']:11.2f}{r[key]['peak_rss_mib']:16.1f}" for r in records.values())
        ratio = ""
        if len(records) == 2 and records["plait"][key]["seconds"]:
            ratio = f"{records['aiida'][key]['seconds'] / records['plait'][key]['seconds']:13.1f}x"
        print(f"{label:<13}{cells}{ratio}")


def run_plait(args: argparse.Namespace) -> dict[str, Any]:
    import _common

    home = _common.fresh_home("a_archive", args)
    from bench_queries import build_plait

    if args.n > 100_000:
        try:
            from bench_queries import build_plait_bulk as build_plait
        except ImportError:  # an older bench_queries: through the ORM (slower to build)
            pass

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
    _common.emit("a_archive" + (args.tag or ""), record)
    os.environ.pop("PLAIT_PROFILE", None)
    return record


if __name__ == "__main__":
    main()
