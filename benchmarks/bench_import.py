"""(e) Import time of plait, in fresh interpreters: the same measures as the aiida anchor's bench_import.py.

The statement is ``import plait; from plait import engine, orm``.  Each measure runs 1 untimed warm-up
interpreter (page cache, .pyc) and then ``--reps`` timed ones; medians are reported.

  python_startup       wall time of ``python -c pass`` (baseline)
  import_wall          wall time of ``python -c '<statement>'``
  import_inproc        perf_counter around the statement inside the interpreter (the target: <= 0.15 s)
  import_load_profile  perf_counter around the statement + ``plait.load_profile()`` (lazy: reads the profile's
                       TOML, does not open the database; like aiida's ``load_profile``)
  import_open_storage  the same + ``plait.storage.get_backend()`` (opens the existing SQLite database;
                       no aiida counterpart in the anchor, reported for plait only)
  importtime_total     sum of the top-level "cumulative" entries of ``python -X importtime -c '<statement>'``

The profile is the default profile of a fresh scratch PLAIT_HOME, created before the timed runs.

    python3 benchmarks/bench_import.py [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import _common

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--reps", type=int, default=3)
_common.add_common_args(parser)
args = parser.parse_args()
name = f"e_import{args.tag}"
_common.fresh_home(name, args)

PY = sys.executable
STMT = "import plait; from plait import engine, orm"
ENV = dict(os.environ)  # carries PLAIT_HOME / PLAIT_PROFILE of the scratch profile


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=120, env=ENV)
    return time.perf_counter() - t0


def inproc(code: str) -> float:
    out = subprocess.run(
        [PY, "-c", code], check=True, capture_output=True, text=True, timeout=120, env=ENV
    ).stdout
    return float(out.strip().splitlines()[-1])


def importtime_total() -> float:
    err = subprocess.run(
        [PY, "-X", "importtime", "-c", STMT], check=True, capture_output=True, text=True, timeout=120, env=ENV
    ).stderr
    total_us = 0
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line[len("import time:") :].split("|")
        module = parts[2]
        # top-level imports have exactly one leading space; nested ones two more per level
        if module.startswith(" ") and not module.startswith("  "):
            total_us += int(parts[1])
    return total_us / 1e6


code_inproc = f"import time; t=time.perf_counter(); {STMT}; print(time.perf_counter()-t)"
code_profile = (
    f"import time; t=time.perf_counter(); {STMT}; plait.load_profile(); print(time.perf_counter()-t)"
)
code_storage = (
    f"import time; t=time.perf_counter(); {STMT}; plait.load_profile(); "
    "import plait.storage; plait.storage.get_backend(); print(time.perf_counter()-t)"
)

measures = {
    "python_startup": lambda: wall([PY, "-c", "pass"]),
    "import_wall": lambda: wall([PY, "-c", STMT]),
    "import_inproc": lambda: inproc(code_inproc),
    "import_load_profile": lambda: inproc(code_profile),
    "import_open_storage": lambda: inproc(code_storage),
    "importtime_total": importtime_total,
}

record: dict = {"reps": args.reps, "statement": STMT}
for key, fn in measures.items():
    fn()  # warm-up
    values = [fn() for _ in range(args.reps)]
    record[key + "_s"] = [round(v, 4) for v in values]
    record[key + "_median_s"] = round(statistics.median(values), 4)

_common.emit(name, record)
