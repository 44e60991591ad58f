import io
import json
import re
import sys

import pytest
import torch
from helpers import assert_one_line_error, run_cli

from toolkit.files.checkpoint import load_state_dict
from toolkit.files.store import sha256_file
from toolkit.train import TrainConfig, train


def _quick(tmp_path, data_dir, **kw):
    cfg = dict(epochs=1, batch_size=64, train_limit=2000, seed=7, device="cpu", data_dir=str(data_dir), out=str(tmp_path / "m.pt"))
    cfg.update(kw)
    return TrainConfig(**cfg)


def test_short_run_on_subset_writes_checkpoint_and_record(tmp_path, data_dir):
    result = train(_quick(tmp_path, data_dir), progress=False)
    assert (tmp_path / "m.pt").is_file()
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert record["seed"] == 7 and len(record["history"]) == 1
    assert record["recipe"]["batch_size"] == 64
    assert "torch" in record["versions"]
    assert record["checkpoint_sha256"] == result.checkpoint_sha256
    assert result.test_accuracy > 80.0  # 2,000 images, one epoch: well above chance
    assert set(load_state_dict(tmp_path / "m.pt")) == {"layer1.0.weight", "layer1.0.bias", "layer2.0.weight", "layer2.0.bias", "fc1.weight", "fc1.bias"}
    assert not list(tmp_path.glob(".tmp-*"))


def test_deterministic_on_cpu_for_a_seed(tmp_path, data_dir):
    a = train(_quick(tmp_path, data_dir, out=str(tmp_path / "a.pt")), progress=False)
    b = train(_quick(tmp_path, data_dir, out=str(tmp_path / "b.pt")), progress=False)
    sa, sb = load_state_dict(tmp_path / "a.pt"), load_state_dict(tmp_path / "b.pt")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the recorded hash is the written file's, and the same seed writes the same bytes
    assert a.checkpoint_sha256 == sha256_file(tmp_path / "a.pt")
    assert b.checkpoint_sha256 == sha256_file(tmp_path / "b.pt") == a.checkpoint_sha256
    assert a.test_accuracy == b.test_accuracy


def test_resume_continues_from_last_completed_epoch(tmp_path, data_dir):
    full = train(_quick(tmp_path, data_dir, epochs=2, out=str(tmp_path / "full.pt")), progress=False)
    # Simulate an interrupted run: keep the resume state written after epoch 1.
    cfg = _quick(tmp_path, data_dir, epochs=2, out=str(tmp_path / "part.pt"))
    import toolkit.train as tr

    real = tr.evaluate_accuracy
    calls = {"n": 0}

    def interrupt_after_first_epoch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    tr.evaluate_accuracy = interrupt_after_first_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, progress=False)
    finally:
        tr.evaluate_accuracy = real
    assert not (tmp_path / "part.pt").exists()
    assert (tmp_path / "part.pt.resume.pt").exists()
    cfg.resume = True
    resumed = train(cfg, progress=False)
    assert resumed.resumed_from_epoch == 1
    sf, sp = load_state_dict(tmp_path / "full.pt"), load_state_dict(tmp_path / "part.pt")
    assert all(torch.equal(sf[k], sp[k]) for k in sf), "resumed run must end with the same weights as an uninterrupted one"
    assert resumed.test_accuracy == full.test_accuracy
    assert not (tmp_path / "part.pt.resume.pt").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-3"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--threads", "-1"], "--threads"),
        (["--weight-decay", "-1"], "--weight-decay"),
    ],
)
def test_train_bad_input_is_one_line(args, needle):
    proc = run_cli("train", "--quiet", *args)
    assert_one_line_error(proc, needle, code=2)


def test_train_cuda_without_cuda_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli("train", "--quiet", "--device", "cuda", "--out", tmp_path / "m.pt")
    assert_one_line_error(proc, "cuda", code=3)
    assert not (tmp_path / "m.pt").exists()


def test_train_unwritable_output_dir(readonly_dir):
    proc = run_cli("train", "--quiet", "--out", readonly_dir / "m.pt")
    assert_one_line_error(proc, "cannot write", code=2)


@pytest.mark.slow
def test_full_default_training_reaches_99(tmp_path, data_dir):
    """The product's main claim: the default recipe on the real test set (a couple of minutes)."""
    result = train(TrainConfig(device="cpu", data_dir=str(data_dir), out=str(tmp_path / "full.pt")), progress=False)
    assert result.test_accuracy >= 99.0, result.history


FAST_CLI = ("--train-limit", "512", "--batch-size", "64", "--epochs", "1")


def test_train_creates_a_missing_output_directory(tmp_path):
    out = tmp_path / "new" / "dir" / "m.pt"
    proc = run_cli("train", *FAST_CLI, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and (out.parent / "manifest.json").is_file()
    # stderr is a pipe here: the epoch's one line on stdout, no progress-bar updates anywhere
    assert [ln.split(":")[0] for ln in proc.stdout.splitlines() if re.match(r"epoch \d+/\d+:", ln)] == ["epoch 1/1"]
    assert "\r" not in proc.stderr + proc.stdout and "step/s" not in proc.stderr


def test_train_refuses_an_output_directory_it_cannot_create(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_cli("train", "--quiet", *FAST_CLI, "--out", blocker / "sub" / "m.pt")
    assert_one_line_error(proc, "cannot create directory", code=2)
    assert blocker.read_text() == "not a directory"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log"])
def test_progress_bar_only_on_a_terminal_and_one_line_per_epoch(terminal, tmp_path, data_dir, monkeypatch):
    err, out = (_Terminal() if terminal else io.StringIO()), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    train(_quick(tmp_path, data_dir, epochs=2, train_limit=512), progress=True)
    epochs = [ln.split(":")[0] for ln in out.getvalue().splitlines() if re.match(r"epoch \d+/\d+:", ln)]
    assert epochs == ["epoch 1/2", "epoch 2/2"]
    if terminal:
        assert "\r" in err.getvalue() and "step" in err.getvalue()  # the live bar
    else:
        assert err.getvalue() == ""  # a log gets no bar updates at all
