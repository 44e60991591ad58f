"""toolkit.files.verify in-process: each verdict (ok, missing, changed, stale) from the manifest the
store writes, and a reader that waits for a writer's lock. The CLI's one-line errors and exit codes
are in test_battery.py."""

import threading
import time

import pytest

from toolkit.errors import InputError
from toolkit.files.store import directory_lock, write_artifact
from toolkit.files.verify import CHANGED, MISSING, OK, STALE, verify_directory


def _write(path, data: bytes, parents=None):
    return write_artifact(path, lambda tmp: tmp.write_bytes(data), kind="blob", parents=parents)


def _statuses(directory):
    return {a.name: a.status for a in verify_directory(directory).artifacts}


def test_each_verdict_from_what_the_store_recorded(tmp_path):
    parent = _write(tmp_path / "model.pt", b"weights")
    _write(tmp_path / "model.onnx", b"graph", parents=[parent])
    _write(tmp_path / "other.bin", b"x")
    report = verify_directory(tmp_path)
    assert report.passed and _statuses(tmp_path) == {"model.pt": OK, "model.onnx": OK, "other.bin": OK}

    parent.write_bytes(b"retrained")  # the parent changed: it is "changed", its child "stale"
    (tmp_path / "other.bin").unlink()
    statuses = _statuses(tmp_path)
    assert statuses == {"model.pt": CHANGED, "model.onnx": STALE, "other.bin": MISSING}
    report = verify_directory(tmp_path)
    assert not report.passed and report.counts() == {OK: 0, MISSING: 1, CHANGED: 1, STALE: 1}
    stale = next(a for a in report.artifacts if a.status == STALE)
    assert "parent model.pt changed since" in stale.detail


def test_same_size_different_bytes_is_changed(tmp_path):
    _write(tmp_path / "a.bin", b"aaaa")
    (tmp_path / "a.bin").write_bytes(b"bbbb")
    (check,) = verify_directory(tmp_path).artifacts
    assert check.status == CHANGED and "sha256" in check.detail


def test_a_directory_without_a_manifest_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="nothing to verify"):
        verify_directory(tmp_path)
    with pytest.raises(InputError, match="not a directory"):
        verify_directory(tmp_path / "absent")


def test_verify_waits_for_a_writer_holding_the_lock(tmp_path):
    _write(tmp_path / "a.bin", b"v1")
    done = []
    with directory_lock(tmp_path):
        reader = threading.Thread(target=lambda: done.append(verify_directory(tmp_path).passed))
        reader.start()
        time.sleep(0.3)
        assert not done, "verify read the directory while a writer held its lock"
    reader.join(10)
    assert done == [True]
