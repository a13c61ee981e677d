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
