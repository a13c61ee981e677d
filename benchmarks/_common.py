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
        "--wait-load",
        type=float,
        default=None,
        metavar="LOAD",
        help="before measuring, wait until the 1-minute load average is below LOAD (polled every 30 s, "
        "at most --wait-load-max seconds; then measure anyway and say so in the RESULT line)",
    )
    parser.add_argument("--wait-load-max", type=float, default=2400.0, metavar="S")
    parser.add_argument(
        "--first-use",
        action="store_true",
        help="let the benchmark process itself create the profile and its database on first use "
        "(default: a separate interpreter creates them first, as `verdi presto` does for aiida)",
    )


def wait_for_load(limit: float | None, give_up_s: float = 2400.0, every_s: float = 30.0) -> None:
    """Wait until ``os.getloadavg()[0] < limit`` (others share this machine); record what was found.

    After ``give_up_s`` the benchmark runs anyway and ``load_wait_gave_up`` says so.
    """
    SETUP["load_at_start"] = round(os.getloadavg()[0], 2)
    if limit is None:
        return
    t0 = time.monotonic()
    while os.getloadavg()[0] >= limit:
        if time.monotonic() - t0 >= give_up_s:
            SETUP["load_wait_gave_up"] = True
            print(
                f"load still {os.getloadavg()[0]:.2f} after {give_up_s:.0f} s: measuring anyway",
                file=sys.stderr,
                flush=True,
            )
            break
        print(f"load {os.getloadavg()[0]:.2f} >= {limit:g}: waiting", file=sys.stderr, flush=True)
        time.sleep(every_s)
    SETUP["load_waited_s"] = round(time.monotonic() - t0, 1)
    SETUP["load_at_start"] = round(os.getloadavg()[0], 2)


def postgres_database(server_url: str) -> str:
    """Create the database ``plait_bench_<pid>`` on ``server_url``; drop it at exit.  Returns its URL.

    ``server_url`` names a database to connect to for CREATE/DROP (``postgresql://postgres@host:5432/postgres``).
    """
    import psycopg

    base, _, _ = server_url.rpartition("/")
    name = f"plait_bench_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        try:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # pragma: no cover - reported, not fatal
            print(f"could not drop database {name}: {exc}", file=sys.stderr)

    atexit.register(drop)
    SETUP["postgres_database"] = name
    return f"{base}/{name}"


def fresh_home(name: str, args: argparse.Namespace) -> Path:
    """Point PLAIT_HOME at a new scratch folder (or ``--home``) and return it.

    Waits first for a quiet machine if ``--wait-load`` was given.
    """
    wait_for_load(getattr(args, "wait_load", None), getattr(args, "wait_load_max", 2400.0))
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


def aiida_home(prefix: str) -> Path:
    """A new throw-away ``AIIDA_PATH`` folder under ``$AIIDA_SCRATCH`` (default: the system's temp
    folder), made with its parents."""
    import tempfile

    scratch = Path(os.environ.get("AIIDA_SCRATCH") or tempfile.gettempdir())
    scratch.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch))


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def daemon_pids_of(home: Path) -> list[int]:
    """``plait.daemon`` processes whose PLAIT_HOME is ``home`` (never anybody else's)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if b"plait.daemon" not in handle.read():
                    continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                env = handle.read().split(b"\0")
        except OSError:
            continue
        if f"PLAIT_HOME={home}".encode() in env and alive(int(entry)):
            found.append(int(entry))
    return found


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
    record["load_at_end"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True)
    with open(RESULTS / f"{name}.jsonl", "a") as handle:
        handle.write(line + "\n")
    print("RESULT " + line)
    sys.stdout.flush()
