import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import assert_one_line_error, run_cli
from onnx import numpy_helper

from toolkit.errors import CheckFailed, InputError
from toolkit.export import onnx as onnx_export
from toolkit.export.quantize import calibration_batches, check_qdq_layout
from toolkit.files import paths
from toolkit.files.onnx_file import load_checked, metadata
from toolkit.files.store import read_manifest, sha256_file


@pytest.mark.parametrize("precision", paths.ONNX_PRECISIONS)
def test_exported_file_contract(exported_dir, checkpoint, precision):
    path = paths.onnx_path(precision, exported_dir)
    model = load_checked(path)  # checker, signature, no external data
    onnx.checker.check_model(str(path), full_check=True)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset >= 17
    meta = metadata(model)
    assert meta["precision"] == precision
    assert meta["source_checkpoint_sha256"] == sha256_file(checkpoint)
    assert meta["opset"] == str(opset)
    assert meta["toolkit_version"]
    entry = read_manifest(exported_dir)["artifacts"][path.name]
    assert entry["sha256"] == sha256_file(path) and entry["kind"] == f"onnx-{precision}"


@pytest.mark.parametrize("batch", [1, 7, 300])
@pytest.mark.parametrize("precision", paths.ONNX_PRECISIONS)
def test_dynamic_batch_runs(exported_dir, test_images, precision, batch):
    session = ort.InferenceSession(str(paths.onnx_path(precision, exported_dir)), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": test_images[0][:batch]})[0]
    assert out.shape == (batch, 10) and out.dtype == np.float32


def test_fp16_computes_in_half_with_float_edges(exported_dir):
    model = onnx.load(str(paths.onnx_path("fp16", exported_dir)))
    weights = [i for i in model.graph.initializer if len(i.dims) > 1]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    ops = [n.op_type for n in model.graph.node]
    assert ops[0] == "Cast" and ops[-1] == "Cast"


def test_int8_is_tensorrt_ready_qdq(exported_dir):
    model = onnx.load(str(paths.onnx_path("int8", exported_dir)))
    assert check_qdq_layout(model) == []
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 4 and "Conv" in ops
    inits = {i.name: i for i in model.graph.initializer}
    # Per-channel weights: the conv weight's scale has one value per output channel.
    conv_weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(inits[n.input[0]].dims) == 4]
    assert conv_weight_dq
    for node in conv_weight_dq:
        scale = numpy_helper.to_array(inits[node.input[1]])
        assert scale.ndim == 1 and scale.size == inits[node.input[0]].dims[0]
    # Biases stay float: Conv/Gemm bias inputs are float initializers, not DequantizeLinear outputs.
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) == 3:
            assert node.input[2] in inits and inits[node.input[2]].data_type == onnx.TensorProto.FLOAT


def test_calibration_uses_training_images_only(data_dir):
    from toolkit.data import load_split_uint8, to_model_input

    batches = calibration_batches(data_dir, count=200, batch_size=50)
    calib = np.concatenate(batches)
    assert calib.shape == (200, 1, 28, 28)
    train = to_model_input(load_split_uint8("train", data_dir)[0])
    test = to_model_input(load_split_uint8("test", data_dir)[0])
    train_rows = {r.tobytes() for r in train.reshape(len(train), -1)}
    test_rows = {r.tobytes() for r in test.reshape(len(test), -1)}
    calib_rows = [r.tobytes() for r in calib.reshape(len(calib), -1)]
    assert all(r in train_rows for r in calib_rows)
    assert sum(r in test_rows for r in calib_rows) == 0


def test_export_fails_and_writes_nothing_when_check_fails(tmp_path, checkpoint, data_dir, monkeypatch):
    tight = dict(onnx_export.EXPORT_TOLERANCES)
    tight["fp16"] = onnx_export.ExportTolerance(max_abs_logit=1e-9, min_agreement=1.0)
    monkeypatch.setattr(onnx_export, "EXPORT_TOLERANCES", tight)
    with pytest.raises(CheckFailed, match="nothing written"):
        onnx_export.export_onnx(checkpoint, "fp16", tmp_path, data_dir=data_dir)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".tmp-*"))


def test_export_cli_writes_file(tmp_path, checkpoint):
    proc = run_cli("export", "--format", "onnx", "--precision", "fp32", "--checkpoint", checkpoint, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mnist_cnn.fp32.onnx").is_file()
    assert "max |Δlogit|" in proc.stdout


@pytest.mark.parametrize(
    "args, needle, code",
    [
        (["--checkpoint", "/nonexistent/m.pt"], "does not exist", 2),
        (["--precision", "fp8"], "fp8", 2),
        (["--format", "tflite"], "tflite", 2),
    ],
)
def test_export_bad_input(tmp_path, args, needle, code):
    proc = run_cli("export", "--out", tmp_path, *args)
    assert_one_line_error(proc, needle, code=code)
    assert not list(tmp_path.iterdir())


def test_export_into_unwritable_dir(readonly_dir, checkpoint):
    proc = run_cli("export", "--checkpoint", checkpoint, "--out", readonly_dir)
    assert_one_line_error(proc, "cannot write", code=2)


def test_export_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    proc = run_cli("export", "--checkpoint", bad, "--out", tmp_path)
    assert_one_line_error(proc, "checkpoint", code=2)
    assert not list(tmp_path.glob("*.onnx"))


@pytest.mark.parametrize("shift, fp32_passes", [(1e-3, False), (3e-4, False), (2e-5, True)])
def test_fp32_export_check_holds_its_1e_4_tolerance(exported_dir, checkpoint, data_dir, shift, fp32_passes):
    # The exported fp32 file against a PyTorch reference whose every logit is moved by `shift`
    # (the fc1 bias): agreement stays 100%, so only the max |dlogit| limit (1e-4) decides.
    import copy

    import torch

    from toolkit.files.checkpoint import load_model

    fp32_bytes = (exported_dir / "mnist_cnn.fp32.onnx").read_bytes()
    reference = copy.deepcopy(load_model(checkpoint))
    with torch.no_grad():
        reference.fc1.bias += shift
    images = onnx_export.check_images(data_dir, count=64)
    check = onnx_export.check_against_pytorch(fp32_bytes, reference, "fp32", images)
    assert check.agreement == 1.0
    assert check.max_abs_logit == pytest.approx(shift, abs=2e-5)
    assert check.passed == fp32_passes
    # the same gap is well inside fp16's tolerance: the fp32 row is the tight one
    assert onnx_export.check_against_pytorch(fp32_bytes, reference, "fp16", images).passed


def test_export_creates_a_missing_output_directory(tmp_path, checkpoint):
    out = tmp_path / "new" / "dir"
    proc = run_cli("export", "--format", "onnx", "--precision", "fp32", "--checkpoint", checkpoint, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "mnist_cnn.fp32.onnx").is_file() and "mnist_cnn.fp32.onnx" in read_manifest(out)["artifacts"]


def test_export_refuses_before_creating_anything_and_when_creation_fails(tmp_path, checkpoint):
    from toolkit.errors import CheckpointError, OutputError

    with pytest.raises(CheckpointError):
        onnx_export.export_onnx(tmp_path / "missing.pt", "fp32", tmp_path / "new")
    with pytest.raises(InputError, match="fp8"):
        onnx_export.export_onnx(checkpoint, "fp8", tmp_path / "new")
    assert not (tmp_path / "new").exists()  # a refused command leaves no empty directory behind
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create directory"):
        onnx_export.export_onnx(checkpoint, "fp32", blocker / "sub")
