"""plait and aiida-core 2.9.4 side by side: the anchor scenarios, run in one go on this machine, one table.

For every scenario it runs the aiida anchor script (read-only, from ``../shared/anchors/aiida-bench``) and the
plait script of this folder REPS times each, interleaved (aiida, plait, aiida, plait, ...) so that both
share the machine's noise, each run a fresh interpreter under ``/usr/bin/time -v`` (peak RSS), and prints::

    scenario | aiida anchor (README) | aiida now (median) | plait now (median) | ratio | target | met?

Usage (from the repository root)::

    benchmarks/setup_aiida.sh /work/scratch                 # once: aiida venv + profile, outside the repo
    python3 benchmarks/compare.py --aiida-venv /work/scratch/aiida-venv
    python3 benchmarks/compare.py --only a b --reps 5       # a subset
    python3 benchmarks/compare.py --plait-rev HEAD          # a committed revision, not the work tree
    python3 benchmarks/compare.py                           # no aiida venv: plait only, and how to set it up

Environment instead of options: ``AIIDA_VENV``, ``AIIDA_PATH`` (the aiida home; default
``<venv>/../aiida-home``), ``AIIDA_PROFILE`` (default ``bench-nobroker``), ``AIIDA_DAEMON_PROFILE`` (the
RabbitMQ profile of the daemon rows, default ``bench-rmq``, created with ``verdi presto`` if missing),
``AIIDA_ANCHORS``, ``REPS``.

The daemon section (``--only daemon``) runs ``bench_daemon.py`` (plait) and the anchor's
``bench_calcjob.py --mode submit`` (aiida, ``verdi daemon start N`` before and ``daemon stop`` after every
repetition); see ``--submit-n``, ``--parked-n``, ``--parked-during-n``, ``--pause-samples``.

Every plait run gets a fresh scratch ``PLAIT_HOME`` under ``benchmarks/.scratch/`` whose default profile is
created by a separate interpreter first (as ``verdi presto`` made the aiida profile), deleted after the run.
Raw records: plait scripts append to ``benchmarks/results/<bench>.jsonl``, aiida anchor scripts to
``benchmarks/results/aiida/<bench>.jsonl`` (``BENCH_RESULTS``), this runner to ``results/compare_runs.jsonl``
(every run) and ``results/compare_summary.jsonl`` (every table row), and the table to
``results/compare-<timestamp>.md``.

Figures only: nothing here is a test; wall-clock targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
SCRATCH = HERE / ".scratch"
DEFAULT_ANCHORS = REPO.parent / "shared" / "anchors" / "aiida-bench"
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None  # GNU time: -v gives peak RSS
RUN_TIMEOUT = 900
MiB = 1024


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- scenarios -----------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One row of the comparison (plus, optionally, a peak-RSS row)."""

    key: str
    label: str
    aiida_script: str | None
    aiida_args: list[str]
    plait_script: str
    plait_args: list[str]
    metric: str  # key of the RESULT record
    unit: str
    higher_is_better: bool
    target_ratio: float | None  # plait must be this many times better than aiida
    anchor_results: str | None  # file in the anchor results folder with the published runs
    anchor_timev: str | None = None  # file with the published /usr/bin/time -v peak RSS
    rss_target_mib: float | None = None
    rss_row: bool = True
    reps: int | None = None  # None: --reps; 1 for the scripts that repeat internally
    aiida_setup: list[list[str]] = field(default_factory=list)  # anchor scripts run once before the reps


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    profile = ["--profile", args.aiida_profile]
    return [
        Scenario(
            "a",
            "(a) 200 calcfunctions `add(Int, Int)`, fresh inputs",
            "bench_calcfunction.py",
            [*profile, "-n", "200"],
            "bench_calcfunction.py",
            ["-n", "200"],
            "rate_per_s",
            "calcfunctions/s",
            True,
            30.0,
            "a_calcfunction.jsonl",
            "timev_a_nobroker.jsonl",
            rss_target_mib=50.0,
        ),
        Scenario(
            "a_reuse",
            "(a) 200 calcfunctions, stored inputs reused",
            "bench_calcfunction.py",
            [*profile, "-n", "200", "--reuse-inputs"],
            "bench_calcfunction.py",
            ["-n", "200", "--reuse-inputs"],
            "rate_per_s",
            "calcfunctions/s",
            True,
            30.0,
            "a_calcfunction_reuse.jsonl",
            "timev_a_reuse_nobroker.jsonl",
            rss_target_mib=50.0,
        ),
        Scenario(
            "b_steps",
            "(b) WorkChain, 100 literal outline steps",
            "bench_workchain.py",
            [*profile, "--kind", "steps"],
            "bench_workchain.py",
            ["--kind", "steps"],
            "steps_per_s",
            "steps/s",
            True,
            20.0,
            "b_workchain_steps.jsonl",
            "timev_b_steps_nobroker.jsonl",
            rss_target_mib=50.0,
        ),
        Scenario(
            "b_while",
            "(b) WorkChain, `while_` loop of 100 iterations",
            "bench_workchain.py",
            [*profile, "--kind", "while"],
            "bench_workchain.py",
            ["--kind", "while"],
            "steps_per_s",
            "iterations/s",
            True,
            None,
            "b_workchain_while.jsonl",
            "timev_b_while_nobroker.jsonl",
            rss_target_mib=50.0,
        ),
        Scenario(
            "b_children",
            "(b) WorkChain calling 50 child calcfunctions (wall s)",
            "bench_workchain.py",
            [*profile, "--kind", "children"],
            "bench_workchain.py",
            ["--kind", "children"],
            "elapsed_s",
            "s",
            False,
            20.0,
            "b_workchain_children.jsonl",
            "timev_b_children_nobroker.jsonl",
            rss_target_mib=50.0,
        ),
        Scenario(
            "c",
            "(c) 20 CalcJobs `arithmetic.add`, in-process one after another "
            "(aiida: poll 0, safe 0, no login shell)",
            "bench_calcjob.py",
            [*profile, "--mode", "run", "-n", "20", "--tag", "_nobroker_minimal_nologin"],
            "bench_calcjob.py",
            ["-n", "20"],
            "calcjobs_per_min",
            "CalcJobs/min",
            True,
            10.0,
            "c_calcjob_run_nobroker_minimal_nologin.jsonl",
            "timev_c_run_nobroker_minimal_nologin.jsonl",
            aiida_setup=[
                ["setup_localhost.py", *profile, "--poll", "0", "--safe", "0", "--login-shell", "false"]
            ],
        ),
        Scenario(
            "e",
            "(e) import time in-process (`import X; from X import engine, orm`)",
            "bench_import.py",
            [*profile, "--reps", str(max(args.reps, IMPORT_MIN_REPS))],
            "bench_import.py",
            ["--reps", str(max(args.reps, IMPORT_MIN_REPS))],
            "import_inproc_median_s",
            "s",
            False,
            None,
            "e_import.jsonl",
            None,
            rss_row=False,
            reps=1,
        ),
    ]


SECTIONS = ["base", "a", "a_reuse", "b_steps", "b_while", "b_children", "c", "e", "concurrent", "daemon"]
ALIASES = {"b": ["b_steps", "b_while", "b_children"], "c-run": ["c"], "d": ["daemon"]}
IMPORT_TARGET_S = 0.15
IMPORT_MIN_REPS = 5  # interpreters per import measure: a single import is noisy on a busy machine


# -- running one benchmark -----------------------------------------------------------------------------------


@dataclass
class Run:
    engine: str
    key: str
    rep: int
    rc: int
    record: dict[str, Any] | None
    maxrss_kib: int | None
    wall_s: float
    error: str = ""


def parse_time_v(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(match.group(1)) if match else None


def run_command(
    engine: str,
    key: str,
    rep: int,
    cmd: list[str],
    env: dict[str, str],
    cwd: Path,
    timeout: float = RUN_TIMEOUT,
) -> Run:
    """Run one benchmark interpreter under /usr/bin/time -v and timeout; parse its RESULT line."""
    with tempfile.NamedTemporaryFile(prefix="timev-", suffix=".txt", delete=False) as handle:
        timev = Path(handle.name)
    full = ["timeout", str(int(timeout)), *cmd]
    if TIME:
        full = [TIME, "-v", "-o", str(timev), *full]
    t0 = time.perf_counter()
    proc = subprocess.run(full, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    maxrss = parse_time_v(timev) if TIME else None
    timev.unlink(missing_ok=True)
    record = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            record = json.loads(line[len("RESULT ") :])
    error = ""
    if proc.returncode != 0 or record is None:
        error = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1][:300]
        log(f"  FAILED {engine} {key} rep {rep}: rc={proc.returncode}: {error}")
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        print(tail, file=sys.stderr)
    if record is not None and maxrss is None:
        maxrss = record.get("peak_rss_kib_self")
    run = Run(engine, key, rep, proc.returncode, record, maxrss, wall, error)
    append_jsonl(
        "compare_runs.jsonl",
        {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "engine": engine,
            "scenario": key,
            "rep": rep,
            "rc": proc.returncode,
            "maxrss_kib_time_v": maxrss if TIME else None,
            "wall_s": round(wall, 3),
            "record": record,
            "error": error,
            "cmd": cmd,
        },
    )
    return run


def append_jsonl(name: str, record: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / name, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


class Plait:
    """How to run a plait benchmark script: which interpreter, which source, a fresh PLAIT_HOME each time."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.python = args.plait_python
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIIDA", "PLAIT_"))}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.source = "work tree (the installed plait)"
        if args.plait_rev:
            sha = subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", args.plait_rev],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            target = SCRATCH / f"src-{sha}"
            if not (target / "src" / "plait" / "__init__.py").exists():
                target.mkdir(parents=True, exist_ok=True)
                archive = subprocess.run(
                    ["git", "-C", str(REPO), "archive", sha, "src"], check=True, capture_output=True
                ).stdout
                subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
            self.env["PYTHONPATH"] = str(target / "src")
            self.env["PLAIT_BENCH_REV"] = sha
            self.source = f"git revision {sha} (exported to {target.relative_to(REPO)})"
        probe = subprocess.run(
            [self.python, "-c", "import plait, sys; print(plait.__file__); print(plait.__version__)"],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            sys.exit(f"cannot import plait with {self.python}: {probe.stderr.strip()}")
        self.module_file, self.version = probe.stdout.split()

    def fresh_home(self, key: str, rep: int) -> Path:
        SCRATCH.mkdir(parents=True, exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix=f"{key}-r{rep}-", dir=SCRATCH))
        env = {**self.env, "PLAIT_HOME": str(home), "PLAIT_PROFILE": "default"}
        subprocess.run(
            [self.python, "-c", "import plait.storage as s; s.load_profile(); s.get_backend()"],
            env=env,
            check=True,
            timeout=300,
        )
        return home

    def run(
        self, key: str, rep: int, script: str, script_args: list[str], timeout: float = RUN_TIMEOUT
    ) -> Run:
        home = self.fresh_home(key, rep)
        try:
            cmd = [self.python, str(HERE / script), *script_args, "--home", str(home)]
            return run_command("plait", key, rep, cmd, self.env, REPO, timeout)
        finally:
            shutil.rmtree(home, ignore_errors=True)


class Aiida:
    """How to run an aiida anchor script: venv, aiida home, profile and the read-only anchor folder."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.venv = Path(args.aiida_venv).resolve()
        self.home = Path(args.aiida_home or self.venv.parent / "aiida-home").resolve()
        self.profile = args.aiida_profile
        self.anchors = Path(args.anchors).resolve()
        self.python = str(self.venv / "bin" / "python")
        self.results = RESULTS / "aiida"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIT_", "PYTHON", "VIRTUAL_ENV"))}
        env.update(
            AIIDA_PATH=str(self.home),
            PATH=f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}",
            VIRTUAL_ENV=str(self.venv),
            BENCH_RESULTS=str(self.results),  # never into the read-only anchor folder
            ANCHORS=str(self.venv.parent),  # read by setup_localhost.py/machine_baseline.py only
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",  # no __pycache__ in the read-only anchor folder (we may run as root)
        )
        self.env = env
        self.version = ""

    def check(self) -> str | None:
        """None if usable, else why not."""
        if not Path(self.python).exists():
            return f"no python in {self.venv}"
        if not (self.anchors / "bench_calcfunction.py").exists():
            return f"no anchor scripts in {self.anchors}"
        probe = subprocess.run(
            [self.python, "-c", "import aiida; print(aiida.__version__)"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if probe.returncode != 0:
            return f"cannot import aiida in {self.venv}: {probe.stderr.strip()[-200:]}"
        self.version = probe.stdout.strip()
        show = subprocess.run(
            [str(self.venv / "bin" / "verdi"), "profile", "show", self.profile],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if show.returncode != 0:
            return f"no aiida profile '{self.profile}' in {self.home}"
        return None

    def script(self, name: str, script_args: list[str]) -> list[str]:
        return [self.python, str(self.anchors / name), *script_args]

    def setup(self, name_and_args: list[str]) -> str:
        proc = subprocess.run(
            ["timeout", "300", *self.script(name_and_args[0], name_and_args[1:])],
            env=self.env,
            cwd=self.anchors,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{name_and_args[0]} failed: {proc.stderr.strip()[-500:]}")
        return proc.stdout.strip()

    def run(self, key: str, rep: int, script: str, script_args: list[str]) -> Run:
        return run_command("aiida", key, rep, self.script(script, script_args), self.env, self.anchors)


def how_to_set_up_aiida() -> str:
    return (
        "No aiida-core venv given (--aiida-venv or $AIIDA_VENV), so only plait runs.\n"
        "To compare side by side (keep the venv outside the repository):\n"
        "  benchmarks/setup_aiida.sh /work/scratch   # aiida-core==2.9.4 in /work/scratch/aiida-venv,\n"
        "                                            # profile bench-nobroker (verdi presto --no-broker)\n"
        "                                            # in /work/scratch/aiida-home\n"
        "  python3 benchmarks/compare.py --aiida-venv /work/scratch/aiida-venv\n"
    )


# -- published anchor figures --------------------------------------------------------------------------------


def anchor_median(anchors: Path, filename: str | None, metric: str) -> float | None:
    """Median of ``metric`` over the anchor's published runs (its results/*.jsonl), or None."""
    if not filename:
        return None
    try:
        lines = (anchors / "results" / filename).read_text().splitlines()
    except OSError:
        return None
    values = [json.loads(line).get(metric) for line in lines if line.strip()]
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


# -- the daemon scenarios (d) --------------------------------------------------------------------------------
#
# >>> DAEMON SECTION <<<
#
# plait: bench_daemon.py (one fresh scratch profile and one fresh daemon per run, stopped in a finally).
# aiida: the anchor's `bench_calcjob.py --mode submit` on a RabbitMQ profile (default bench-rmq, created with
# `verdi presto` if missing), set to poll 0 / safe 0 / no login shell, with `verdi daemon start N` before and
# `verdi daemon stop` after every repetition (the anchor restarts the daemon for every repetition).

DAEMON_ANCHOR = "c_calcjob_submit_rmq_minimal_nologin.jsonl"
DAEMON_TARGET_RATIO = 10.0
AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672


def rabbitmq_reachable() -> bool:
    import socket

    try:
        with socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=2):
            return True
    except OSError:
        return False


def plait_daemon_exists(plait: Plait) -> bool:
    exe = shutil.which("plait")
    cmd = (
        [exe]
        if exe
        else [plait.python, "-c", "import sys; from plait.cli.main import main; sys.exit(main())"]
    )
    proc = subprocess.run(
        [*cmd, "daemon", "--help"], env=plait.env, capture_output=True, text=True, timeout=120
    )
    return proc.returncode == 0


def anchor_values(anchors: Path, filename: str, getter) -> list[float]:
    try:
        lines = (anchors / "results" / filename).read_text().splitlines()
    except OSError:
        return []
    values = [getter(json.loads(line)) for line in lines if line.strip()]
    return [float(v) for v in values if isinstance(v, (int, float))]


def first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def row(scenario: str, key: str, **cells: Any) -> dict[str, Any]:
    out = {
        "scenario": scenario,
        "key": key,
        "anchor": "—",
        "aiida": "—",
        "plait": "—",
        "ratio": "—",
        "target": "— (no target)",
        "met": "—",
    }
    out.update(cells)
    return out


def rate_row(
    scenario: str,
    key: str,
    a_runs: list[Run],
    p_runs: list[Run],
    getter,
    unit: str,
    *,
    anchor: float | None = None,
    target: float | None = None,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    a_med, a_vals = median_of(a_runs, getter)
    p_med, p_vals = median_of(p_runs, getter)
    ratio = None
    if a_med and p_med:
        ratio = p_med / a_med if higher_is_better else a_med / p_med
    met = None if target is None or ratio is None else ratio >= target
    if target is not None and not p_runs:
        met = False
    plait_text = fmt(p_med, unit)
    failed = [r for r in p_runs if r.record is None or r.rc != 0]
    if failed:
        plait_text += f" ({len(failed)} of {len(p_runs)} runs failed: {failed[0].error})"
    return row(
        scenario,
        key,
        anchor=fmt(anchor, unit) if anchor is not None else "—",
        aiida=fmt(a_med, unit) if a_runs else "—",
        plait=plait_text,
        aiida_runs=a_vals,
        plait_runs=p_vals,
        ratio="—" if ratio is None else (f"{ratio:.1f}x" + ("" if higher_is_better else " less")),
        target="— (no target)" if target is None else f"≥ {target:.0f}x",
        met="—" if met is None else ("yes" if met else "**NO**"),
    )


def aiida_daemon_run(aiida: Aiida, profile: str, workers: int, rep: int, key: str) -> Run:
    """One repetition of the anchor's submit mode on a freshly started aiida daemon (always stopped)."""
    verdi = str(aiida.venv / "bin" / "verdi")
    start = subprocess.run(
        ["timeout", "120", verdi, "-p", profile, "daemon", "start", str(workers)],
        env=aiida.env,
        capture_output=True,
        text=True,
    )
    try:
        if start.returncode != 0:
            error = (start.stdout + start.stderr).strip()[-300:]
            log(f"  FAILED aiida daemon start: {error}")
            return Run("aiida", key, rep, start.returncode, None, None, 0.0, f"daemon start: {error}")
        return aiida.run(
            key,
            rep,
            "bench_calcjob.py",
            [
                "--profile",
                profile,
                "--mode",
                "submit",
                "-n",
                "20",
                "--tag",
                f"_rmq_minimal_nologin_{workers}w",
            ],
        )
    finally:
        subprocess.run(
            ["timeout", "180", verdi, "-p", profile, "daemon", "stop"],
            env=aiida.env,
            capture_output=True,
            text=True,
        )


def ensure_aiida_daemon_profile(aiida: Aiida, profile: str) -> str:
    """The RabbitMQ profile of the daemon rows: create it (verdi presto) if missing; fair (c) settings."""
    verdi = str(aiida.venv / "bin" / "verdi")
    show = subprocess.run(
        [verdi, "profile", "show", profile], env=aiida.env, capture_output=True, text=True, timeout=120
    )
    note = ""
    if show.returncode != 0:
        listing = subprocess.run(
            [verdi, "profile", "list"], env=aiida.env, capture_output=True, text=True, timeout=120
        ).stdout
        default = next((ln.split()[1] for ln in listing.splitlines() if ln.strip().startswith("* ")), None)
        log(f"aiida: creating the RabbitMQ profile {profile} (verdi presto -n -p {profile})")
        made = subprocess.run(
            ["timeout", "300", verdi, "presto", "-n", "-p", profile],
            env=aiida.env,
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise RuntimeError(f"verdi presto -p {profile} failed: {(made.stdout + made.stderr)[-400:]}")
        if default:  # presto makes the new profile the default: give the user theirs back
            subprocess.run(
                [verdi, "profile", "set-default", default], env=aiida.env, capture_output=True, timeout=120
            )
        note = f"created with `verdi presto -n -p {profile}`; "
    out = aiida.setup(
        ["setup_localhost.py", "--profile", profile, "--poll", "0", "--safe", "0", "--login-shell", "false"]
    )
    return note + out


def daemon_section(
    plait: Plait, aiida: Aiida | None, anchors: Path, args: argparse.Namespace, notes: list[str]
) -> list[dict[str, Any]]:
    if not plait_daemon_exists(plait):
        log("(d) daemon scenarios skipped: no `plait daemon` (`plait daemon --help` failed)")
        return [row("(d) daemon scenarios", "daemon", plait="skipped: no `plait daemon` yet")]
    reps = args.reps
    rmq = rabbitmq_reachable()
    if not rmq:
        notes.append(f"daemon: RabbitMQ not reachable on {AMQP_HOST}:{AMQP_PORT}: no aiida daemon rows")
    profile = args.aiida_daemon_profile
    aiida_ok = aiida is not None and rmq
    if aiida_ok:
        try:
            notes.append(f"daemon: aiida profile {profile}: {ensure_aiida_daemon_profile(aiida, profile)}")
        except Exception as exc:
            notes.append(f"daemon: aiida profile {profile} unusable: {exc}")
            aiida_ok = False
    rows: list[dict[str, Any]] = []
    daemon_script = "bench_daemon.py"

    # -- (c) through the daemon: 1 worker (plait on its embedded broker and on RabbitMQ), then 2 workers
    runs: dict[str, list[Run]] = {k: [] for k in ("a1", "p1", "p1_rmq", "a2", "p2")}
    for rep in range(1, reps + 1):
        if aiida_ok:
            log(f"daemon c 1 worker rep {rep}/{reps}: aiida")
            runs["a1"].append(aiida_daemon_run(aiida, profile, 1, rep, "d_c1"))
        log(f"daemon c 1 worker rep {rep}/{reps}: plait")
        runs["p1"].append(plait.run("d_c1", rep, daemon_script, ["calcjob", "-n", "20", "--workers", "1"]))
        if rmq:
            log(f"daemon c 1 worker rep {rep}/{reps}: plait, RabbitMQ broker")
            runs["p1_rmq"].append(
                plait.run(
                    "d_c1_rmq", rep, daemon_script, ["calcjob", "--workers", "1", "--broker", "rabbitmq"]
                )
            )
    for rep in range(1, reps + 1):
        if aiida_ok:
            log(f"daemon c 2 workers rep {rep}/{reps}: aiida")
            runs["a2"].append(aiida_daemon_run(aiida, profile, 2, rep, "d_c2"))
        log(f"daemon c 2 workers rep {rep}/{reps}: plait")
        runs["p2"].append(plait.run("d_c2", rep, daemon_script, ["calcjob", "-n", "20", "--workers", "2"]))

    published = anchor_values(anchors, DAEMON_ANCHOR, lambda r: r.get("calcjobs_per_min"))
    published_rss = anchor_values(
        anchors, DAEMON_ANCHOR, lambda r: first(r.get("daemon_worker_peak_rss_kib"))
    )
    published_submit = anchor_values(anchors, DAEMON_ANCHOR, lambda r: r.get("submit_all_s"))
    cpm = lambda r: r.record.get("calcjobs_per_min")  # noqa: E731
    rows.append(
        rate_row(
            "(c) 20 CalcJobs through the daemon, 1 worker, submitted at once (aiida: RabbitMQ, poll 0, "
            "safe 0, no login shell; plait: its embedded SQLite broker)",
            "d_c1",
            runs["a1"],
            runs["p1"],
            cpm,
            "CalcJobs/min",
            anchor=statistics.median(published) if published else None,
            target=DAEMON_TARGET_RATIO,
        )
    )

    def worker_rss(r: Run) -> float:
        record = r.record or {}
        value = first(record.get("worker_peak_rss_kib") or record.get("daemon_worker_peak_rss_kib"))
        return round((value or 0) / MiB, 1)

    rss_row = rate_row(
        "    peak RSS of the daemon worker (VmHWM)",
        "d_c1_worker_rss",
        runs["a1"],
        runs["p1"],
        worker_rss,
        "MiB",
        anchor=statistics.median(published_rss) / MiB if published_rss else None,
        higher_is_better=False,
    )
    rows.append(rss_row)
    submit_rate = lambda r: 20 / r.record["submit_all_s"] if r.record.get("submit_all_s") else None  # noqa: E731
    rows.append(
        rate_row(
            "    submit() of those 20 CalcJobs, back to back (included in the time above)",
            "d_c1_submit",
            runs["a1"],
            runs["p1"],
            submit_rate,
            "submits/s",
            anchor=20 / statistics.median(published_submit) if published_submit else None,
        )
    )
    if runs["p1_rmq"]:
        rows.append(
            rate_row(
                "(c) the same, plait on RabbitMQ too (`amqp://` broker; aiida column: the same aiida runs)",
                "d_c1_rmq",
                runs["a1"],
                runs["p1_rmq"],
                cpm,
                "CalcJobs/min",
                target=DAEMON_TARGET_RATIO,
            )
        )
    two = rate_row(
        "(c) 20 CalcJobs through the daemon, 2 workers (both engines `daemon start 2`)",
        "d_c2",
        runs["a2"],
        runs["p2"],
        cpm,
        "CalcJobs/min",
    )
    p1_med, _ = median_of(runs["p1"], cpm)
    p2_med, _ = median_of(runs["p2"], cpm)
    a1_med, _ = median_of(runs["a1"], cpm)
    a2_med, _ = median_of(runs["a2"], cpm)
    spread = [r.record.get("jobs_seen_held_per_worker") for r in runs["p2"] if r.record]
    scaling = []
    if a1_med and a2_med:
        scaling.append(f"aiida 2 workers / 1 worker = {a2_med / a1_med:.2f}")
    if p1_med and p2_med:
        scaling.append(f"plait {p2_med / p1_med:.2f}")
    if scaling:
        two["target"] = "— (scaling: " + ", ".join(scaling) + ")"
    rows.append(two)
    if spread:
        notes.append(
            "d_c2: jobs seen held per plait worker by the 0.1 s monitor, per run: "
            + "; ".join(str(s) for s in spread)
        )

    # -- submission rate
    sub: dict[str, list[Run]] = {"daemon": [], "nodaemon": [], "rmq": []}
    n_submit = str(args.submit_n)
    for rep in range(1, reps + 1):
        log(f"daemon submit rate rep {rep}/{reps}: plait, daemon running")
        sub["daemon"].append(plait.run("d_submit", rep, daemon_script, ["submit", "-n", n_submit]))
        log(f"daemon submit rate rep {rep}/{reps}: plait, no daemon")
        sub["nodaemon"].append(
            plait.run("d_submit_nodaemon", rep, daemon_script, ["submit", "-n", n_submit, "--no-daemon"])
        )
        if rmq:
            log(f"daemon submit rate rep {rep}/{reps}: plait, daemon running, RabbitMQ broker")
            sub["rmq"].append(
                plait.run(
                    "d_submit_rmq", rep, daemon_script, ["submit", "-n", n_submit, "--broker", "rabbitmq"]
                )
            )
    sps = lambda r: r.record.get("submits_per_s")  # noqa: E731
    e2e = lambda r: r.record.get("end_to_end_per_s")  # noqa: E731
    rows.append(
        rate_row(
            f"(d) submission rate: `plait.submit` of {args.submit_n} trivial work chains in a loop, daemon "
            "(1 worker) running",
            "d_submit",
            [],
            sub["daemon"],
            sps,
            "submits/s",
        )
    )
    rows.append(
        rate_row(
            "    the same, no daemon running", "d_submit_nodaemon", [], sub["nodaemon"], sps, "submits/s"
        )
    )
    if sub["rmq"]:
        rows.append(
            rate_row(
                "    the same, daemon running, RabbitMQ broker",
                "d_submit_rmq",
                [],
                sub["rmq"],
                sps,
                "submits/s",
            )
        )
    rows.append(
        rate_row(
            f"    {args.submit_n} trivial work chains from the first submit to all finished ok (1 worker)",
            "d_submit_e2e",
            [],
            sub["daemon"],
            e2e,
            "processes/s",
        )
    )

    # -- parked processes
    def parked_row(n: int, extra: list[str], label: str, key: str) -> dict[str, Any]:
        log(f"daemon parked: {n} parents {' '.join(extra)} (plait only, once)")
        run = plait.run(key, 1, daemon_script, ["parked", "-n", str(n), *extra], timeout=args.parked_timeout)
        if run.record is None:
            return row(label, key, plait=f"failed: {run.error}", met="**NO**", target="all finished ok")
        r = run.record
        mib = lambda v: f"{(v or 0) / MiB:.0f} MiB"  # noqa: E731
        if r.get("stalled"):
            head = (
                f"stalled: {r['parked']:,} of {n:,} parents parked after {r['stalled_after_s']:.0f} s, "
                f"{r['counts_at_parked']['children_held']} gated children holding the slots"
            )
        else:
            head = f"{r['parked']:,} of {n:,} parents parked in {r['time_to_parked_s']:.1f} s"
        full = ""
        if r.get("worker_rss_kib_slots_full"):
            full = (
                f" ({mib(r['worker_rss_kib_slots_full'])} once the 200 slots also held gated children, "
                f"at {r['slots_full_s']:.1f} s)"
            )
        text = (
            f"{head}; worker RSS then {mib(r['worker_rss_kib_at_parked'])}{full}, peak (VmHWM) over the run "
            f"{mib(r['worker_peak_rss_kib'])}; gate opened → all {2 * n:,} terminated in "
            f"{r['gate_to_all_terminated_s']:.1f} s ({r['processes_per_s_after_gate']:.0f} processes/s); "
            f"{r['finished_ok']:,}/{2 * n:,} finished ok; submit {r['submits_per_s']:.0f}/s; "
            f"run took {run.wall_s / 60:.1f} min"
        )
        return row(
            label,
            key,
            plait=text,
            target="all finished ok",
            met="yes" if r.get("all_finished_ok") else "**NO**",
            wall_s=round(run.wall_s, 1),
        )

    n = args.parked_n
    big = parked_row(
        n,
        [],
        f"(d) {n:,} parked processes in 1 worker (200 slots): {n:,} work chains each waiting (ToContext) for "
        "a child that waits at an await for a gate file; all submitted, then the daemon started",
        "d_parked",
    )
    rows.append(big)
    if n > 2000 and big.get("wall_s", 0) > 600:
        rows.append(
            parked_row(
                2000, [], "    the same with 2,000 (the run above took more than 10 min)", "d_parked_2000"
            )
        )
    if args.parked_during_n:
        m = args.parked_during_n
        rows.append(
            parked_row(
                m,
                ["--during-submit", "--stall-s", "20"],
                f"    {m:,} of them with the daemon running during the submission (children hold slots)",
                "d_parked_during",
            )
        )

    # -- pause latency
    for broker in ["database"] + (["rabbitmq"] if rmq else []):
        key = "d_pause" if broker == "database" else "d_pause_rmq"
        log(f"daemon pause latency, {broker} broker: {args.pause_samples} samples (plait only, once)")
        run = plait.run(
            key, 1, daemon_script, ["pause", "--samples", str(args.pause_samples), "--broker", broker]
        )
        name = "embedded SQLite broker" if broker == "database" else "RabbitMQ broker"
        if run.record is None:
            rows.append(row(f"(d) pause latency, {name}", key, plait=f"failed: {run.error}", met="**NO**"))
            continue
        r = run.record
        ms = lambda v: f"{1000 * v:.0f} ms"  # noqa: E731
        for how, what in (("api", "`control.pause([pk])`"), ("cli", "`plait process pause PK` (subprocess)")):
            if f"{how}_to_db_paused_s_median" not in r:
                continue
            rows.append(
                row(
                    f"(d) pause latency, {name}: {what} → database shows paused "
                    f"({r['samples']} samples, process waiting at an await)",
                    f"{key}_{how}",
                    plait=(
                        f"median {ms(r[f'{how}_to_db_paused_s_median'])}, max "
                        f"{ms(r[f'{how}_to_db_paused_s_max'])}; the call returns after median "
                        f"{ms(r[f'{how}_call_s_median'])} (max {ms(r[f'{how}_call_s_max'])}); play → held "
                        f"again median {ms(r[f'{how}_play_to_held_s_median'])}"
                    ),
                    plait_runs=[round(v, 4) for v in r[f"{how}_to_db_paused_s"]],
                    aiida_runs=[],
                )
            )
        if r.get("cli_runs_with_tracebacks_at_exit"):
            notes.append(
                f"{key}: {r['cli_runs_with_tracebacks_at_exit']} of {r['samples']} `plait process pause` "
                "runs printed 'Task was destroyed but it is pending!' tracebacks at exit"
            )
    return rows


# -- the table -----------------------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def median_of(runs: list[Run], getter) -> tuple[float | None, list[float]]:
    values = []
    for run in runs:
        if run.record is not None and run.rc == 0:
            value = getter(run)
            if isinstance(value, (int, float)):
                values.append(float(value))
    return (statistics.median(values) if values else None), values


def scenario_rows(sc: Scenario, runs: dict[str, list[Run]], anchors: Path) -> list[dict[str, Any]]:
    rows = []
    a_med, a_vals = median_of(runs.get("aiida", []), lambda r: r.record.get(sc.metric))
    p_med, p_vals = median_of(runs.get("plait", []), lambda r: r.record.get(sc.metric))
    if sc.key == "e":  # one run per engine that repeats internally: show its interpreters
        a_vals = [v for r in runs.get("aiida", []) if r.record for v in r.record.get("import_inproc_s", [])]
        p_vals = [v for r in runs.get("plait", []) if r.record for v in r.record.get("import_inproc_s", [])]
    published = anchor_median(anchors, sc.anchor_results, sc.metric)
    ratio = None
    if a_med and p_med:
        ratio = p_med / a_med if sc.higher_is_better else a_med / p_med
    if sc.key == "e":
        target = f"plait ≤ {IMPORT_TARGET_S} s"
        met = None if p_med is None else p_med <= IMPORT_TARGET_S
    elif sc.target_ratio is not None:
        target = f"≥ {sc.target_ratio:.0f}x" + ("" if sc.higher_is_better else " faster")
        met = None if ratio is None else ratio >= sc.target_ratio
    else:
        target, met = "— (no target)", None
    rows.append(
        {
            "scenario": sc.label,
            "key": sc.key,
            "anchor": fmt(published, sc.unit),
            "aiida": fmt(a_med, sc.unit),
            "plait": fmt(p_med, sc.unit),
            "aiida_runs": a_vals,
            "plait_runs": p_vals,
            "ratio": "—" if ratio is None else f"{ratio:.1f}x",
            "target": target,
            "met": "—" if met is None else ("yes" if met else "**NO**"),
        }
    )
    if sc.key == "e":
        # the wall of `python -c` too, as the anchor reports it (informational)
        a_wall, a_w = median_of(runs.get("aiida", []), lambda r: r.record.get("import_wall_median_s"))
        p_wall, p_w = median_of(runs.get("plait", []), lambda r: r.record.get("import_wall_median_s"))
        a_w = [v for r in runs.get("aiida", []) if r.record for v in r.record.get("import_wall_s", [])]
        p_w = [v for r in runs.get("plait", []) if r.record for v in r.record.get("import_wall_s", [])]
        a_py, _ = median_of(runs.get("aiida", []), lambda r: r.record.get("python_startup_median_s"))
        p_py, _ = median_of(runs.get("plait", []), lambda r: r.record.get("python_startup_median_s"))
        published = anchor_median(anchors, sc.anchor_results, "import_wall_median_s")
        rows.append(
            {
                "scenario": "(e) wall of `python -c 'import X; from X import engine, orm'` (python -c pass: "
                f"aiida venv {fmt(a_py, 's')}, plait's python {fmt(p_py, 's')})",
                "key": "e_wall",
                "anchor": fmt(published, "s"),
                "aiida": fmt(a_wall, "s"),
                "plait": fmt(p_wall, "s"),
                "aiida_runs": a_w,
                "plait_runs": p_w,
                "ratio": "—" if not (a_wall and p_wall) else f"{a_wall / p_wall:.1f}x",
                "target": "— (no target)",
                "met": "—",
            }
        )
    if sc.rss_row:
        a_rss, a_r = median_of(runs.get("aiida", []), lambda r: r.maxrss_kib)
        p_rss, p_r = median_of(runs.get("plait", []), lambda r: r.maxrss_kib)
        published = anchor_median(anchors, sc.anchor_timev, "maxrss_kib")
        to_mib = lambda v: None if v is None else v / MiB  # noqa: E731
        met = None
        if sc.rss_target_mib is not None and p_rss is not None:
            met = p_rss / MiB <= sc.rss_target_mib
        rows.append(
            {
                "scenario": f"    peak RSS of that process ({'/usr/bin/time -v' if TIME else 'ru_maxrss'})",
                "key": f"{sc.key}_rss",
                "anchor": fmt(to_mib(published), "MiB"),
                "aiida": fmt(to_mib(a_rss), "MiB"),
                "plait": fmt(to_mib(p_rss), "MiB"),
                "aiida_runs": [round(v / MiB, 1) for v in a_r],
                "plait_runs": [round(v / MiB, 1) for v in p_r],
                "ratio": "—" if not (a_rss and p_rss) else f"{a_rss / p_rss:.1f}x less",
                "target": "— (no target)"
                if sc.rss_target_mib is None
                else f"plait ≤ {sc.rss_target_mib:.0f} MiB",
                "met": "—" if met is None else ("yes" if met else "**NO**"),
            }
        )
    return rows


def concurrent_row(run: Run | None, n: int) -> dict[str, Any]:
    label = f"(c) {n:,} concurrent `sleep 1` ShellJobs in one process (asyncio.gather of arun_get_node)"
    if run is None or run.record is None:
        text = "failed: " + (run.error if run else "not run")
        met = False
    else:
        r = run.record
        rss = run.maxrss_kib or r.get("peak_rss_kib_self")
        text = (
            f"{r['elapsed_s']:.1f} s wall, {r['jobs_per_s']:.1f} jobs/s, peak RSS {rss / MiB:.0f} MiB, "
            f"{r['finished_ok']}/{r['n']} finished ok, "
            f"longest loop stall {1000 * r['max_loop_stall_s']:.0f} ms "
            f"(longest GC pause {1000 * r.get('longest_gc_pause_s', 0):.0f} ms)"
        )
        met = bool(r.get("all_finished_ok"))
    return {
        "scenario": label,
        "key": "concurrent",
        "anchor": "— (no anchor)",
        "aiida": "—",
        "plait": text,
        "ratio": "—",
        "target": "all finished ok",
        "met": "yes" if met else "**NO**",
    }


def render(rows: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | aiida anchor (README) | aiida now (median) | plait now (median) | ratio | target "
        "| met? |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['anchor']} | {row['aiida']} | {row['plait']} | {row['ratio']} | "
            f"{row['target']} | {row['met']} |"
        )
    return "\n".join(lines)


def render_runs(rows: list[dict[str, Any]]) -> str:
    lines = ["| scenario | aiida runs | plait runs |", "|---|---|---|"]
    for row in rows:
        if "aiida_runs" in row:
            a = ", ".join(f"{v:g}" for v in row["aiida_runs"]) or "—"
            p = ", ".join(f"{v:g}" for v in row["plait_runs"]) or "—"
            lines.append(f"| {row['key']} | {a} | {p} |")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
    try:
        with open("/proc/meminfo") as handle:
            info["mem_gib"] = round(int(handle.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aiida-venv", default=os.environ.get("AIIDA_VENV"))
    parser.add_argument(
        "--aiida-home", default=os.environ.get("AIIDA_PATH"), help="AIIDA_PATH of the aiida config"
    )
    parser.add_argument("--aiida-profile", default=os.environ.get("AIIDA_PROFILE", "bench-nobroker"))
    parser.add_argument("--anchors", default=os.environ.get("AIIDA_ANCHORS", str(DEFAULT_ANCHORS)))
    parser.add_argument("--reps", type=int, default=int(os.environ.get("REPS", "3")))
    parser.add_argument("--concurrent-jobs", type=int, default=1000, help="jobs of the concurrency row")
    parser.add_argument(
        "--aiida-daemon-profile",
        default=os.environ.get("AIIDA_DAEMON_PROFILE", "bench-rmq"),
        help="aiida RabbitMQ profile of the daemon rows (created with `verdi presto` if missing)",
    )
    parser.add_argument("--submit-n", type=int, default=500, help="work chains of the submission-rate row")
    parser.add_argument("--parked-n", type=int, default=10000, help="parents of the parked-processes row")
    parser.add_argument(
        "--parked-during-n",
        type=int,
        default=2000,
        help="parents of the row with the daemon running during the submission (0: skip)",
    )
    parser.add_argument("--parked-timeout", type=float, default=3600, help="seconds for one parked run")
    parser.add_argument("--pause-samples", type=int, default=20)
    parser.add_argument("--plait-python", default=sys.executable)
    parser.add_argument("--plait-rev", default=None, help="benchmark this git revision of src/ (git archive)")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="SECTION",
        help=f"any of {' '.join(SECTIONS)} (also: b = all three b rows, d = daemon)",
    )
    parser.add_argument("--no-aiida", action="store_true", help="run plait only")
    args = parser.parse_args()

    wanted: list[str] = []
    for name in args.only or SECTIONS:
        for part in ALIASES.get(name, [name]):
            if part not in SECTIONS:
                parser.error(f"unknown section '{name}' (known: {' '.join(SECTIONS)})")
            wanted.append(part)
    anchors = Path(args.anchors).resolve()
    plait = Plait(args)
    aiida = None
    if args.no_aiida:
        log("aiida: not run (--no-aiida)")
    elif not args.aiida_venv:
        print(how_to_set_up_aiida(), file=sys.stderr)
    else:
        aiida = Aiida(args)
        problem = aiida.check()
        if problem:
            print(f"aiida cannot run: {problem}\n\n{how_to_set_up_aiida()}", file=sys.stderr)
            aiida = None

    info = machine()
    info["plait"] = f"{plait.version} from {plait.source}"
    info["aiida"] = (
        f"aiida-core {aiida.version} ({aiida.venv}, profile {aiida.profile})" if aiida else "not run"
    )
    info["reps"] = args.reps
    log(f"machine: {info}")
    started = time.perf_counter()

    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    if "base" in wanted and aiida is not None:
        log("machine baseline (the anchor's machine_baseline.py)")
        base = run_command(
            "aiida", "base", 1, aiida.script("machine_baseline.py", []), aiida.env, aiida.anchors
        )
        published = json.loads((anchors / "results" / "machine_baseline.jsonl").read_text().splitlines()[-1])
        if base.record:
            now = base.record
            notes.append(
                "machine baseline now / published: pure-Python loop "
                f"{now['cpu_loop_sum_sq_1e7_s']} s / {published['cpu_loop_sum_sq_1e7_s']} s, SQLite commit "
                f"(rollback journal) {now['sqlite_commit_ms_journal_delete']} ms / "
                f"{published['sqlite_commit_ms_journal_delete']} ms, "
                f"WAL {now['sqlite_commit_ms_journal_wal']} ms / "
                f"{published['sqlite_commit_ms_journal_wal']} ms"
            )

    for sc in scenarios(args):
        if sc.key not in wanted:
            continue
        runs: dict[str, list[Run]] = {"aiida": [], "plait": []}
        if aiida is not None:
            for setup in sc.aiida_setup:
                log(f"aiida setup: {' '.join(setup)}")
                out = aiida.setup(setup)
                notes.append(f"{sc.key}: aiida {out}")
        reps = sc.reps or args.reps
        for rep in range(1, reps + 1):
            if aiida is not None and sc.aiida_script:
                log(f"{sc.key} rep {rep}/{reps}: aiida")
                runs["aiida"].append(aiida.run(sc.key, rep, sc.aiida_script, sc.aiida_args))
            log(f"{sc.key} rep {rep}/{reps}: plait")
            runs["plait"].append(plait.run(sc.key, rep, sc.plait_script, sc.plait_args))
        if sc.key == "c":
            for engine in ("aiida", "plait"):
                good = [r.record for r in runs[engine] if r.record]
                if not good:
                    continue
                rec = good[-1]
                if engine == "aiida":
                    notes.append(
                        "c settings, aiida: minimum_job_poll_interval "
                        f"{rec.get('minimum_job_poll_interval')} s, "
                        f"safe_interval {rec.get('safe_interval')} s, "
                        f"use_login_shell {rec.get('use_login_shell')}"
                    )
                else:
                    notes.append(
                        f"c settings, plait: computer.options minimum_poll_interval "
                        f"{rec.get('minimum_poll_interval')} s, safe_interval {rec.get('safe_interval')} s, "
                        "commands through plain `bash -c` (no login shell); computer.options = "
                        f"{json.dumps(rec.get('computer_options'), sort_keys=True)}"
                    )
        rows.extend(scenario_rows(sc, runs, anchors))

    if "concurrent" in wanted:
        log(f"concurrent: {args.concurrent_jobs} ShellJobs (plait only, once)")
        run = plait.run("concurrent", 1, "bench_concurrent_jobs.py", ["-n", str(args.concurrent_jobs)])
        rows.append(concurrent_row(run, args.concurrent_jobs))

    if "daemon" in wanted:
        rows.extend(daemon_section(plait, aiida, anchors, args, notes))

    total = time.perf_counter() - started
    header = (
        f"plait vs aiida-core, {info['date']}, {info.get('os', '?')}, {info['nproc']} cores, "
        f"{info.get('mem_gib', '?')} GiB, Python {info['python']}; plait {info['plait']}; {info['aiida']}; "
        f"medians of {args.reps} interleaved runs (fresh interpreter each); "
        f"whole comparison {total / 60:.1f} min"
    )
    table = render(rows)
    text = f"{header}\n\n{table}\n\nRuns:\n\n{render_runs(rows)}\n"
    if notes:
        text += "\nNotes:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"compare-{stamp}.md").write_text(text)
    append_jsonl(
        "compare_summary.jsonl",
        {"timestamp": stamp, "machine": info, "rows": rows, "notes": notes, "total_s": round(total, 1)},
    )
    log(f"table written to {(RESULTS / f'compare-{stamp}.md').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
