"""The content-addressed file repository."""

from __future__ import annotations

import hashlib
import io

import pytest

from plait.storage.repository import FileRepository, ObjectNotFoundError


def test_put_get_dedupe_and_gc(tmp_path):
    repo = FileRepository(tmp_path)
    key = repo.put_bytes(b"hello")
    assert key == hashlib.sha256(b"hello").hexdigest()
    assert repo.put_stream(io.BytesIO(b"hello")) == key
    source = tmp_path / "f.bin"
    source.write_bytes(bytes(range(256)) * 5000)
    big = repo.put_file(source)
    assert repo.get_bytes(big) == source.read_bytes()
    assert sorted(repo.iter_keys()) == sorted([key, big])
    out = tmp_path / "out.bin"
    repo.copy_to(big, out)
    assert out.read_bytes() == source.read_bytes()
    assert repo.collect_garbage([big]) == 1
    assert not repo.has(key) and repo.has(big)
    with pytest.raises(ObjectNotFoundError):
        repo.get_bytes(key)


def test_a_failed_write_leaves_no_object(tmp_path):
    repo = FileRepository(tmp_path)

    class Broken(io.RawIOBase):
        def readinto(self, buffer):
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        repo.put_stream(Broken())
    assert list(repo.iter_keys()) == []
    assert not any(p.name.startswith(".incoming") for p in (tmp_path / "objects").iterdir())


# -- removing unreferenced objects without racing a node being stored --------------------------------


def _age(repo: FileRepository, key: str, seconds: float) -> None:
    """Make object ``key`` look last put ``seconds`` ago."""
    import os
    import time

    path = repo._path(key)
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_only_unreferenced_objects_older_than_the_cutoff_go(tmp_path):
    import time

    repo = FileRepository(tmp_path)
    old, new, used = repo.put_bytes(b"old"), repo.put_bytes(b"new"), repo.put_bytes(b"used")
    _age(repo, old, 7200)
    _age(repo, used, 7200)
    cutoff = time.time() - 3600
    dry = repo.remove_unreferenced(lambda: {used}, older_than=cutoff, dry_run=True)
    assert (dry.objects, dry.removed, dry.removed_bytes, dry.kept_recent) == (3, 1, 3, 1)
    assert repo.has(old)
    report = repo.remove_unreferenced(lambda: {used}, older_than=cutoff)
    assert (report.removed, report.kept_recent) == (1, 1)
    assert not repo.has(old) and repo.has(new) and repo.has(used)


def test_putting_existing_content_again_refreshes_it(tmp_path):
    import time

    repo = FileRepository(tmp_path)
    key = repo.put_bytes(b"content")
    _age(repo, key, 7200)
    assert repo.put_bytes(b"content") == key  # a node about to refer to it: the object is refreshed
    assert repo.remove_unreferenced(lambda: set(), older_than=time.time() - 3600).removed == 0
    _age(repo, key, 7200)
    assert repo.put_stream(io.BytesIO(b"content")) == key  # the same through a stream
    assert repo.remove_unreferenced(lambda: set(), older_than=time.time() - 3600).removed == 0
    assert repo.has(key)


def test_a_put_between_the_scan_and_the_removal_keeps_the_object(tmp_path):
    """The database is read after the scan; a put then (its node not committed yet) must win."""
    import time

    repo = FileRepository(tmp_path)
    key = repo.put_bytes(b"about to be used")
    _age(repo, key, 7200)

    def references_read_while_a_node_is_being_stored() -> set[str]:
        repo.put_bytes(b"about to be used")
        return set()

    report = repo.remove_unreferenced(
        references_read_while_a_node_is_being_stored, older_than=time.time() - 3600
    )
    assert report.removed == 0 and report.kept_recent == 1
    assert repo.get_bytes(key) == b"about to be used"


def test_a_put_right_after_the_object_was_set_aside_writes_it_anew(tmp_path, monkeypatch):
    import os
    import time

    from plait.storage import repository as module

    repo = FileRepository(tmp_path)
    key = repo.put_bytes(b"content")
    _age(repo, key, 7200)
    rename = os.rename

    def rename_then_put(source, target):
        rename(source, target)
        repo.put_bytes(b"content")  # finds no object under its name: writes it again

    monkeypatch.setattr(module.os, "rename", rename_then_put)
    repo.remove_unreferenced(lambda: set(), older_than=time.time() - 3600)
    monkeypatch.undo()
    assert repo.get_bytes(key) == b"content"


def test_leftovers_of_crashes_are_cleaned_up(tmp_path):
    import os
    import time

    repo = FileRepository(tmp_path)
    key = repo.put_bytes(b"content")
    objects = tmp_path / "objects"
    os.rename(repo._path(key), objects / f".trash-{key}")  # a maintenance run that died mid-removal
    (objects / ".incoming-old").write_bytes(b"half")
    (objects / ".incoming-new").write_bytes(b"being written")
    then = time.time() - 7200
    os.utime(objects / ".incoming-old", (then, then))
    report = repo.remove_unreferenced(lambda: {key}, older_than=time.time() - 3600)
    assert repo.get_bytes(key) == b"content"  # set aside, put back, and referenced: kept
    assert report.leftovers == 1
    assert not (objects / ".incoming-old").exists() and (objects / ".incoming-new").exists()
