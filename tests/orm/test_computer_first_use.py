"""Concurrent first use of ``localhost`` (and of any computer label): one row, no raw IntegrityError.

``Computer.get("localhost")`` creates the computer the first time a profile
needs it.  Several processes doing that at the same moment (a batch of
``plait run`` scripts, the daemon's workers starting) used to race between
"is it there?" and INSERT; the loser got sqlalchemy's IntegrityError on
``computers.label``.  Here real interpreters race on one profile, many
rounds, released together by a file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from plait.orm import Computer
from plait.storage import get_backend

RACERS = 6
ROUNDS = 8

#: one racer: opens the profile, then in each round waits for the go file and asks for localhost
RACER = r"""
import sys, time
from pathlib import Path

from plait.orm import Computer
from plait.storage import get_backend

folder, me, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
get_backend().list_computers()  # the profile is open: the race is on the computer row alone
for round_ in range(rounds):
    (folder / f"ready-{round_}-{me}").touch()
    go = folder / f"go-{round_}"
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit(f"racer {me}: no go for round {round_}")
        time.sleep(0.0002)
    pk = Computer.get("localhost").pk
    (folder / f"pk-{round_}-{me}").write_text(str(pk))
    (folder / f"pk-{round_}-{me}").rename(folder / f"done-{round_}-{me}")  # seen only once written
"""


def _wait_for_files(folder: Path, pattern: str, count: int, racers: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 120
    while len(list(folder.glob(pattern))) < count:
        dead = [r for r in racers if r.poll() is not None and r.returncode != 0]
        if dead:
            _, stderr = dead[0].communicate()
            pytest.fail(f"a racer failed (exit {dead[0].returncode}):\n{stderr}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {count} files {pattern}")
        time.sleep(0.005)


def _forget_localhost() -> None:
    from sqlalchemy import delete

    from plait.storage.schema import computers

    with get_backend().transaction() as conn:
        conn.execute(delete(computers).where(computers.c.label == Computer.LOCALHOST))


def test_processes_creating_localhost_at_once_all_get_the_same_row(any_profile, tmp_path):
    _forget_localhost()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(i), str(ROUNDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(RACERS)
    ]
    try:
        for round_ in range(ROUNDS):
            _wait_for_files(tmp_path, f"ready-{round_}-*", RACERS, racers)
            (tmp_path / f"go-{round_}").touch()
            _wait_for_files(tmp_path, f"done-{round_}-*", RACERS, racers)
            pks = {(tmp_path / f"done-{round_}-{i}").read_text() for i in range(RACERS)}
            rows = [c for c in get_backend().list_computers() if c["label"] == Computer.LOCALHOST]
            assert len(rows) == 1 and pks == {str(rows[0]["id"])}, (round_, pks, rows)
            _forget_localhost()  # the next round is a first use again
        for racer in racers:
            _, stderr = racer.communicate(timeout=60)
            assert racer.returncode == 0, stderr
            assert "IntegrityError" not in stderr
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()


def test_storing_a_taken_label_is_a_value_error_even_when_the_check_is_passed(any_profile, monkeypatch):
    """The label check and the INSERT are one atomic step: a lost race is the documented ValueError."""
    Computer("cluster", hostname="c1").store()
    backend = get_backend()
    monkeypatch.setattr(backend, "get_computer", lambda **_: None)  # as if another process just stored it
    with pytest.raises(ValueError, match="'cluster' exists already"):
        Computer("cluster", hostname="c2").store()
    monkeypatch.undo()
    assert backend.get_computer(label="cluster")["hostname"] == "c1"
