"""The battery: the real CLI against every bad input and fault the issues name.

Each case runs `python -m toolkit` and asserts: the expected non-zero exit code; exactly one stderr
line, naming the problem, and no traceback; every file that existed before byte-identical afterwards,
and no temp file left behind. One case of each kind (and every case that needs no torch) also runs
with --debug, at the same time, which must print the traceback and end in the same line. A count of
inputs tried and handled is printed at the end of the run.
"""

from __future__ import annotations

import gzip
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from faults import assert_untouched, fault_env, snapshot, temp_files
from helpers import DATA_DIR, assert_one_line_error, run_cli

from toolkit.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERRUPTED, EXIT_UNAVAILABLE

FAST_TRAIN = ("--train-limit", "256", "--epochs", "1", "--batch-size", "32", "--quiet", "--threads", "1")
QUICK_EVAL = ("--limit", "32", "--batch-sizes", "32", "--min-accuracy", "0", "--threads", "1")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass
class Tally:
    tried: int = 0
    handled: int = 0


TALLY = Tally()


class _Summary:
    """Prints the tally in pytest's terminal summary, after everything else ran."""

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.write_line(f"battery: {TALLY.tried} inputs tried, {TALLY.handled} handled")


@pytest.fixture(scope="module", autouse=True)
def battery_summary(request):
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("toolkit-battery-summary"):
        plugins.register(_Summary(), "toolkit-battery-summary")


def expect_failure(args, needles, code, watch, env=None, debug=True):
    """Run the case (and with --debug, concurrently); check the output and the watched directories."""
    TALLY.tried += 1
    before = snapshot(*watch)
    with ThreadPoolExecutor(max_workers=2) as pool:
        plain_future = pool.submit(run_cli, *args, env=env)
        debug_future = pool.submit(run_cli, "--debug", *args, env=env) if debug else None
        plain = plain_future.result()
        traced = debug_future.result() if debug_future else None
    line = assert_one_line_error(plain, *needles, code=code)
    if traced is not None:
        assert traced.returncode == code, (traced.returncode, traced.stderr[-2000:])
        assert "Traceback (most recent call last)" in traced.stderr, traced.stderr[-2000:]
        assert [ln for ln in traced.stderr.splitlines() if ln.strip()][-1] == line
    assert_untouched(before, *watch)
    TALLY.handled += 1
    return line


# --- inputs to corrupt --------------------------------------------------------------------------

def _random_bytes(n: int, seed: int = 6) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory, checkpoint, exported_dir):
    """A directory the toolkit wrote: checkpoint, fp32 ONNX derived from it, manifest."""
    from toolkit.files.store import write_artifact

    d = tmp_path_factory.mktemp("good")
    ckpt_bytes = checkpoint.read_bytes()
    onnx_bytes = (exported_dir / "mnist_cnn.fp32.onnx").read_bytes()
    write_artifact(d / "mnist_cnn.pt", lambda tmp: tmp.write_bytes(ckpt_bytes), kind="checkpoint")
    write_artifact(d / "mnist_cnn.fp32.onnx", lambda tmp: tmp.write_bytes(onnx_bytes), kind="onnx-fp32", parents=[d / "mnist_cnn.pt"])
    return d


@pytest.fixture
def workdir(tmp_path, good):
    """A private copy of `good` (a case may damage it)."""
    d = tmp_path / "artifacts"
    shutil.copytree(good, d)
    return d


# --- data files ---------------------------------------------------------------------------------

def _data_dir_with(tmp_path: Path, name: str, content: bytes | None, gz: bytes | None = None) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for n in MNIST_FILES:
        if n != name:
            (d / n).symlink_to(DATA_DIR / n)
    if content is not None:
        (d / name).write_bytes(content)
    if gz is not None:
        (d / f"{name}.gz").write_bytes(gz)
    return d


def _flip_one_pixel(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[16 + 28 * 14 + 14] ^= 0x01  # one pixel of the first image: a valid IDX file with the wrong content
    return bytes(b)


DATA_CASES = {
    "empty": lambda raw: (b"", None),
    "truncated": lambda raw: (raw[: len(raw) // 2], None),
    "random-bytes": lambda raw: (_random_bytes(len(raw)), None),
    "checksum-mismatch": lambda raw: (_flip_one_pixel(raw), None),
    "wrong-file": lambda raw: ((DATA_DIR / "train-labels-idx1-ubyte").read_bytes(), None),
    "corrupt-gzip": lambda raw: (None, gzip.compress(raw)[:-4096] + b"\0" * 64),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_data_file(case, tmp_path, data_dir):
    name = "t10k-images-idx3-ubyte"
    content, gz = DATA_CASES[case]((data_dir / name).read_bytes())
    d = _data_dir_with(tmp_path, name, content, gz)
    needle = "cannot read" if case == "corrupt-gzip" else "fails its checksum"
    expect_failure(["data", "--data-dir", d], [name, needle], EXIT_BAD_INPUT, [d])


def test_training_refuses_checksum_mismatched_data(tmp_path, data_dir, workdir):
    name = "train-labels-idx1-ubyte"
    d = _data_dir_with(tmp_path, name, _flip_one_pixel((data_dir / name).read_bytes()))
    expect_failure(["train", *FAST_TRAIN, "--data-dir", d, "--out", workdir / "mnist_cnn.pt"], [name, "checksum"], EXIT_BAD_INPUT, [d, workdir], debug=False)


def test_training_refuses_a_run_too_short_for_its_schedule(workdir):
    args = ["train", "--train-limit", "256", "--batch-size", "64", "--epochs", "1", "--quiet", "--out", workdir / "mnist_cnn.pt"]
    expect_failure(args, ["one-cycle", "4 batches"], EXIT_BAD_INPUT, [workdir], debug=False)


# --- checkpoints --------------------------------------------------------------------------------

def _torch_bytes(obj) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _state(raw: bytes) -> dict:
    import io

    import torch

    return torch.load(io.BytesIO(raw), weights_only=True)


def _with(raw: bytes, **changes) -> bytes:
    state = _state(raw)
    state.update(changes)
    return _torch_bytes(state)


def _nan_weights(raw: bytes) -> bytes:
    state = _state(raw)
    state["fc1.bias"][3] = float("nan")
    return _torch_bytes(state)


def _corrupt_pickle(raw: bytes) -> bytes:
    b = bytearray(raw)
    start = raw.index(b"data.pkl") + len(b"data.pkl")
    b[start + 64 : start + 96] = b"\xff" * 32  # inside the pickle that describes the tensors
    return bytes(b)


def _other_model() -> bytes:
    import torch

    return _torch_bytes(torch.nn.Linear(784, 10).state_dict())


CHECKPOINT_CASES = {
    # name: (make bytes from the good checkpoint's bytes, words the error line must contain)
    "empty": (lambda raw: b"", ["is empty"]),
    "truncated": (lambda raw: raw[: len(raw) // 2], ["not a readable PyTorch file"]),
    "random-bytes": (lambda raw: _random_bytes(len(raw)), ["corrupt or not a PyTorch checkpoint"]),
    "corrupt-pickle": (_corrupt_pickle, ["not a readable PyTorch file"]),
    "corrupt-zip-directory": (lambda raw: raw[:-120] + _random_bytes(120), ["not a readable PyTorch file"]),
    # found by test_fuzz: torch's own AssertionError when a tensor's metadata in the pickle is damaged
    "damaged-tensor-metadata": (lambda raw: raw.replace(b"h\n)R", b"h\nKR", 1), ["not a readable PyTorch file"]),
    "other-model": (lambda raw: _other_model(), ["not a state_dict of the seed CNN", "missing"]),
    "wrong-shapes": (lambda raw: _with(raw, **{"fc1.weight": _state(raw)["fc1.weight"][:, :100].clone()}), ["fc1.weight has shape"]),
    "integer-weights": (lambda raw: _with(raw, **{"fc1.bias": _state(raw)["fc1.bias"].long()}), ["expected a floating-point tensor"]),
    "nan-weights": (_nan_weights, ["NaN or Inf"]),
    "not-a-state-dict": (lambda raw: _torch_bytes(list(_state(raw).values())), ["is not a state_dict"]),
    "an-onnx-file": (None, ["corrupt or not a PyTorch checkpoint"]),
    "oversized": (None, ["too large"]),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_checkpoint_file(case, tmp_path, good, workdir):
    make, needles = CHECKPOINT_CASES[case]
    bad = tmp_path / "inputs" / "bad.pt"
    bad.parent.mkdir()
    if case == "an-onnx-file":
        shutil.copy(good / "mnist_cnn.fp32.onnx", bad)
    elif case == "oversized":
        _sparse_file(bad, 65 * 1024 * 1024)
    else:
        bad.write_bytes(make((good / "mnist_cnn.pt").read_bytes()))
    args = ["export", "--format", "onnx", "--precision", "fp32", "--checkpoint", bad, "--out", workdir]
    expect_failure(args, ["checkpoint", str(bad), *needles], EXIT_BAD_INPUT, [bad.parent, workdir], debug=case == "random-bytes")


def test_eval_refuses_a_bad_checkpoint(tmp_path, workdir):
    bad = tmp_path / "inputs" / "bad.pt"
    bad.parent.mkdir()
    bad.write_bytes(_random_bytes(4096))
    args = ["eval", "--backend", "onnxruntime", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", bad, "--artifacts", workdir, "--report-dir", tmp_path / "reports"]
    expect_failure(args, ["checkpoint", str(bad)], EXIT_BAD_INPUT, [bad.parent, workdir])


@pytest.mark.parametrize("case", ["random-bytes", "other-recipe", "damaged-state"])
def test_resume_refuses_a_bad_resume_state(case, tmp_path, workdir):
    out = workdir / "mnist_cnn.pt"
    resume = workdir / "mnist_cnn.pt.resume.pt"
    if case == "random-bytes":
        resume.write_bytes(_random_bytes(5000))
        needles = ["resume state", "unreadable"]
    else:
        from toolkit.train import TrainConfig

        recipe = TrainConfig(epochs=1, batch_size=32, train_limit=256).recipe()
        if case == "other-recipe":
            recipe["lr"] = 1.0
        resume.write_bytes(_torch_bytes({"recipe": recipe, "seed": 0, "epoch": 1, "model": {}, "history": []}))
        needles = ["resume state", "another recipe" if case == "other-recipe" else "incomplete or damaged"]
    expect_failure(["train", *FAST_TRAIN, "--out", out, "--resume"], needles, EXIT_BAD_INPUT, [workdir], debug=case == "damaged-state")


# --- ONNX files ---------------------------------------------------------------------------------

def _onnx_model(raw: bytes):
    import onnx

    return onnx.load_from_string(raw)


def _external_data_outside(raw: bytes) -> bytes:
    import onnx

    model = _onnx_model(raw)
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../../../../etc/passwd"), ("offset", "0"), ("length", "4096")):
        tensor.external_data.add(key=key, value=value)
    return model.SerializeToString()


def _custom_domain(raw: bytes) -> bytes:
    model = _onnx_model(raw)
    model.graph.node[0].domain = "com.example.evil"
    model.opset_import.add(domain="com.example.evil", version=1)
    return model.SerializeToString()


def _epcontext(raw: bytes) -> bytes:
    from onnx import helper

    model = _onnx_model(raw)
    node = helper.make_node("EPContext", ["input"], ["blob_out"], domain="com.microsoft", ep_cache_context="native code", embed_mode=1)
    model.graph.node.insert(0, node)
    model.opset_import.add(domain="com.microsoft", version=1)
    return model.SerializeToString()


def _flat_model(input_shape) -> bytes:
    """A different network: one MatMul from a flattened image to 10 logits, random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "other", [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], [weights, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _corrupt_onnx(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[8:40] = b"\xff" * 32  # inside the first fields of the ModelProto
    return bytes(b)


ONNX_CASES = {
    # name: (bytes from the good fp32 ONNX, words the error line must contain, exit code)
    # A file the checks refuse is bad input, refused before any work (exit 2) by eval and bench alike.
    "empty": (lambda raw: b"", ["is empty"], EXIT_BAD_INPUT),
    "truncated": (lambda raw: raw[: len(raw) // 2], ["not a valid ONNX file"], EXIT_BAD_INPUT),
    "random-bytes": (lambda raw: _random_bytes(len(raw)), ["not a valid ONNX file"], EXIT_BAD_INPUT),
    "corrupt-bytes": (_corrupt_onnx, ["not a valid ONNX file"], EXIT_BAD_INPUT),
    "external-data-outside-its-directory": (_external_data_outside, ["external data", "refusing"], EXIT_BAD_INPUT),
    "custom-operator-domain": (_custom_domain, ["custom operator domains", "refusing"], EXIT_BAD_INPUT),
    "epcontext-native-blob": (_epcontext, ["com.microsoft", "refusing"], EXIT_BAD_INPUT),
    "wrong-signature": (lambda raw: _flat_model(["batch", 784]), ["not this model's signature", "input shape"], EXIT_BAD_INPUT),
    # the right signature but another network: loads and runs, and the gate's verdict catches it
    "other-network-same-signature": (lambda raw: _flat_model(["batch", 1, 28, 28]), ["parity gate failed", "onnxruntime/fp32", "agreement"], EXIT_CHECK_FAILED),
    "a-checkpoint-file": (None, ["not a valid ONNX file"], EXIT_BAD_INPUT),
    "oversized": (None, ["byte limit"], EXIT_BAD_INPUT),
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_onnx_file(case, tmp_path, good, workdir):
    make, needles, code = ONNX_CASES[case]
    target = workdir / "mnist_cnn.fp32.onnx"
    if case == "a-checkpoint-file":
        shutil.copy(good / "mnist_cnn.pt", target)
    elif case == "oversized":
        target.unlink()
        _sparse_file(target, 17 * 1024 * 1024)
    else:
        target.write_bytes(make((good / "mnist_cnn.fp32.onnx").read_bytes()))
    args = ["eval", "--backend", "onnxruntime", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", good / "mnist_cnn.pt",
            "--artifacts", workdir, "--report-dir", tmp_path / "reports"]
    line = expect_failure(args, [*needles] + ([str(target)] if code == EXIT_BAD_INPUT else []), code, [workdir],
                          debug=case == "external-data-outside-its-directory")
    if code == EXIT_BAD_INPUT:
        assert not (tmp_path / "reports" / "parity.json").exists(), "refused before any work: no report"
        # the benchmark refuses the same file with the same line
        bench = run_cli("bench", "--quick", "--backend", "onnxruntime", "--precision", "fp32", "--no-direct",
                        "--checkpoint", good / "mnist_cnn.pt", "--artifacts", workdir, "--out", tmp_path / "bench")
        assert assert_one_line_error(bench, code=EXIT_BAD_INPUT) == line
        assert not (tmp_path / "bench" / "bench.json").exists()


def test_openvino_refuses_a_foreign_onnx_file(tmp_path, good, workdir):
    from toolkit.backends import registry

    if not registry.status("openvino").available:
        pytest.skip(registry.status("openvino").reason)
    (workdir / "mnist_cnn.fp32.onnx").write_bytes(_external_data_outside((good / "mnist_cnn.fp32.onnx").read_bytes()))
    args = ["eval", "--backend", "openvino", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", good / "mnist_cnn.pt",
            "--artifacts", workdir, "--report-dir", tmp_path / "reports"]
    expect_failure(args, ["mnist_cnn.fp32.onnx", "external data"], EXIT_BAD_INPUT, [workdir], debug=False)


# --- TensorRT engines and their sidecars (needs TensorRT and a GPU) ----------------------------

@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory, good):
    """The fp32 ONNX and an fp32 engine built from it by the toolkit, with its sidecar."""
    from toolkit.export.tensorrt import build_engine_from_checkpoint

    d = tmp_path_factory.mktemp("engines")
    shutil.copy(good / "mnist_cnn.pt", d / "mnist_cnn.pt")
    build_engine_from_checkpoint(d / "mnist_cnn.pt", "fp32", d)
    return d


def _sidecar_from_another_tensorrt(d: Path) -> None:
    import json

    side = d / "mnist_cnn.fp32.engine.json"
    record = json.loads(side.read_text())
    record["tensorrt_version"] = "1.0.0"
    side.write_text(json.dumps(record))


def _flip_last_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


ENGINE_CASES = {
    # name: (damage the directory, words the error line must contain)
    "empty-engine": (lambda d: (d / "mnist_cnn.fp32.engine").write_bytes(b""), "not the file its sidecar records"),
    "truncated-engine": (lambda d: (d / "mnist_cnn.fp32.engine").write_bytes((d / "mnist_cnn.fp32.engine").read_bytes()[:1000]), "not the file its sidecar records"),
    "random-byte-engine": (lambda d: (d / "mnist_cnn.fp32.engine").write_bytes(_random_bytes((d / "mnist_cnn.fp32.engine").stat().st_size)), "not the file its sidecar records"),
    "one-bit-changed-engine": (lambda d: _flip_last_bit(d / "mnist_cnn.fp32.engine"), "not the file its sidecar records"),
    "missing-sidecar": (lambda d: (d / "mnist_cnn.fp32.engine.json").unlink(), "no sidecar record"),
    "random-byte-sidecar": (lambda d: (d / "mnist_cnn.fp32.engine.json").write_bytes(_random_bytes(600)), "unreadable"),
    "sidecar-from-another-tensorrt": (_sidecar_from_another_tensorrt, "was built with TensorRT 1.0.0"),
    "onnx-changed-since-the-build": (lambda d: _flip_last_bit(d / "mnist_cnn.fp32.onnx"), "stale"),
}


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("case", sorted(ENGINE_CASES))
def test_engine_file(case, tmp_path, engine_dir):
    damage, needle = ENGINE_CASES[case]
    d = tmp_path / "engines"
    shutil.copytree(engine_dir, d)
    damage(d)
    args = ["eval", "--backend", "tensorrt", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", d / "mnist_cnn.pt",
            "--artifacts", d, "--report-dir", tmp_path / "reports"]
    expect_failure(args, ["mnist_cnn.fp32.engine", needle], EXIT_BAD_INPUT, [d], debug=case == "missing-sidecar")


# --- the manifest -------------------------------------------------------------------------------

MANIFEST_CASES = {
    "empty": lambda raw: b"",
    "truncated": lambda raw: raw[: len(raw) // 2],
    "random-bytes": lambda raw: _random_bytes(len(raw)),
    "not-a-manifest": lambda raw: b"[1, 2, 3]\n",
    "malformed-entry": lambda raw: b'{"version": 1, "artifacts": {"mnist_cnn.pt": {"sha256": 7}}}\n',
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_manifest_file_for_verify(case, workdir):
    manifest = workdir / "manifest.json"
    manifest.write_bytes(MANIFEST_CASES[case](manifest.read_bytes()))
    expect_failure(["verify", workdir], ["manifest", str(manifest)], EXIT_BAD_INPUT, [workdir])


@pytest.mark.parametrize("case", ["random-bytes", "malformed-entry"])
def test_manifest_file_stops_a_write_before_it_starts(case, tmp_path, workdir):
    manifest = workdir / "manifest.json"
    manifest.write_bytes(MANIFEST_CASES[case](manifest.read_bytes()))
    # another checkpoint, so an export that went ahead would replace the ONNX file with other bytes
    retrained = tmp_path / "inputs" / "retrained.pt"
    retrained.parent.mkdir()
    retrained.write_bytes(_with((workdir / "mnist_cnn.pt").read_bytes(), **{"fc1.bias": _state((workdir / "mnist_cnn.pt").read_bytes())["fc1.bias"] + 0.5}))
    args = ["export", "--format", "onnx", "--precision", "fp32", "--checkpoint", retrained, "--out", workdir]
    expect_failure(args, ["manifest", str(manifest)], EXIT_BAD_INPUT, [workdir, retrained.parent], debug=case == "random-bytes")


# --- an earlier benchmark report (toolkit bench --baseline) -------------------------------------

def _bench_json(**body) -> bytes:
    import json

    from toolkit.bench import SCHEMA, SCHEMA_VERSION

    return json.dumps({"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **body}).encode()


BASELINE_CASES = {
    "empty": (b"", "not a toolkit benchmark JSON"),
    "truncated": (_bench_json(cells=[], pairs=[])[:40], "not a toolkit benchmark JSON"),
    "random-bytes": (_random_bytes(2048), "not a toolkit benchmark JSON"),
    "another-json-file": (b'{"passed": true, "pairs": []}', "not a toolkit benchmark JSON"),
    "newer-schema": (_bench_json().replace(b'"schema_version": 1', b'"schema_version": 99'), "schema version 99"),
    # found by test_fuzz: a cell that is a list of strings got past the field checks
    "mangled-cells": (_bench_json(cells=[["abc"]]), "not a valid toolkit benchmark JSON"),
}


@pytest.mark.parametrize("case", sorted(BASELINE_CASES))
def test_benchmark_baseline_file(case, tmp_path, good):
    content, needle = BASELINE_CASES[case]
    baseline = tmp_path / "inputs" / "bench.json"
    baseline.parent.mkdir()
    baseline.write_bytes(content)
    out = tmp_path / "bench"
    args = ["bench", "--quick", "--quiet", "--backend", "onnxruntime", "--precision", "fp32", "--baseline", baseline,
            "--checkpoint", good / "mnist_cnn.pt", "--artifacts", good, "--out", out]
    expect_failure(args, [str(baseline), needle], EXIT_BAD_INPUT, [baseline.parent, good])
    assert not out.exists() or not any(out.iterdir()), "nothing may be written when the baseline is unusable"


# --- artifacts that changed since the toolkit wrote them (toolkit verify) -----------------------

def test_verify_names_a_missing_artifact(workdir):
    (workdir / "mnist_cnn.fp32.onnx").unlink()
    expect_failure(["verify", workdir], ["1 of 2", "mnist_cnn.fp32.onnx missing"], EXIT_CHECK_FAILED, [workdir])


def test_verify_names_a_changed_artifact(workdir):
    onnx_file = workdir / "mnist_cnn.fp32.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 0x01  # same size, one bit different
    onnx_file.write_bytes(bytes(data))
    expect_failure(["verify", workdir], ["mnist_cnn.fp32.onnx changed"], EXIT_CHECK_FAILED, [workdir])


def test_verify_names_an_artifact_derived_from_an_older_parent(workdir):
    from toolkit.files.checkpoint import load_state_dict, save_bytes
    from toolkit.files.store import write_artifact

    state = load_state_dict(workdir / "mnist_cnn.pt")
    state["fc1.bias"] = state["fc1.bias"] + 0.5  # a retrained checkpoint, recorded as the toolkit does
    write_artifact(workdir / "mnist_cnn.pt", lambda tmp: tmp.write_bytes(save_bytes(state)), kind="checkpoint")
    expect_failure(["verify", workdir], ["mnist_cnn.fp32.onnx stale"], EXIT_CHECK_FAILED, [workdir])


# --- output locations ---------------------------------------------------------------------------

def _fill(directory: Path) -> None:
    """Use up the tmpfs: keep one recorded artifact, then a filler file to the last byte."""
    from toolkit.files.store import write_text_artifact

    write_text_artifact(directory / "notes.md", "written before the disk filled up\n", kind="notes")
    with open(directory / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 1024)
        except OSError:
            pass


def test_train_into_an_unwritable_directory(readonly_dir, tmp_path):
    expect_failure(["train", *FAST_TRAIN, "--out", readonly_dir / "m.pt"], ["cannot write", str(readonly_dir)], EXIT_BAD_INPUT, [readonly_dir])


def test_export_into_an_unwritable_directory(readonly_dir, good):
    args = ["export", "--format", "onnx", "--precision", "fp32", "--checkpoint", good / "mnist_cnn.pt", "--out", readonly_dir]
    expect_failure(args, ["cannot write", str(readonly_dir)], EXIT_BAD_INPUT, [readonly_dir, good], debug=False)


def test_eval_reports_into_an_unwritable_directory(readonly_dir, good):
    args = ["eval", "--backend", "onnxruntime", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", good / "mnist_cnn.pt",
            "--artifacts", good, "--report-dir", readonly_dir]
    expect_failure(args, ["cannot write", str(readonly_dir)], EXIT_BAD_INPUT, [readonly_dir, good], debug=False)


def test_eval_reports_onto_a_read_only_file_system(readonly_dir, good):
    """A read-only mount is said as such: "permission denied" sends the user to chmod, which cannot help."""
    import os

    if not os.statvfs(readonly_dir).f_flag & os.ST_RDONLY:
        pytest.skip("no read-only mount here (needs root with mount rights): the directory is only chmod 500")
    args = ["eval", "--backend", "onnxruntime", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", good / "mnist_cnn.pt",
            "--artifacts", good, "--report-dir", readonly_dir]
    line = expect_failure(args, ["cannot write", str(readonly_dir), "read-only file system"], EXIT_BAD_INPUT, [good], debug=False)
    assert "permission denied" not in line


def _fifo(path: Path) -> None:
    import os

    os.mkfifo(path)


def _link_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize("make, kind", [(_fifo, "a FIFO"), (_link_to_dev_zero, "a character device (a symbolic link to /dev/zero)")])
@pytest.mark.parametrize("victim", ["mnist_cnn.pt", "mnist_cnn.fp32.onnx"])
def test_a_model_file_that_is_no_regular_file_is_said_so(make, kind, victim, tmp_path, good):
    """A FIFO or a link to /dev/zero exists: it is "not a regular file", never "missing" (and never read)."""
    d = tmp_path / "artifacts"
    shutil.copytree(good, d)
    (d / victim).unlink()
    make(d / victim)
    args = ["eval", "--backend", "onnxruntime", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", d / "mnist_cnn.pt",
            "--artifacts", d, "--report-dir", tmp_path / "reports"]
    line = expect_failure(args, [str(d / victim), f"is {kind}, not a regular file"], EXIT_BAD_INPUT, [], debug=False)
    assert "missing" not in line and "does not exist" not in line
    assert not (tmp_path / "reports" / "parity.json").exists()


def test_train_into_a_path_under_a_regular_file(tmp_path):
    blocker = tmp_path / "inputs" / "not-a-directory"
    blocker.parent.mkdir()
    blocker.write_text("a file where a directory should be\n")
    expect_failure(["train", *FAST_TRAIN, "--out", blocker / "m.pt"], ["is not a directory"], EXIT_BAD_INPUT, [blocker.parent], debug=False)


def test_train_into_a_full_disk(full_dir):
    _fill(full_dir)
    expect_failure(["train", *FAST_TRAIN, "--out", full_dir / "mnist_cnn.pt"], ["no space left", str(full_dir)], EXIT_BAD_INPUT, [full_dir])


def test_eval_reports_into_a_full_disk(full_dir, good):
    _fill(full_dir)
    args = ["eval", "--backend", "onnxruntime", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", good / "mnist_cnn.pt",
            "--artifacts", good, "--report-dir", full_dir]
    expect_failure(args, ["no space left", str(full_dir)], EXIT_BAD_INPUT, [full_dir, good], debug=False)


# --- missing optional dependencies --------------------------------------------------------------

@pytest.mark.parametrize(
    "hidden, command, needles",
    [
        ("openvino", ["eval", "--backend", "openvino"], ["openvino", "not installed"]),
        ("onnxruntime", ["eval", "--backend", "onnxruntime"], ["onnxruntime", "not installed"]),
        ("tensorrt", ["eval", "--backend", "tensorrt"], ["tensorrt", "not installed"]),
        ("onnxruntime", ["export", "--format", "onnx"], ["onnxruntime", "not installed"]),
        ("onnx", ["export", "--format", "onnx"], ["'onnx'", "not installed"]),
        ("tensorrt", ["export", "--format", "tensorrt"], ["tensorrt", "not installed"]),
    ],
    ids=["eval-openvino", "eval-onnxruntime", "eval-tensorrt", "export-onnx-without-onnxruntime", "export-onnx-without-onnx", "export-tensorrt"],
)
def test_missing_optional_dependency(hidden, command, needles, tmp_path, good, workdir):
    if command[0] == "eval":
        args = [*command, "--precision", "fp32", *QUICK_EVAL, "--checkpoint", good / "mnist_cnn.pt", "--artifacts", workdir, "--report-dir", tmp_path / "reports"]
    else:
        args = [*command, "--precision", "fp32", "--checkpoint", good / "mnist_cnn.pt", "--out", workdir]
    expect_failure(args, needles, EXIT_UNAVAILABLE, [workdir], env=fault_env(tmp_path, hide=(hidden,)), debug=hidden == "onnx")


# --- interrupted and failing writes -------------------------------------------------------------

@pytest.mark.parametrize("victim", ["mnist_cnn.pt", "manifest.json"])
def test_train_interrupted_while_writing(victim, tmp_path, workdir):
    """Ctrl-C at the last moment before the rename of the checkpoint, or of the manifest after it."""
    expect_failure(["train", *FAST_TRAIN, "--out", workdir / "mnist_cnn.pt"], ["interrupted"], EXIT_INTERRUPTED, [workdir],
                   env=fault_env(tmp_path, fault=f"interrupt:{victim}"), debug=victim == "manifest.json")


def test_eval_report_interrupted_while_writing(tmp_path, good):
    reports = tmp_path / "reports"
    reports.mkdir()
    args = ["eval", "--backend", "onnxruntime", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", good / "mnist_cnn.pt",
            "--artifacts", good, "--report-dir", reports]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    expect_failure(args, ["interrupted"], EXIT_INTERRUPTED, [reports, good], env=fault_env(tmp_path, fault="interrupt:parity.json"), debug=False)


def test_report_write_fails_with_an_io_error(tmp_path, good):
    reports = tmp_path / "reports"
    args = ["eval", "--backend", "onnxruntime", "--precision", "fp32", *QUICK_EVAL, "--checkpoint", good / "mnist_cnn.pt",
            "--artifacts", good, "--report-dir", reports]
    expect_failure(args, ["cannot write", "Input/output error"], EXIT_BAD_INPUT, [good], env=fault_env(tmp_path, fault="eio:parity.json"), debug=False)
    assert not temp_files(reports) and not (reports / "parity.json").exists()
