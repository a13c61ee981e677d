"""(q) Queries of a provenance graph, plait and aiida-core 2.9.4 side by side (issue 9).

The same graph is built in each engine through its ORM, storing nodes and links directly (no
process runs, so building is quick in both):

* N calcfunction nodes (default 10,000), ``process_label`` ``add``, each with two ``Int`` inputs,
  ``x`` (the value i) and ``y`` (1, or the result of the calculation before it: the calculations
  form chains of 3, so a chain's first input has descendants 6 links deep), and one ``Int``
  output ``result``;
* every 10th calculation failed (exit status 1) and has no output;
* the calculations are in 100 groups (``group-0`` ... ``group-99``);
* 90 % of the calculations were made three days ago (their ``ctime`` is moved back after
  building), so the last day holds 10 %.

Both graphs are built at the same time (aiida's in its own interpreter), then each query is timed
(the median of ``--reps`` runs, after one untimed run that checks the answer) with each engine's
``QueryBuilder``, one run at a time, alternately: plait, aiida, then aiida, plait, ... so that a
loaded machine slows both alike (``--engine plait`` times plait alone).  The queries are
written once for both, in the same words (aiida's ``attributes.process_state`` form, which plait
accepts too):

q1  the number of finished calcfunctions with exit status 0 and label ``add``
q2  the value of input ``x`` and of the output of those with ``x > 0.9 N`` (N/10 rows)
q3  every descendant of one chain's first input node (``with_ancestors``: 6 links deep)
q4  every node of one group, loaded (``project='*'``)
q5  the ``process list`` of the last day: pk, ctime, label, state, exit status, ordered by ctime

Every engine's answers are checked against what the graph must give.  Run::

    python3 benchmarks/bench_queries.py [-n 10000] [--reps 5]             # plait, then aiida
    python3 benchmarks/bench_queries.py --engine plait -n 1000000 [--postgres]   # plait alone

Above 100,000 nodes (or with ``--bulk``) plait's graph is written as rows (:func:`build_plait_bulk`),
since building a million calculations through the ORM takes hours; the queries see the same rows.
``--home DIR --reuse`` times a graph an earlier run built in ``DIR`` (SQLite) without building it
again.  After building, each engine's database is analysed (``ANALYZE``, as ``plait storage
maintain`` does for plait; the same statement on aiida's SQLite file), so both plan from
statistics; plait on PostgreSQL gets ``VACUUM ANALYZE``, as ``plait storage maintain`` gives it
(which also lets a count read an index alone); ``--no-analyze`` leaves both without.

aiida runs in the venv that ``benchmarks/setup_aiida.sh`` makes (``$AIIDA_VENV``, default
``/work/scratch/aiida-venv``), in a throw-away profile of its own (``verdi presto``,
core.sqlite_dos), deleted at exit.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHAIN = 3
FAILED_EVERY = 10
GROUPS = 100
OLD_FRACTION = 0.9
QUERIES = ("q1", "q2", "q3", "q4", "q5")


def expected(n: int) -> dict[str, int]:
    """What each query must answer for a graph of ``n`` calculations (row counts)."""
    ok = [i for i in range(n) if i % FAILED_EVERY != FAILED_EVERY - 1]
    threshold = int(0.9 * n)
    q2 = sum(1 for i in ok if i > threshold)
    in_group_7 = sum(1 for i in range(n) if i % GROUPS == 7)
    # q3: the descendants of the x input of calculation 0 (the head of chain 0): every calculation of
    # the chain and every output, until a failed one (which has no output) ends the chain early
    q3 = 0
    for i in range(CHAIN):
        q3 += 1  # the calculation
        if i % FAILED_EVERY == FAILED_EVERY - 1:
            break
        q3 += 1  # its output
    recent = n - int(OLD_FRACTION * n)
    return {"q1": len(ok), "q2": q2, "q3": q3, "q4": in_group_7, "q5": recent}


def run_queries(
    qb: Callable[[], Any],
    classes: dict[str, Any],
    n: int,
    head_pk: int,
    since: dt.datetime,
) -> dict[str, Callable[[], int]]:
    """The five queries, written once for both engines; each returns its row count."""
    Int, Calc, Group, Node, Process = (classes[k] for k in ("Int", "Calc", "Group", "Node", "Process"))
    threshold = int(0.9 * n)

    def q1() -> int:
        filters = {
            "attributes.process_state": "finished",
            "attributes.exit_status": 0,
            "attributes.process_label": "add",
        }
        return qb().append(Calc, filters=filters).count()

    def q2() -> int:
        q = qb()
        q.append(Int, tag="x", filters={"attributes.value": {">": threshold}}, project="attributes.value")
        q.append(Calc, tag="c", with_incoming="x", edge_filters={"label": "x"})
        q.append(Int, with_incoming="c", project="attributes.value")
        rows = q.all()
        assert all(out == x + 1 for x, out in rows), rows[:5]
        return len(rows)

    def q3() -> int:
        q = qb()
        q.append(Node, filters={"id": head_pk}, tag="head")
        q.append(Node, with_ancestors="head", project="id")
        return len(q.all(flat=True))

    def q4() -> int:
        q = qb()
        q.append(Group, filters={"label": "group-7"}, tag="g")
        q.append(Node, with_group="g", project="*")
        return len(q.all(flat=True))

    def q5() -> int:
        q = qb()
        projections = [
            "id",
            "ctime",
            "attributes.process_label",
            "attributes.process_state",
            "attributes.exit_status",
        ]
        q.append(Process, tag="p", filters={"ctime": {">": since}}, project=projections)
        q.order_by({"p": {"ctime": "asc"}})
        return len(q.all())

    return {"q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5}


def time_queries(queries: dict[str, Callable[[], int]], n: int, reps: int) -> dict[str, Any]:
    want = expected(n)
    out: dict[str, Any] = {}
    for name in QUERIES:
        got = queries[name]()  # warm-up, and the check
        assert got == want[name], f"{name}: {got} rows, expected {want[name]}"
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            queries[name]()
            times.append(time.perf_counter() - t0)
        out[name] = {"median_s": round(statistics.median(times), 5), "runs_s": [round(t, 5) for t in times]}
    return out


def check_queries(queries: dict[str, Callable[[], int]], n: int) -> None:
    """Run each query once (untimed: the warm-up) and check its row count."""
    want = expected(n)
    for name in QUERIES:
        got = queries[name]()
        assert got == want[name], f"{name}: {got} rows, expected {want[name]}"


def time_once(query: Callable[[], int]) -> float:
    t0 = time.perf_counter()
    query()
    return time.perf_counter() - t0


def interleave(
    queries: dict[str, Callable[[], int]], partner: subprocess.Popen[str], reps: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time plait's queries and the partner's (aiida, serving) one run at a time, alternately.

    Each repetition times every query once on each side; which side goes first alternates from
    one repetition to the next, so the machine's load falls on both alike.  Each side times its
    own call with ``perf_counter`` in its own process (the pipe is outside the timed region).
    """
    assert partner.stdin is not None and partner.stdout is not None
    ours: dict[str, list[float]] = {q: [] for q in QUERIES}
    theirs: dict[str, list[float]] = {q: [] for q in QUERIES}

    def ask(name: str) -> float:
        assert partner.stdin is not None and partner.stdout is not None
        partner.stdin.write(name + "\n")
        partner.stdin.flush()
        reply = partner.stdout.readline().split()
        assert reply[:2] == ["TIME", name], reply
        return float(reply[2])

    for rep in range(reps):
        for name in QUERIES:
            if rep % 2 == 0:
                ours[name].append(time_once(queries[name]))
                theirs[name].append(ask(name))
            else:
                theirs[name].append(ask(name))
                ours[name].append(time_once(queries[name]))
    return _summary(ours), _summary(theirs)


def _summary(times: dict[str, list[float]]) -> dict[str, Any]:
    return {
        q: {"median_s": round(statistics.median(t), 5), "runs_s": [round(x, 5) for x in t]}
        for q, t in times.items()
    }


def serve_queries(queries: dict[str, Callable[[], int]]) -> None:
    """The partner's side of :func:`interleave`: read a query name a line, answer ``TIME name s``."""
    for line in sys.stdin:
        name = line.strip()
        if name == "quit":
            return
        print(f"TIME {name} {time_once(queries[name]):.6f}", flush=True)


# -- plait ---------------------------------------------------------------------------------------------


def build_plait(n: int, batch: int = 5000) -> tuple[int, dt.datetime]:
    from sqlalchemy import update

    from plait.orm import CalcFunctionNode, Group, Int
    from plait.orm.node import store_nodes
    from plait.storage import get_backend
    from plait.storage.schema import nodes, processes

    backend = get_backend()
    groups = [Group(f"group-{g}").store() for g in range(GROUPS)]
    members: dict[int, list[Any]] = {g: [] for g in range(GROUPS)}
    head_pk = -1
    previous: Any = None  # the output of the calculation before, in the chain
    old_ids: list[int] = []
    old_count = int(OLD_FRACTION * n)
    for start in range(0, n, batch):
        indices = range(start, min(n, start + batch))
        xs = [Int(i) for i in indices]
        ys: list[Any] = []
        calcs = [CalcFunctionNode(label="add") for _ in indices]
        store_nodes(xs + calcs)
        results: list[Any] = []
        fresh_ys: list[Any] = []
        for i in indices:
            if i % CHAIN == 0 or previous is None:
                y = Int(1)
                fresh_ys.append(y)
            else:
                y = previous
            ys.append(y)
            failed = i % FAILED_EVERY == FAILED_EVERY - 1
            result = None if failed else Int(i + 1)
            results.append(result)
            previous = result
        store_nodes(fresh_ys + [r for r in results if r is not None])
        with backend.transaction():
            links = []
            for k, i in enumerate(indices):
                calc = calcs[k]
                failed = results[k] is None
                backend.insert_process(
                    {
                        "node_id": calc.pk,
                        "state": "finished",
                        "process_label": "add",
                        "exit_status": 1 if failed else 0,
                    }
                )
                links.append(
                    {"input_id": xs[k].pk, "output_id": calc.pk, "link_type": "input_calc", "label": "x"}
                )
                links.append(
                    {"input_id": ys[k].pk, "output_id": calc.pk, "link_type": "input_calc", "label": "y"}
                )
                if not failed:
                    links.append(
                        {
                            "input_id": calc.pk,
                            "output_id": results[k].pk,
                            "link_type": "create",
                            "label": "result",
                        }
                    )
                members[i % GROUPS].append(calc)
                if i < old_count:
                    old_ids.append(calc.pk)
                if i == 0:
                    head_pk = xs[k].pk
            backend.insert_links(links)
        # a chain that crosses a batch keeps its previous output
    for g, group in enumerate(groups):
        group.add_nodes(members[g])
    three_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    with backend.transaction() as conn:
        for start in range(0, len(old_ids), 900):
            chunk = old_ids[start : start + 900]
            conn.execute(update(nodes).where(nodes.c.id.in_(chunk)).values(ctime=three_days_ago))
            # the process rows repeat their node's ctime (written once; only this fabrication moves it)
            conn.execute(update(processes).where(processes.c.node_id.in_(chunk)).values(ctime=three_days_ago))
    return head_pk, dt.datetime.now(dt.UTC) - dt.timedelta(days=1)


def build_plait_bulk(n: int, batch: int = 20_000) -> tuple[int, dt.datetime]:
    """The same graph as :func:`build_plait`, written as rows through the backend's bulk inserts.

    For the large graphs (``-n 1000000``): node rows are made here (the ORM's row of a new ``Int``
    and of a new ``CalcFunctionNode``, with a content hash that is a plain SHA-256 of the value
    rather than the ORM's, which costs 50 us a node), process rows and group memberships go in
    as one ``executemany`` per batch, and the old calculations get their ``ctime`` as they are
    inserted.  The queries see the same tables, columns and values as after :func:`build_plait`.
    """
    import hashlib
    import uuid

    from sqlalchemy import insert

    from plait.orm import Group
    from plait.storage import get_backend
    from plait.storage.backend import utcnow
    from plait.storage.schema import group_nodes, processes

    backend = get_backend()
    group_pks = [Group(f"group-{g}").store().pk for g in range(GROUPS)]
    now = utcnow()
    three_days_ago = now - dt.timedelta(days=3)
    old_count = int(OLD_FRACTION * n)

    def node_row(node_type: str, attributes: dict[str, Any], when: dt.datetime, label: str = "") -> dict:
        digest = hashlib.sha256(f"{node_type}:{json.dumps(attributes, sort_keys=True)}".encode()).hexdigest()
        return {
            "uuid": str(uuid.uuid4()),
            "node_type": node_type,
            "process_type": None,
            "label": label,
            "description": "",
            "ctime": when,
            "mtime": when,
            "attributes": attributes,
            "extras": {},
            "files": {},
            "node_hash": digest,
            "computer_id": None,
        }

    def fresh_y(i: int) -> bool:  # as build_plait: a chain's head, or after a failed calculation
        return i % CHAIN == 0 or (i - 1) % FAILED_EVERY == FAILED_EVERY - 1

    def failed(i: int) -> bool:
        return i % FAILED_EVERY == FAILED_EVERY - 1

    head_pk = -1
    previous: int | None = None  # the pk of the output of the calculation before, in the chain
    for start in range(0, n, batch):
        indices = range(start, min(n, start + batch))
        rows: list[dict[str, Any]] = []  # per calculation: x, y (when fresh), itself, its result
        for i in indices:
            when = three_days_ago if i < old_count else now
            rows.append(node_row("data.core.int", {"value": i}, when))
            if fresh_y(i):
                rows.append(node_row("data.core.int", {"value": 1}, when))
            rows.append(node_row("process.calcfunction", {}, when, label="add"))
            if not failed(i):
                rows.append(node_row("data.core.int", {"value": i + 1}, when))
        with backend.transaction() as conn:
            pks = iter(backend.insert_nodes(rows))
            process_rows, link_rows, member_rows = [], [], []
            for i in indices:
                x = next(pks)
                y = next(pks) if fresh_y(i) else previous
                assert y is not None
                calc = next(pks)
                process_rows.append(
                    {
                        "node_id": calc,
                        "state": "finished",
                        "node_type": "process.calcfunction",
                        "ctime": three_days_ago if i < old_count else now,
                        "process_label": "add",
                        "exit_status": 1 if failed(i) else 0,
                        "mtime": now,
                    }
                )
                link_rows += [_link(x, calc, "input_calc", "x"), _link(y, calc, "input_calc", "y")]
                previous = None if failed(i) else next(pks)
                if previous is not None:
                    link_rows.append(_link(calc, previous, "create", "result"))
                member_rows.append({"group_id": group_pks[i % GROUPS], "node_id": calc})
                if i == 0:
                    head_pk = x
            conn.execute(insert(processes), process_rows)
            backend.insert_links(link_rows)
            conn.execute(insert(group_nodes), member_rows)
    return head_pk, dt.datetime.now(dt.UTC) - dt.timedelta(days=1)


def _link(source: int, target: int, kind: str, label: str) -> dict[str, Any]:
    return {"input_id": source, "output_id": target, "link_type": kind, "label": label}


def plait_main(args: argparse.Namespace, partner: Any = None) -> list[dict[str, Any]]:
    """Build plait's graph and time its queries: alone, or interleaved with ``partner`` (see
    :func:`start_aiida`), whose record then follows plait's."""
    import _common

    _common.fresh_home("q_queries", args)
    if args.postgres:
        url = _common.postgres_database(args.postgres_server)
        profile = f"bench-queries-pg-{os.getpid()}"
        from plait.storage.profile import create_profile

        create_profile(profile, broker_url="database", storage_url=url, make_default=False)
        os.environ["PLAIT_PROFILE"] = profile
    from plait.orm import CalcFunctionNode, Group, Int, Node, ProcessNode, QueryBuilder

    t0 = time.perf_counter()
    bulk = args.bulk if args.bulk is not None else args.n > 100_000
    marker = Path(os.environ["PLAIT_HOME"]) / "bench_queries_graph.json"
    reused = args.reuse and not args.postgres and marker.exists()
    if reused:
        built = json.loads(marker.read_text())
        if built["n"] != args.n:
            raise SystemExit(f"{marker} holds a graph of {built['n']:,} calculations, not {args.n:,}")
        head_pk, bulk = built["head_pk"], built["bulk"]
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        if dt.datetime.fromisoformat(built["built"]) < since:
            raise SystemExit(f"{marker}: the graph is more than a day old, its 'last day' has moved")
    else:
        head_pk, since = (build_plait_bulk if bulk else build_plait)(args.n)
        marker.write_text(
            json.dumps(
                {"n": args.n, "head_pk": head_pk, "bulk": bulk, "built": dt.datetime.now(dt.UTC).isoformat()}
            )
        )
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.analyze:
        from plait.storage import get_backend

        backend = get_backend()
        if backend.database.is_sqlite:
            backend.database.analyze()
        else:
            # as `plait storage maintain`: VACUUM ANALYZE, which also marks the freshly loaded pages
            # all-visible, so that a count can read an index alone (autovacuum would, later)
            backend.vacuum()
    analyze_s = time.perf_counter() - t0
    classes = {"Int": Int, "Calc": CalcFunctionNode, "Group": Group, "Node": Node, "Process": ProcessNode}
    queries = run_queries(QueryBuilder, classes, args.n, head_pk, since)
    aiida_record: dict[str, Any] | None = None
    if partner is None:
        timings = time_queries(queries, args.n, args.reps)
    else:
        check_queries(queries, args.n)
        aiida_record = wait_for_aiida(partner)
        timings, aiida_timings = interleave(queries, partner, args.reps)
        aiida_record.update({name: aiida_timings[name]["median_s"] for name in QUERIES}, runs=aiida_timings)
        stop_aiida(partner)
    record = {
        "engine": "plait",
        "storage": "postgresql" if args.postgres else "sqlite",
        "n": args.n,
        "build_s": round(build_s, 2),
        "analyze_s": round(analyze_s, 2) if args.analyze else None,
        "build": ("reused " if reused else "") + ("bulk rows" if bulk else "orm"),
        **{name: timings[name]["median_s"] for name in QUERIES},
        "runs": timings,
        "timing": "interleaved with aiida" if partner is not None else "alone",
    }
    return [record] if aiida_record is None else [record, aiida_record]


# -- aiida-core ----------------------------------------------------------------------------------------


def build_aiida(n: int) -> tuple[int, dt.datetime]:
    from aiida import orm
    from aiida.manage import get_manager

    groups = [orm.Group(label=f"group-{g}").store() for g in range(GROUPS)]
    members: dict[int, list[Any]] = {g: [] for g in range(GROUPS)}
    head_pk = -1
    previous: Any = None  # the output of the calculation before, in the chain
    old: list[int] = []
    old_count = int(OLD_FRACTION * n)
    storage = get_manager().get_profile_storage()
    for start in range(0, n, 1000):
        with storage.transaction():  # one commit per 1,000 calculations, as plait's batches
            for i in range(start, min(n, start + 1000)):
                x, calc, previous = _store_aiida_calculation(i, previous)
                members[i % GROUPS].append(calc)
                if i < old_count:
                    old.append(calc.pk)
                if i == 0:
                    head_pk = x.pk
    for g, group in enumerate(groups):
        group.add_nodes(members[g])
    model = type(orm.load_node(head_pk).backend_entity.bare_model)
    session = storage.get_session()
    three_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    for start in range(0, len(old), 900):
        rows = session.query(model).filter(model.id.in_(old[start : start + 900]))
        rows.update({model.ctime: three_days_ago}, synchronize_session=False)
    session.commit()
    return head_pk, dt.datetime.now(dt.UTC) - dt.timedelta(days=1)


def _store_aiida_calculation(i: int, previous: Any) -> tuple[Any, Any, Any]:
    """Calculation ``i`` with its inputs and output, through aiida's ORM: (x, calculation, output or None)."""
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.engine import ProcessState

    x = orm.Int(i).store()
    y = orm.Int(1).store() if (i % CHAIN == 0 or previous is None) else previous
    calc = orm.CalcFunctionNode()
    calc.set_process_label("add")
    calc.set_process_state(ProcessState.FINISHED)
    failed = i % FAILED_EVERY == FAILED_EVERY - 1
    calc.set_exit_status(1 if failed else 0)
    calc.base.links.add_incoming(x, LinkType.INPUT_CALC, "x")
    calc.base.links.add_incoming(y, LinkType.INPUT_CALC, "y")
    calc.store()
    if failed:
        return x, calc, None
    result = orm.Int(i + 1)
    result.base.links.add_incoming(calc, LinkType.CREATE, "result")
    result.store()
    return x, calc, result


def aiida_main(args: argparse.Namespace) -> dict[str, Any]:
    from aiida import load_profile, orm

    load_profile(args.aiida_profile)
    t0 = time.perf_counter()
    head_pk, since = build_aiida(args.n)
    build_s = time.perf_counter() - t0
    if args.analyze:
        from aiida.manage import get_manager
        from sqlalchemy import text

        session = get_manager().get_profile_storage().get_session()
        session.execute(text("ANALYZE"))
        session.commit()
    classes = {
        "Int": orm.Int,
        "Calc": orm.CalcFunctionNode,
        "Group": orm.Group,
        "Node": orm.Node,
        "Process": orm.ProcessNode,
    }
    queries = run_queries(orm.QueryBuilder, classes, args.n, head_pk, since)
    if args.serve:
        check_queries(queries, args.n)
        record = {"engine": "aiida", "storage": "core.sqlite_dos", "n": args.n, "build_s": round(build_s, 2)}
        print("READY " + json.dumps(record), flush=True)
        serve_queries(queries)
        return record
    timings = time_queries(queries, args.n, args.reps)
    return {
        "engine": "aiida",
        "storage": "core.sqlite_dos",
        "n": args.n,
        "build_s": round(build_s, 2),
        **{name: timings[name]["median_s"] for name in QUERIES},
        "runs": timings,
    }


def _aiida_environment() -> tuple[Path, Path, dict[str, str]]:
    venv = Path(os.environ.get("AIIDA_VENV", "/work/scratch/aiida-venv"))
    if not (venv / "bin" / "verdi").exists():
        raise SystemExit(f"no aiida venv at {venv}: run benchmarks/setup_aiida.sh first")
    import _common

    aiida_home = _common.aiida_home("aiida-queries-")
    env = {**os.environ, "AIIDA_PATH": str(aiida_home), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PLAIT_HOME", None)
    env.pop("PLAIT_PROFILE", None)
    return venv, aiida_home, env


def start_aiida(args: argparse.Namespace) -> subprocess.Popen[str]:
    """aiida in its venv, in a throw-away profile, building its graph while plait builds its own;
    it then serves its queries one run at a time (:func:`serve_queries`).  The profile's folder is
    deleted by :func:`stop_aiida` (and at exit)."""
    venv, aiida_home, env = _aiida_environment()
    atexit.register(shutil.rmtree, aiida_home, ignore_errors=True)
    profile = f"bench-queries-{os.getpid()}"
    subprocess.run(
        [str(venv / "bin" / "verdi"), "presto", "-n", "-p", profile, "--no-broker"],
        check=True,
        capture_output=True,
        env=env,
        timeout=600,
    )
    command = [str(venv / "bin" / "python"), __file__, "--engine", "aiida", "-n", str(args.n)]
    command += ["--aiida-profile", profile, "--serve", "--analyze" if args.analyze else "--no-analyze"]
    partner = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    atexit.register(partner.kill)
    return partner


def wait_for_aiida(partner: subprocess.Popen[str]) -> dict[str, Any]:
    assert partner.stdout is not None
    for line in partner.stdout:
        if line.startswith("READY "):
            return dict(json.loads(line[len("READY ") :]))
    raise SystemExit(f"aiida's side ended before it was ready (exit status {partner.wait()})")


def stop_aiida(partner: subprocess.Popen[str]) -> None:
    assert partner.stdin is not None
    partner.stdin.write("quit\n")
    partner.stdin.flush()
    partner.wait(timeout=120)


def run_aiida(args: argparse.Namespace) -> dict[str, Any]:
    """aiida in its venv, in a throw-away profile (``verdi presto``), deleted at the end."""
    venv = Path(os.environ.get("AIIDA_VENV", "/work/scratch/aiida-venv"))
    if not (venv / "bin" / "verdi").exists():
        raise SystemExit(f"no aiida venv at {venv}: run benchmarks/setup_aiida.sh first")
    import _common

    aiida_home = _common.aiida_home("aiida-queries-")
    env = {**os.environ, "AIIDA_PATH": str(aiida_home), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PLAIT_HOME", None)
    profile = f"bench-queries-{os.getpid()}"
    try:
        subprocess.run(
            [str(venv / "bin" / "verdi"), "presto", "-n", "-p", profile, "--no-broker"],
            check=True,
            capture_output=True,
            env=env,
            timeout=600,
        )
        done = subprocess.run(
            [
                str(venv / "bin" / "python"),
                __file__,
                "--engine",
                "aiida",
                "-n",
                str(args.n),
                "--reps",
                str(args.reps),
                "--aiida-profile",
                profile,
                "--analyze" if args.analyze else "--no-analyze",
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            timeout=7200,
        )
    finally:
        shutil.rmtree(aiida_home, ignore_errors=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("AIIDA ")][-1]
    return json.loads(line[len("AIIDA ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="calcfunction nodes (default 10,000)")
    parser.add_argument("--reps", type=int, default=5, help="timed runs of each query (the median is shown)")
    parser.add_argument("--engine", choices=("both", "plait", "aiida"), default="both")
    parser.add_argument("--postgres", action="store_true", help="plait on a PostgreSQL database of its own")
    parser.add_argument("--postgres-server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--bulk",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build plait's graph as bulk rows (build_plait_bulk); default: only above 100,000 nodes",
    )
    parser.add_argument(
        "--analyze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after building, refresh the planner's statistics of each engine's database (ANALYZE: "
        "plait's Database.analyze, and the same statement on aiida's SQLite file); default: on",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --home DIR (SQLite): time the graph an earlier run built in DIR (it leaves "
        "bench_queries_graph.json there) instead of building it again; plait alone",
    )
    parser.add_argument("--aiida-profile", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    if args_engine_is_aiida():
        args = parser.parse_args()
        print("AIIDA " + json.dumps(aiida_main(args)), flush=True)
        return
    sys.path.insert(0, str(HERE))
    import _common

    _common.add_common_args(parser)
    args = parser.parse_args()
    rows = []
    if args.engine == "both":
        rows += plait_main(args, partner=start_aiida(args))
    elif args.engine == "plait":
        rows += plait_main(args)
    else:
        rows.append(run_aiida(args))
    print(f"\n{args.n:,} calcfunction nodes; medians of {args.reps} runs (s)")
    print("engine   storage          build_s  " + "  ".join(f"{q:>9}" for q in QUERIES))
    for row in rows:
        cells = "  ".join(f"{row[q]:9.4f}" for q in QUERIES)
        print(f"{row['engine']:<8} {row['storage']:<16} {row['build_s']:7.1f}  {cells}")
    record: dict[str, Any] = {"n": args.n, "reps": args.reps, "rows": rows}
    if len(rows) == 2:
        ratios = {q: round(rows[1][q] / rows[0][q], 1) for q in QUERIES}
        record["aiida_over_plait"] = ratios
        print("aiida/plait" + " " * 28 + "  ".join(f"{ratios[q]:8.1f}x" for q in QUERIES))
    _common.emit("q_queries" + (args.tag or ""), record)


def args_engine_is_aiida() -> bool:
    """Whether this interpreter is aiida's side (started by :func:`start_aiida` or :func:`run_aiida`)."""
    return "--aiida-profile" in sys.argv


if __name__ == "__main__":
    main()
