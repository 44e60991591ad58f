"""Artifacts under stress, with real toolkit processes: writers racing for the same file, a
checkpoint carrying code, training interrupted by SIGINT or SIGTERM, writers killed mid-write."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import assert_untouched, fault_env, snapshot, temp_files
from helpers import DATA_DIR, ROOT, assert_one_line_error, run_cli

from toolkit.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from toolkit.files.store import sha256_file

QUICK = ("--train-limit", "512", "--epochs", "1", "--batch-size", "32", "--quiet", "--threads", "1")


def _popen(*args, env=None):
    full_env = {**os.environ, "TOOLKIT_DATA_DIR": str(DATA_DIR), **(env or {})}
    full_env.pop("TOOLKIT_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit", *map(str, args)], cwd=ROOT, env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # A shell that starts jobs in the background ignores SIGINT in them; give the child the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _printed_sha_prefix(stdout: str) -> str:
    match = re.search(r"sha256 ([0-9a-f]{16})\.\.\.", stdout)
    assert match, stdout
    return match.group(1)


# --- concurrent writers -------------------------------------------------------------------------

def test_concurrent_writers_leave_complete_files_and_a_consistent_manifest(tmp_path):
    """Three `toolkit train` at once into one directory: two write the same checkpoint (different
    seeds, so different bytes), one another. Each waits for the others inside its checkpoint write
    (for a few seconds at most: under the lock they can't arrive), so without the lock all three would
    update the manifest from the same old copy and lose entries."""
    from toolkit.files.checkpoint import load_state_dict
    from toolkit.files.store import read_manifest

    out = tmp_path / "artifacts"
    out.mkdir()
    gate = tmp_path / "gate"
    gate.mkdir()
    runs = [_popen("train", *QUICK, "--seed", seed, "--out", out / name, env=fault_env(tmp_path, fault=f"gate:{name}:{gate}:3:2.5"))
            for seed, name in ((1, "m.pt"), (2, "m.pt"), (3, "other.pt"))]
    results = [(p, *p.communicate(timeout=300)) for p in runs]
    for proc, _, stderr in results:
        assert proc.returncode == 0, stderr
    same_file = {_printed_sha_prefix(stdout) for _, stdout, _ in results[:2]}
    assert len(same_file) == 2, "the two seeds should give different checkpoints"

    manifest = read_manifest(out)["artifacts"]
    assert set(manifest) == {"m.pt", "m.json", "other.pt", "other.json"}
    for name, entry in manifest.items():
        assert entry["sha256"] == sha256_file(out / name) and entry["size"] == (out / name).stat().st_size, name
    assert sha256_file(out / "m.pt")[:16] in same_file  # one writer's complete file, not a mix
    assert set(load_state_dict(out / "m.pt")) == set(load_state_dict(out / "other.pt"))
    json.loads((out / "m.json").read_text())
    assert not temp_files(out)
    assert len(list(gate.iterdir())) == 3  # every writer reached the gate


# --- a checkpoint with code in it ---------------------------------------------------------------

class _Payload:
    """Unpickling this runs exec(): it creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _malicious(path: Path, marker: Path, form: str) -> Path:
    import torch

    if form == "torch-zip":
        torch.save({"fc1.weight": _Payload(marker)}, path)
    else:  # a bare pickle: torch.load reads the legacy format too
        path.write_bytes(pickle.dumps({"fc1.weight": _Payload(marker)}, protocol=2))
    return path


@pytest.mark.parametrize("form", ["torch-zip", "bare-pickle"])
def test_payload_is_live_when_unpickled_without_protection(form, tmp_path):
    """The control for the test below: without weights_only the same file does run its code."""
    marker = tmp_path / "pwned"
    evil = _malicious(tmp_path / "evil.pt", marker, form)
    code = f"import torch; torch.load({str(evil)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert marker.exists()


@pytest.mark.parametrize("form", ["torch-zip", "bare-pickle"])
@pytest.mark.parametrize("command", ["export", "eval", "resume"])
def test_checkpoint_with_code_is_refused_and_never_run(form, command, tmp_path, checkpoint):
    marker = tmp_path / "pwned"
    out = tmp_path / "artifacts"
    out.mkdir()
    shutil.copy(checkpoint, out / "mnist_cnn.pt")
    before = snapshot(out)
    if command == "resume":
        evil = _malicious(out / "mnist_cnn.pt.resume.pt", marker, form)
        proc = run_cli("train", *QUICK, "--out", out / "mnist_cnn.pt", "--resume")
        needles = ["resume state", "Unsupported global"]
    else:
        evil = _malicious(tmp_path / "evil.pt", marker, form)
        args = (["export", "--checkpoint", evil, "--out", out] if command == "export" else
                ["eval", "--backend", "pytorch", "--checkpoint", evil, "--artifacts", out, "--report-dir", out, "--limit", "32"])
        proc = run_cli(*args)
        needles = [str(evil), "contains code or objects that are not plain tensors", "refusing", "Unsupported global"]
    assert_one_line_error(proc, *needles, code=EXIT_BAD_INPUT)
    assert "weights_only" not in proc.stderr  # no advice to load it the unsafe way
    assert not marker.exists(), "the pickle's code ran"
    assert_untouched(before, out)


# --- SIGINT / SIGTERM during training -----------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_training_keeps_the_previous_checkpoint_and_resumes(signum, tmp_path, checkpoint):
    import torch

    out = tmp_path / "artifacts"
    out.mkdir()
    target = out / "mnist_cnn.pt"
    shutil.copy(checkpoint, target)  # the previous checkpoint, which must survive
    before = snapshot(out)
    resume = out / "mnist_cnn.pt.resume.pt"
    args = ("train", "--train-limit", "2048", "--epochs", "2", "--batch-size", "64", "--quiet", "--threads", "1", "--out", target)

    proc = _popen(*args)
    deadline = time.monotonic() + 240
    while not resume.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert resume.exists(), "no resume state appeared after the first epoch"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, (proc.returncode, stderr)
    assert_one_line_error(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), "interrupted", code=EXIT_INTERRUPTED)
    assert sha256_file(target) == before[str(target)], "the previous checkpoint changed"
    assert_untouched(before, out)
    assert torch.load(resume, weights_only=True)["epoch"] == 1  # the last completed epoch

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((out / "mnist_cnn.json").read_text())
    assert record["resumed_from_epoch"] == 1
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert sha256_file(target) == record["checkpoint_sha256"] != before[str(target)]
    assert not resume.exists() and not temp_files(out)


# --- a writer killed mid-write ------------------------------------------------------------------

def test_temp_files_of_a_killed_writer_are_removed_by_the_next_run(tmp_path, checkpoint):
    """SIGKILL leaves no chance to clean up: the temp file stays until the next run in that
    directory removes it. The finished artifacts are untouched either way."""
    from toolkit.files.checkpoint import load_state_dict

    out = tmp_path / "artifacts"
    out.mkdir()
    shutil.copy(checkpoint, out / "mnist_cnn.pt")
    before = snapshot(out)
    leftover = out / ".tmp-mnist_cnn.pt.killed"
    leftover.write_bytes(b"half a checkpoint")
    proc = run_cli("train", *QUICK, "--out", out / "other.pt")
    assert proc.returncode == 0, proc.stderr
    assert not leftover.exists()
    assert_untouched(before, out)
    load_state_dict(out / "other.pt")


# --- toolkit verify on what the toolkit wrote ---------------------------------------------------

def test_verify_passes_on_intact_artifacts_and_names_each(tmp_path, checkpoint):
    from toolkit.files.store import write_artifact

    out = tmp_path / "artifacts"
    out.mkdir()
    ckpt = checkpoint.read_bytes()
    write_artifact(out / "mnist_cnn.pt", lambda tmp: tmp.write_bytes(ckpt), kind="checkpoint")
    write_artifact(out / "notes.md", lambda tmp: tmp.write_text("derived\n"), kind="notes", parents=[out / "mnist_cnn.pt"])
    before = snapshot(out)
    proc = run_cli("verify", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert re.search(r"mnist_cnn\.pt\s+checkpoint\s+OK", proc.stdout) and re.search(r"notes\.md\s+notes\s+OK", proc.stdout)
    assert "2 artifacts, all intact" in proc.stdout
    assert_untouched(before, out)


def test_an_interrupt_between_artifact_and_manifest_renames_waits_for_both(tmp_path, monkeypatch):
    """Ctrl-C right after the artifact's rename is held back until the manifest's rename is done."""
    from toolkit.files import store as artifacts

    real_replace = os.replace
    renamed = []

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        renamed.append(Path(dst).name)
        if len(renamed) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    artifacts.write_artifact(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"old"), kind="blob")
    monkeypatch.setattr(artifacts.os, "replace", replace_then_interrupt)
    # A shell that starts jobs in the background makes them ignore SIGINT; this test needs Python's default.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            artifacts.write_artifact(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"new"), kind="blob")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert renamed == ["a.bin", "manifest.json"]
    assert artifacts.read_manifest(tmp_path)["artifacts"]["a.bin"]["sha256"] == sha256_file(tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == b"new" and not temp_files(tmp_path)


def test_temp_files_of_a_killed_export_are_removed_when_that_file_is_written_again(tmp_path):
    from toolkit.files.store import write_artifact

    write_artifact(tmp_path / "model.onnx", lambda tmp: tmp.write_bytes(b"v1"), kind="blob")
    killed = [tmp_path / ".tmp-model.onnx.x1", tmp_path / ".tmp-manifest.json.x2"]
    unrelated = tmp_path / ".tmp-other.onnx.x3"  # another file: a plain atomic_write (no lock) may be writing it
    for p in [*killed, unrelated]:
        p.write_bytes(b"partial")
    write_artifact(tmp_path / "model.onnx", lambda tmp: tmp.write_bytes(b"v2"), kind="blob")
    assert not any(p.exists() for p in killed) and unrelated.exists()
    assert (tmp_path / "model.onnx").read_bytes() == b"v2"


@pytest.mark.parametrize("directory", ["artifacts/reference", "artifacts/reference/bench"])
def test_committed_artifacts_match_their_manifest(directory):
    """What the repository ships (checkpoint, exports, reference reports) is what its manifest says."""
    proc = run_cli("verify", ROOT / directory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 missing, 0 changed, 0 stale" in proc.stdout
