"""Shared helpers of the plait benchmark scripts (bench_*.py).

Every script:

* runs in a **fresh scratch profile**: before plait is imported, ``PLAIT_HOME``
  is pointed at a new folder under ``benchmarks/.scratch/`` (gitignored) and
  ``PLAIT_PROFILE`` at ``default`` (the SQLite profile plait creates on first
  use), so runs never grow one database and never touch ``~/.plait``; the
  folder is deleted at exit unless ``--keep-home``.  ``--home DIR`` uses DIR
  instead (kept; ``$PLAIT_BENCH_PROFILE`` names an existing profile in it).
  The profile and its database are created by a separate interpreter before
  the benchmark starts (``--first-use`` lets the benchmark process do it), the
  way an aiida profile exists before its benchmark runs;
* prints exactly one ``RESULT {json}`` line on stdout, like the aiida anchors,
  and appends the same JSON to ``benchmarks/results/<name>.jsonl``
  (``$PLAIT_BENCH_RESULTS`` overrides the folder).

Import this module before anything from plait.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

T_PROCESS_START = time.perf_counter()

HERE = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("PLAIT_BENCH_RESULTS", HERE / "results"))
SCRATCH = HERE / ".scratch"
SETUP: dict = {}


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=None,
        help="use this PLAIT_HOME instead of a fresh scratch folder (kept at exit; compare.py passes a "
        "fresh one whose profile it has created already)",
    )
    parser.add_argument(
        "--keep-home", action="store_true", help="do not delete the scratch PLAIT_HOME at exit"
    )
    parser.add_argument("--tag", default="", help="suffix of the result name (results/<name><tag>.jsonl)")
    parser.add_argument(
        "--first-use",
        action="store_true",
        help="let the benchmark process itself create the profile and its database on first use "
        "(default: a separate interpreter creates them first, as `verdi presto` does for aiida)",
    )


def fresh_home(name: str, args: argparse.Namespace) -> Path:
    """Point PLAIT_HOME at a new scratch folder (or ``--home``) and return it."""
    if args.home:
        home = Path(args.home).resolve()
        home.mkdir(parents=True, exist_ok=True)
    else:
        SCRATCH.mkdir(parents=True, exist_ok=True)
        home = SCRATCH / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        home.mkdir()
        if not args.keep_home:
            atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["PLAIT_HOME"] = str(home)
    os.environ["PLAIT_PROFILE"] = os.environ.get("PLAIT_BENCH_PROFILE", "default")
    database = home / "profiles" / os.environ["PLAIT_PROFILE"] / "database.sqlite"
    if not args.first_use and not database.exists():
        # Create the profile and its schema in another interpreter, so that this process's peak RSS and
        # timings are those of an installed plait (the one-time migration imports Alembic and Mako).
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import plait.storage as s; s.load_profile(); s.get_backend()"],
            check=True,
            timeout=300,
        )
        SETUP["profile_setup_s"] = round(time.perf_counter() - t0, 4)
    SETUP["first_use"] = bool(args.first_use)
    return home


def peak_rss_kib() -> int:
    """Peak resident set size of this process in KiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def plait_version() -> str:
    """``<version>+<commit>`` of the plait that was imported; ``-dirty`` if its src/ has uncommitted changes.

    compare.py sets ``$PLAIT_BENCH_REV`` when it benchmarks an exported revision.
    """
    try:
        import plait

        version = plait.__version__
        src = Path(plait.__file__).resolve().parent
    except Exception:  # pragma: no cover - reported, not fatal
        return "?"
    if os.environ.get("PLAIT_BENCH_REV"):
        return f"{version}+{os.environ['PLAIT_BENCH_REV']}"

    def git(*argv: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(src), *argv], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return version
    dirty = "-dirty" if git("status", "--porcelain", "--", ".") else ""
    return f"{version}+{commit}{dirty}"


def emit(name: str, record: dict) -> None:
    """Print ``RESULT {json}`` and append it to results/<name>.jsonl."""
    record = {**SETUP, **record}
    record.setdefault("bench", name)
    record["engine"] = "plait"
    record["plait"] = plait_version()
    record["python"] = platform.python_version()
    record["process_wall_s"] = round(time.perf_counter() - T_PROCESS_START, 4)
    record["peak_rss_kib_self"] = peak_rss_kib()
    record["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True)
    with open(RESULTS / f"{name}.jsonl", "a") as handle:
        handle.write(line + "\n")
    print("RESULT " + line)
    sys.stdout.flush()
