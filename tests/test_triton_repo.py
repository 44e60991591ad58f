"""`toolkit export --format triton`: the model repository, its configs (parsed with Triton's own
schema), its manifest (tampering and staleness caught by `toolkit verify`), the Kubernetes manifest,
and the engines it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import REFERENCE, assert_one_line_error, run_cli

from toolkit.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED

pytest.importorskip("tritonclient", reason="the serve extra is not installed (pip install 'toolkit[serve]')")


@pytest.fixture
def artifacts(tmp_path) -> Path:
    art = tmp_path / "artifacts"
    art.mkdir()
    for name in ("mnist_cnn.pt", "mnist_cnn.fp32.onnx", "mnist_cnn.fp16.onnx", "mnist_cnn.int8.onnx", "mnist_cnn.int8-cpu.onnx"):
        shutil.copy2(REFERENCE / name, art / name)
    return art


def test_repository_layout_and_configs(artifacts):
    from toolkit.export.triton import export_triton, parse_config
    from toolkit.files.store import sha256_file

    result = export_triton(["fp32", "int8"], artifacts, max_batch=256, instances=2, queue_delay_us=50)
    repo = artifacts / "triton"
    assert result.directory == repo
    names = sorted(m.name for m in result.models)
    assert names == ["mnist_onnxruntime_fp32", "mnist_onnxruntime_int8", "mnist_openvino_fp32", "mnist_openvino_int8"]
    assert any("tensorrt/fp32: no engine" in s for s in result.skipped)
    for m in result.models:
        config = parse_config(m.config)
        assert config.name == m.name == m.config.parent.name
        assert config.max_batch_size == 256
        (inp,), (out,) = config.input, config.output
        assert (inp.name, list(inp.dims), out.name, list(out.dims)) == ("input", [1, 28, 28], "logits", [10])
        assert inp.data_type == out.data_type == 11  # TYPE_FP32
        assert config.dynamic_batching.max_queue_delay_microseconds == 50
        assert config.instance_group[0].count == 2
        if m.target == "onnxruntime":
            assert config.platform == "onnxruntime_onnx" and not config.backend
        else:
            assert config.backend == "openvino" and not config.platform
        assert config.default_model_filename == "model.onnx" and m.model == repo / m.name / "1" / "model.onnx"
        assert config.parameters["model_sha256"].string_value == sha256_file(m.model) == sha256_file(m.source)
        assert config.parameters["toolkit_precision"].string_value == m.precision
    entries = json.loads((repo / "manifest.json").read_text())["artifacts"]
    assert entries["mnist_onnxruntime_fp32/1/model.onnx"]["parents"] == {"../mnist_cnn.fp32.onnx": sha256_file(artifacts / "mnist_cnn.fp32.onnx")}
    assert "mnist_onnxruntime_fp32/1/model.onnx" in entries["mnist_onnxruntime_fp32/config.pbtxt"]["parents"]
    kube = (artifacts / "triton.kserve.yaml").read_text()
    for needle in ("kind: InferenceService", "protocolVersion: v2", "storageUri: STORAGE_URI", "name: triton"):
        assert needle in kube
    assert "nvidia.com/gpu" not in kube  # no TensorRT model, no GPU request


def test_verify_catches_tampering_and_stale_sources(artifacts):
    repo = artifacts / "triton"
    proc = run_cli("export", "--format", "triton", "--precision", "fp32", "--out", repo, "--artifacts", artifacts)
    assert proc.returncode == 0, proc.stderr
    assert "mnist_onnxruntime_fp32" in proc.stdout and "KServe" in proc.stdout
    assert run_cli("verify", repo).returncode == 0
    # An edited config (someone raises max_batch_size by hand) is "changed".
    config = repo / "mnist_openvino_fp32" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 1024", "max_batch_size: 4096"))
    proc = run_cli("verify", repo)
    assert proc.returncode == EXIT_CHECK_FAILED and "mnist_openvino_fp32/config.pbtxt changed" in proc.stderr
    # A swapped model file is "changed", and the config derived from it is "stale".
    shutil.copy2(artifacts / "mnist_cnn.int8.onnx", repo / "mnist_onnxruntime_fp32" / "1" / "model.onnx")
    proc = run_cli("verify", repo)
    assert "mnist_onnxruntime_fp32/1/model.onnx changed" in proc.stderr
    assert "mnist_onnxruntime_fp32/config.pbtxt stale" in proc.stdout + proc.stderr
    # Re-exporting repairs it; then a re-exported source makes the repository's copies stale.
    assert run_cli("export", "--format", "triton", "--precision", "fp32", "--out", repo, "--artifacts", artifacts).returncode == 0
    assert run_cli("verify", repo).returncode == 0
    shutil.copy2(artifacts / "mnist_cnn.fp16.onnx", artifacts / "mnist_cnn.fp32.onnx")
    proc = run_cli("verify", repo)
    assert proc.returncode == EXIT_CHECK_FAILED and "stale" in proc.stdout


def test_configs_that_triton_would_reject_are_never_written():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from toolkit.errors import ModelFileError
    from toolkit.export.triton import _model_config, config_text, parse_config

    good = _model_config("m", "onnxruntime", "fp32", "0" * 64, 8, 1, 100, "x.onnx")
    text = config_text(good)
    assert text_format.Parse(text, mc.ModelConfig()) == good
    with pytest.raises(ModelFileError, match="not a Triton model configuration"):
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".pbtxt", delete=False) as fh:
            fh.write(text.replace("max_batch_size", "max_batch"))
        parse_config(fh.name)


def test_bad_requests_are_one_line(artifacts, tmp_path):
    proc = run_cli("export", "--format", "triton", "--precision", "fp32", "--max-batch", "0", "--artifacts", artifacts)
    assert_one_line_error(proc, "--max-batch", code=EXIT_BAD_INPUT)
    proc = run_cli("export", "--format", "triton", "--precision", "fp32", "--instances", "0", "--artifacts", artifacts)
    assert_one_line_error(proc, "--instances", code=EXIT_BAD_INPUT)
    (artifacts / "mnist_cnn.int8.onnx").unlink()
    proc = run_cli("export", "--format", "triton", "--precision", "int8", "--artifacts", artifacts)
    assert_one_line_error(proc, "mnist_cnn.int8.onnx", "missing", code=EXIT_BAD_INPUT)
    assert not (artifacts / "triton" / "mnist_onnxruntime_int8").exists()
    # A file that is not this model's (or not ONNX at all) never enters a repository.
    (artifacts / "mnist_cnn.fp16.onnx").write_bytes(b"not onnx")
    proc = run_cli("export", "--format", "triton", "--precision", "fp16", "--artifacts", artifacts)
    assert proc.returncode == EXIT_BAD_INPUT and len(proc.stderr.strip().splitlines()) == 1
    assert not (artifacts / "triton" / "mnist_onnxruntime_fp16").exists()


def test_engine_without_a_valid_sidecar_is_refused(artifacts):
    """A TensorRT plan enters the repository only with a sidecar that matches its bytes: an engine
    of unknown origin, or one changed since its sidecar was written, is refused."""
    from toolkit.errors import ModelFileError
    from toolkit.export.triton import export_triton

    engine = artifacts / "mnist_cnn.fp32.engine"
    engine.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="no sidecar"):
        export_triton(["fp32"], artifacts, targets=["tensorrt"])
    from toolkit.files import engine_sidecar
    from toolkit.files.store import sha256_file

    record = {
        "format": engine_sidecar.SIDECAR_FORMAT, "format_version": engine_sidecar.SIDECAR_VERSION,
        "engine": {"file": engine.name, "size": 64, "sha256": "0" * 64},
        "onnx": {"file": "mnist_cnn.fp32.onnx", "sha256": sha256_file(artifacts / "mnist_cnn.fp32.onnx")},
        "precision": "fp32", "strict_fp32": False, "profile": {"min": 1, "opt": 64, "max": 512},
        "tensorrt_version": "10.16.0", "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"},
    }
    (artifacts / "mnist_cnn.fp32.engine.json").write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match="not the file its sidecar records"):
        export_triton(["fp32"], artifacts, targets=["tensorrt"])
    # With matching bytes it goes in, as a plan, limited by the engine's profile.
    record["engine"]["sha256"] = sha256_file(engine)
    (artifacts / "mnist_cnn.fp32.engine.json").write_text(json.dumps(record))
    from toolkit.errors import InputError

    with pytest.raises(InputError, match="exceeds the engine"):
        export_triton(["fp32"], artifacts, targets=["tensorrt"], max_batch=1024)
    result = export_triton(["fp32"], artifacts, targets=["tensorrt"], max_batch=512)
    (m,) = result.models
    assert m.name == "mnist_tensorrt_fp32" and m.model.name == "model.plan" and m.model.read_bytes() == engine.read_bytes()
    from toolkit.export.triton import parse_config

    config = parse_config(m.config)
    assert config.platform == "tensorrt_plan" and config.instance_group[0].kind == 1  # KIND_GPU
    assert "nvidia.com/gpu" in (artifacts / "triton.kserve.yaml").read_text()


def test_the_bundled_tritonserver_reads_every_model_of_the_repository(artifacts, tmp_path):
    """The real tritonserver (PyTriton's, which has only the python backend) finds every model and
    parses every config of the repository, refusing each only for its missing backend library; a
    config it cannot parse is reported as such. Loading the models needs the full Triton server:
    not verified here."""
    import os
    import subprocess

    pytest.importorskip("pytriton", reason="the serve extra is not installed")
    from pytriton.utils.distribution import get_libs_path, get_root_module_path

    from toolkit.export.triton import export_triton

    result = export_triton(["fp32", "int8-cpu"], artifacts)
    server = get_root_module_path() / "tritonserver"

    def run_server():
        env = {**os.environ, "LD_LIBRARY_PATH": str(get_libs_path())}
        proc = subprocess.run(
            [str(server / "bin" / "tritonserver"), "--model-repository", str(result.directory), "--backend-directory",
             str(server / "backends"), "--allow-http", "false", "--allow-grpc", "false", "--allow-metrics", "false",
             "--exit-on-error", "true", "--strict-model-config", "true"],
            capture_output=True, text=True, env=env, timeout=60,
        )
        return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("E") and "CudaDriver" not in ln]

    errors = run_server()
    for m in result.models:
        backend = "onnxruntime" if m.target == "onnxruntime" else "openvino"
        assert any(f"failed to load '{m.name}' version 1" in e and f"backend library for backend '{backend}'" in e for e in errors), m.name
    assert all("unable to find backend library" in e for e in errors), errors
    broken = result.directory / "mnist_openvino_fp32" / "config.pbtxt"
    broken.write_text(broken.read_text().replace("max_batch_size", "max_batch"))
    assert any("mnist_openvino_fp32" in e and "failed to read text proto" in e for e in run_server())


def test_python_runtime_repository_matches_the_native_one_and_serves(artifacts):
    """`--runtime python`: the same names, dims, batching, instance groups and parameters as the
    native repository, `backend: "python"` with `1/model.py` in the manifest; the bundled
    tritonserver serves it as it is (`--instances 2`: two stub processes per model) with the same
    logits as in process, and a tampered model.py is caught by `toolkit verify` and not served."""
    import numpy as np

    from toolkit.backends import registry
    from toolkit.errors import CheckFailed
    from toolkit.export.triton import export_triton, parse_config

    pytest.importorskip("pytriton", reason="the serve extra is not installed")
    from toolkit.serve import LocalServer, ServeConfig
    from toolkit.serve.host import descendants

    native = export_triton(["fp32", "int8-cpu"], artifacts, artifacts / "native", max_batch=64, instances=2, queue_delay_us=0)
    python = export_triton(["fp32", "int8-cpu"], artifacts, artifacts / "python", max_batch=64, instances=2, queue_delay_us=0,
                           runtime="python", threads=1)
    assert [m.name for m in python.models] == [m.name for m in native.models]
    assert any("python runtime serves ONNX" in s for s in python.skipped)
    for n, p in zip(native.models, python.models, strict=True):
        a, b = parse_config(n.config), parse_config(p.config)
        assert b.backend == "python" and not b.platform and p.runtime == "python"
        for field in ("name", "max_batch_size", "input", "output", "dynamic_batching", "instance_group"):
            assert getattr(a, field) == getattr(b, field), field
        for key, value in a.parameters.items():
            assert b.parameters[key] == value, key
        assert b.parameters["toolkit_backend"].string_value == p.target and b.parameters["toolkit_threads"].string_value == "1"
    entries = json.loads((python.directory / "manifest.json").read_text())["artifacts"]
    assert entries["mnist_openvino_fp32/1/model.py"]["kind"] == "triton-python-model"
    assert "mnist_openvino_fp32/1/model.py" in entries["mnist_openvino_fp32/config.pbtxt"]["parents"]
    assert "toolkit_sys_path" in (artifacts / "python.kserve.yaml").read_text()
    assert run_cli("verify", python.directory).returncode == 0

    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    with LocalServer(ServeConfig(http_port=0, grpc_port=0, metrics_port=0, repository=str(python.directory))) as server:
        stubs = [p for p in descendants(server.info.pids[0]) if Path(f"/proc/{p}/comm").read_text().startswith("triton_python")]
        assert len(stubs) == 2 * len(python.models)
        for m in python.models:
            with registry.create_backend("triton", m.precision, url=server.info.grpc_url, model=m.name) as remote, \
                    registry.create_backend(m.target, m.precision, m.model, threads=1) as local:
                assert np.abs(remote.run(x) - local.run(x)).max() <= 1e-5, m.name
    assert server.stop_report.clean, server.stop_report
    code = python.directory / "mnist_onnxruntime_fp32" / "1" / "model.py"
    code.write_text(code.read_text() + "\nimport os\n")
    proc = run_cli("verify", python.directory)
    assert proc.returncode == EXIT_CHECK_FAILED and "mnist_onnxruntime_fp32/1/model.py changed" in proc.stderr
    with pytest.raises(CheckFailed, match="model.py changed"):
        LocalServer(ServeConfig(http_port=0, grpc_port=0, metrics_port=0, repository=str(python.directory))).start()
