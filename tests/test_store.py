"""toolkit.files.store in-process: atomic writes (with and without a manifest entry), the manifest,
the directory lock and stale temp files. Fast; the CLI-level faults (kill, ENOSPC, EIO, concurrent
processes) are in test_artifacts.py and test_battery.py."""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import math
import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from toolkit.errors import OutputError
from toolkit.files import store


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(store.TEMP_PREFIX))


# --- atomic writes without a manifest entry -----------------------------------------------------

def test_atomic_write_replaces_the_file_whole_with_the_usual_mode(tmp_path):
    target = tmp_path / "report.md"
    store.atomic_write_text(target, "first\n")
    store.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert mode_of(target) == 0o644  # not mkstemp's 0600
    assert leftovers(tmp_path) == []
    assert not (tmp_path / store.MANIFEST_NAME).exists()  # the plain path records nothing


def test_atomic_write_keeps_a_requested_mode(tmp_path):
    store.atomic_write(tmp_path / "secret", lambda tmp: tmp.write_text("x"), mode=0o600)
    assert mode_of(tmp_path / "secret") == 0o600


def test_atomic_write_json_is_indented_json(tmp_path):
    store.atomic_write_json(tmp_path / "a.json", {"b": [1, 2], "a": None})
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text) == {"b": [1, 2], "a": None}
    assert text == json.dumps({"b": [1, 2], "a": None}, indent=2) + "\n"


@pytest.mark.parametrize("failure", [OSError(errno.EIO, "I/O error"), KeyboardInterrupt(), ValueError("bug")])
def test_a_write_that_fails_leaves_the_previous_file_and_no_temp(tmp_path, failure):
    target = tmp_path / "model.onnx"
    store.atomic_write_bytes(target, b"previous")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise failure

    expected = OutputError if isinstance(failure, OSError) else type(failure)
    with pytest.raises(expected):
        store.atomic_write(target, write)
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_a_failed_rename_is_an_output_error_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    store.atomic_write_bytes(target, b"previous")

    def no_space(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "replace", no_space)
    with pytest.raises(OutputError, match="no space left"):
        store.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("err, words", [(errno.ENOSPC, "no space left"), (errno.EACCES, "cannot write to"),
                                        (errno.EROFS, "cannot write to"), (errno.ENOENT, "does not exist"),
                                        (errno.EIO, "cannot write")])
def test_os_errors_become_one_output_error_each(tmp_path, err, words):
    exc = store._describe_os_error(OSError(err, os.strerror(err)), tmp_path / "f")
    assert isinstance(exc, OutputError) and words in str(exc)


def test_atomic_write_into_a_missing_directory_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        store.atomic_write_text(tmp_path / "missing" / "f.txt", "x")


# --- artifacts and the manifest -----------------------------------------------------------------

def test_write_artifact_records_hash_size_kind_and_parents(tmp_path):
    parent = tmp_path / "mnist_cnn.pt"
    store.atomic_write_bytes(parent, b"weights")
    target = store.write_artifact(tmp_path / "m.onnx", lambda tmp: tmp.write_bytes(b"onnx bytes"), kind="onnx-fp32",
                                  parents=[parent, tmp_path / "gone.pt"], extra={"precision": "fp32"})
    assert target == tmp_path / "m.onnx" and target.read_bytes() == b"onnx bytes"
    entry = store.read_manifest(tmp_path)["artifacts"]["m.onnx"]
    assert entry["kind"] == "onnx-fp32" and entry["precision"] == "fp32"
    assert entry["sha256"] == store.sha256_bytes(b"onnx bytes") == store.sha256_file(target)
    assert entry["size"] == len(b"onnx bytes")
    assert entry["parents"] == {"mnist_cnn.pt": store.sha256_bytes(b"weights")}  # a missing parent is left out
    assert mode_of(target) == 0o644 and mode_of(tmp_path / store.MANIFEST_NAME) == 0o644
    assert leftovers(tmp_path) == []
    created = datetime.datetime.fromisoformat(entry["created"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()) < 600
    assert entry["command"] and entry["versions"]["toolkit"]


def test_rewriting_an_artifact_updates_its_entry_and_keeps_the_others(tmp_path):
    store.write_artifact(tmp_path / "a", lambda t: t.write_bytes(b"1"), kind="k")
    store.write_artifact(tmp_path / "b", lambda t: t.write_bytes(b"2"), kind="k")
    store.write_artifact(tmp_path / "a", lambda t: t.write_bytes(b"333"), kind="k")
    manifest = store.read_manifest(tmp_path)
    assert manifest["version"] == store.MANIFEST_VERSION
    assert set(manifest["artifacts"]) == {"a", "b"}
    assert manifest["artifacts"]["a"]["size"] == 3 and manifest["artifacts"]["b"]["size"] == 1


def test_a_failed_artifact_write_changes_neither_file_nor_manifest(tmp_path):
    store.write_artifact(tmp_path / "a", lambda t: t.write_bytes(b"old"), kind="k")
    before = (tmp_path / store.MANIFEST_NAME).read_bytes()

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError):
        store.write_artifact(tmp_path / "a", broken, kind="k")
    assert (tmp_path / "a").read_bytes() == b"old"
    assert (tmp_path / store.MANIFEST_NAME).read_bytes() == before
    assert leftovers(tmp_path) == []


def test_write_artifact_removes_temp_files_a_killed_writer_left(tmp_path):
    (tmp_path / f"{store.TEMP_PREFIX}a.abc123").write_bytes(b"killed mid-write")
    (tmp_path / f"{store.TEMP_PREFIX}{store.MANIFEST_NAME}.xyz").write_text("{")
    (tmp_path / f"{store.TEMP_PREFIX}other.q").write_bytes(b"another file's: not ours to remove")
    store.write_artifact(tmp_path / "a", lambda t: t.write_bytes(b"new"), kind="k")
    assert leftovers(tmp_path) == [f"{store.TEMP_PREFIX}other.q"]
    assert [p.name for p in store.clean_stale_temp_files(tmp_path)] == [f"{store.TEMP_PREFIX}other.q"]
    assert leftovers(tmp_path) == []
    assert store.clean_stale_temp_files(tmp_path / "nowhere") == []


@pytest.mark.parametrize("content, words", [
    ("{not json", "unreadable"),
    ("[]", "not a toolkit manifest"),
    ('{"artifacts": []}', "not a toolkit manifest"),
    ('{"artifacts": {"a": {"sha256": "x"}}}', "malformed entry"),
    ('{"artifacts": {"a": {"sha256": 1, "size": 1}}}', "malformed entry"),
    ('{"artifacts": {"a": {"sha256": "x", "size": "1"}}}', "malformed entry"),
    ('{"artifacts": {"a": {"sha256": "x", "size": 1, "parents": []}}}', "malformed entry"),
    ('{"artifacts": {"a": "entry"}}', "malformed entry"),
])
def test_a_damaged_manifest_is_refused_and_left_alone(tmp_path, content, words):
    (tmp_path / store.MANIFEST_NAME).write_text(content)
    with pytest.raises(OutputError, match=words):
        store.read_manifest(tmp_path)
    with pytest.raises(OutputError, match=words):
        store.write_artifact(tmp_path / "a", lambda t: t.write_bytes(b"x"), kind="k")
    assert not (tmp_path / "a").exists()
    assert (tmp_path / store.MANIFEST_NAME).read_text() == content


def test_a_missing_manifest_reads_as_empty(tmp_path):
    assert store.read_manifest(tmp_path) == {"version": store.MANIFEST_VERSION, "artifacts": {}}


def test_manifest_keys_are_relative_even_outside_the_directory(tmp_path):
    (tmp_path / "out").mkdir()
    assert store._manifest_key(tmp_path / "out" / "m.onnx", tmp_path / "out") == "m.onnx"
    assert store._manifest_key(tmp_path / "mnist_cnn.pt", tmp_path / "out") == os.path.join("..", "mnist_cnn.pt")


# --- output directories -----------------------------------------------------------------------

def test_check_writable_dir_creates_only_when_asked(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        store.check_writable_dir(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert store.check_writable_dir(tmp_path / "new" / "deeper", create=True) == tmp_path / "new" / "deeper"
    assert (tmp_path / "new" / "deeper").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        store.check_writable_dir(tmp_path / "file")
    with pytest.raises(OutputError, match="cannot create"):
        store.check_writable_dir(tmp_path / "file" / "sub", create=True)


# --- the lock -----------------------------------------------------------------------------------

def test_the_directory_lock_excludes_a_second_writer(tmp_path):
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait(5)
        with store.directory_lock(tmp_path):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with store.directory_lock(tmp_path):
        inside.set()
        time.sleep(0.3)  # the second writer is blocked on the lock meanwhile
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]


def test_a_reader_waits_for_a_writer_and_readers_share(tmp_path):
    order: list[str] = []
    inside = threading.Event()

    def reader() -> None:
        inside.wait(5)
        with store.directory_lock(tmp_path, shared=True):
            order.append("reader")

    thread = threading.Thread(target=reader)
    thread.start()
    with store.directory_lock(tmp_path):
        inside.set()
        time.sleep(0.3)
        order.append("writer")
    thread.join(5)
    assert order == ["writer", "reader"]
    with store.directory_lock(tmp_path, shared=True), store.directory_lock(tmp_path, shared=True):
        pass  # two readers at once do not block each other
    # a reader of a directory without a lock file (read-only media) reads it as it is
    with store.directory_lock(tmp_path / "elsewhere", shared=True):
        pass


# --- JSON ---------------------------------------------------------------------------------------

def test_json_text_inlines_only_the_named_keys_and_keeps_values():
    obj = {"cells": [{"samples_ns": [1, 2, 3], "median": 2.0, "bad": math.inf}], "path": Path("a/b")}
    text = store.json_text(obj, inline_keys=frozenset({"samples_ns"}))
    assert '"samples_ns": [1,2,3]' in text
    assert json.loads(text) == {"cells": [{"samples_ns": [1, 2, 3], "median": 2.0, "bad": None}], "path": "a/b"}
    assert store.json_text({"a": [1, 2]}) == json.dumps({"a": [1, 2]}, indent=2) + "\n"


def test_json_text_matches_json_dumps_at_every_depth():
    obj = {"a": [[1, 2], {"b": [3, {"c": []}]}], "d": {}, "e": {"f": [None, True, "x"]}}
    assert store.json_text(obj) == json.dumps(obj, indent=2) + "\n"


@dataclasses.dataclass
class _Row:
    name: str
    value: object


def test_to_jsonable_unpacks_dataclasses_numpy_scalars_and_paths():
    row = _Row("r", {"n": np.int64(3), "x": np.float32(0.5), "p": Path("a/b"), "t": (1, np.nan), "nested": _Row("s", None)})
    assert store.to_jsonable(row) == {"name": "r", "value": {"n": 3, "x": 0.5, "p": "a/b", "t": [1, None],
                                                             "nested": {"name": "s", "value": None}}}
    assert type(store.to_jsonable(np.int64(3))) is int
    assert store.to_jsonable(_Row) is _Row  # a class is not an instance: left alone


def test_json_and_text_artifacts_are_recorded_like_any_artifact(tmp_path):
    parent = tmp_path / "p.bin"
    store.atomic_write_bytes(parent, b"p")
    path = store.write_json_artifact(tmp_path / "r.json", {"samples_ns": [1, 2], "a": {"b": 1}}, kind="report",
                                     parents=[parent], inline_keys=frozenset({"samples_ns"}))
    assert '"samples_ns": [1,2]' in path.read_text() and json.loads(path.read_text())["a"] == {"b": 1}
    text = store.write_text_artifact(tmp_path / "r.md", "# report\n", kind="report-md", parents=[parent])
    assert text.read_text() == "# report\n"
    entries = store.read_manifest(tmp_path)["artifacts"]
    assert entries["r.json"]["kind"] == "report" and entries["r.md"]["kind"] == "report-md"
    assert entries["r.json"]["parents"] == entries["r.md"]["parents"] == {"p.bin": store.sha256_bytes(b"p")}
    assert entries["r.md"]["sha256"] == store.sha256_bytes(b"# report\n")


def test_a_manifest_without_a_version_gets_one_on_the_next_write(tmp_path):
    (tmp_path / store.MANIFEST_NAME).write_text('{"artifacts": {}}')
    store.write_artifact(tmp_path / "a", lambda t: t.write_bytes(b"x"), kind="k")
    assert store.read_manifest(tmp_path)["version"] == store.MANIFEST_VERSION


def test_the_temp_file_is_staged_beside_its_target_under_the_temp_prefix(tmp_path):
    # os.replace is atomic only within one filesystem: the temp file must live in the target's directory
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"x")

    store.atomic_write(tmp_path / "m.onnx", write)
    store.write_artifact(tmp_path / "e.engine", write, kind="k")
    for tmp, name in zip(seen, ("m.onnx", "e.engine"), strict=True):
        assert tmp.parent == tmp_path and tmp.name.startswith(f"{store.TEMP_PREFIX}{name}.")
    assert leftovers(tmp_path) == []


def test_a_read_only_directory_is_refused_before_any_work(readonly_dir):
    with pytest.raises(OutputError, match="cannot write to"):
        store.check_writable_dir(readonly_dir)


def test_a_tree_keeps_one_manifest_at_its_root(tmp_path):
    # a Triton model repository: files in subdirectories, one manifest (and lock) at the root
    sub = tmp_path / "mnist" / "1"
    sub.mkdir(parents=True)
    (sub / f"{store.TEMP_PREFIX}model.onnx.dead").write_bytes(b"a killed writer's")
    target = store.write_artifact(sub / "model.onnx", lambda t: t.write_bytes(b"m"), kind="triton-model", manifest_dir=tmp_path)
    assert target.read_bytes() == b"m" and leftovers(sub) == [] and leftovers(tmp_path) == []
    assert not (sub / store.MANIFEST_NAME).exists()
    entry = store.read_manifest(tmp_path)["artifacts"][os.path.join("mnist", "1", "model.onnx")]
    assert entry["kind"] == "triton-model" and entry["sha256"] == store.sha256_bytes(b"m")
    with pytest.raises(OutputError, match="does not exist"):
        store.write_artifact(tmp_path / "absent" / "x", lambda t: t.write_bytes(b"x"), kind="k", manifest_dir=tmp_path)
