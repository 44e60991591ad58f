import importlib.util

import numpy as np
import pytest
import torch

from toolkit.backends import registry
from toolkit.backends.base import validate_batch
from toolkit.errors import InputError, UnavailableError
from toolkit.files.checkpoint import load_model

CPU_PAIRS = [("pytorch", "fp32")] + [(b, p) for b in ("onnxruntime", "openvino") for p in ("fp32", "fp16", "int8")]
# Max |logit - PyTorch fp32| on 512 real test images, per precision (see EXPORT_TOLERANCES).
LOGIT_TOLERANCE = {"fp32": 1e-4, "fp16": 5e-2, "int8": 2.0}


def _needs(name):
    st = registry.status(name)
    if not st.available:
        pytest.skip(f"{name} unavailable: {st.reason}")


@pytest.mark.parametrize("name, precision", CPU_PAIRS)
def test_backend_matches_pytorch_on_real_images(name, precision, exported_dir, checkpoint, test_images):
    _needs(name)
    images = test_images[0][:512]
    with torch.inference_mode():
        ref = load_model(checkpoint)(torch.from_numpy(images)).numpy()
    path = checkpoint if name == "pytorch" else None
    with registry.create_backend(name, precision, path or registry.model_path_for(name, precision, exported_dir), threads=2) as backend:
        info = backend.describe()
        out = backend.run(images)
    assert info.name == name and info.precision == precision and info.device == "cpu" and info.runtime
    assert out.shape == (512, 10) and out.dtype == np.float32
    assert np.abs(out - ref).max() <= LOGIT_TOLERANCE[precision]
    assert (out.argmax(1) == ref.argmax(1)).mean() >= (0.98 if precision == "int8" else 0.998)


def test_registry_reports_unavailable_with_reason():
    statuses = {s.name: s for s in registry.all_statuses()}
    assert set(statuses) == set(registry.backend_names())
    assert statuses["pytorch"].available and statuses["onnxruntime"].available
    for s in statuses.values():
        assert s.available or s.reason
    if importlib.util.find_spec("tensorrt") is None:
        assert not statuses["tensorrt"].available and "tensorrt" in statuses["tensorrt"].reason
        with pytest.raises(UnavailableError, match="tensorrt"):
            registry.create_backend("tensorrt", "fp32")


def test_package_import_does_not_pull_heavy_runtimes():
    import subprocess
    import sys

    heavy = ("tensorrt", "openvino", "onnxruntime", "onnx", "torch")
    code = (
        f"import sys; heavy = {heavy!r}; loaded = lambda: ','.join(m for m in heavy if m in sys.modules); "
        "import toolkit, toolkit.cli; print(loaded()); "
        "import toolkit.backends.registry as r; r.all_statuses(); print(loaded())"
    )
    after_import, after_statuses = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout.splitlines()
    assert after_import == "", "importing toolkit or its CLI module loaded a runtime"
    loaded = set(filter(None, after_statuses.split(",")))
    # Availability is decided with find_spec; torch answers whether a GPU is present, and onnxruntime
    # is asked for its providers only when there is one.
    assert not loaded & {"tensorrt", "openvino", "onnx"}, loaded
    from toolkit.env import cuda_available

    if not cuda_available()[0]:
        assert "onnxruntime" not in loaded, loaded


def test_unknown_backend_and_precision():
    with pytest.raises(InputError, match="unknown backend"):
        registry.create_backend("tflite", "fp32")
    with pytest.raises(InputError, match="unknown precision"):
        registry.create_backend("onnxruntime", "fp8")
    with pytest.raises(InputError, match="does not run"):
        registry.create_backend("pytorch", "int8")


# --- the input contract -----------------------------------------------------------------------

def _good(n=2):
    return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)


@pytest.mark.parametrize(
    "batch, message",
    [
        (np.zeros((1, 28, 28), np.float32), "shape"),
        (np.zeros((2, 3, 28, 28), np.float32), "shape"),
        (np.zeros((2, 1, 32, 32), np.float32), "shape"),
        (np.zeros((2, 1, 28, 28), np.uint8), "dtype"),
        (np.zeros((2, 1, 28, 28), np.int64), "dtype"),
        (np.full((2, 1, 28, 28), np.nan, np.float32), "NaN"),
        (np.full((2, 1, 28, 28), np.inf, np.float32), "NaN or Inf"),
        (np.full((2, 1, 28, 28), 255.0, np.float32), r"\[0, 1\]"),
        (-_good(), r"\[0, 1\]"),
        ([[0.0]], "numpy"),
    ],
)
def test_bad_batches_get_input_error(batch, message):
    with pytest.raises(InputError, match=message):
        validate_batch(batch)


def test_batches_that_are_converted():
    x64 = _good().astype(np.float64)
    assert validate_batch(x64).dtype == np.float32
    strided = np.ascontiguousarray(np.repeat(_good(), 2, axis=0))[::2]
    assert not strided.flags.c_contiguous
    out = validate_batch(strided)
    assert out.flags.c_contiguous and np.array_equal(out, strided)


@pytest.mark.parametrize("name", ["pytorch", "onnxruntime", "openvino"])
def test_empty_batch_and_noncontiguous_on_each_backend(name, exported_dir, checkpoint):
    _needs(name)
    path = checkpoint if name == "pytorch" else registry.model_path_for(name, "fp32", exported_dir)
    with registry.create_backend(name, "fp32", path) as backend:
        empty = backend.run(np.zeros((0, 1, 28, 28), np.float32))
        assert empty.shape == (0, 10)
        x = np.ascontiguousarray(np.repeat(_good(4), 2, axis=0))
        assert np.allclose(backend.run(x[::2]), backend.run(np.ascontiguousarray(x[::2])), atol=1e-5)
        with pytest.raises(InputError):
            backend.run(np.full((1, 1, 28, 28), np.nan, np.float32))


@pytest.mark.parametrize("name", ["pytorch", "onnxruntime", "openvino"])
def test_read_only_batches_work(name, exported_dir, checkpoint):
    _needs(name)
    path = checkpoint if name == "pytorch" else registry.model_path_for(name, "fp32", exported_dir)
    x = _good(3)
    frozen = x.copy()
    frozen.setflags(write=False)
    with registry.create_backend(name, "fp32", path) as backend:
        np.testing.assert_allclose(backend.run(frozen), backend.run(x), atol=1e-6)


def test_openvino_keeps_its_small_input_tensor_only_while_the_shape_holds(exported_dir):
    """Batches up to SMALL_BATCH are copied into a kept input tensor, larger ones wrapped: any
    sequence of shapes gives each batch its own logits (a stale tensor would answer the last one)."""
    _needs("openvino")
    from toolkit.backends.openvino import SMALL_BATCH

    x = _good(SMALL_BATCH + 8)
    with registry.create_backend("openvino", "fp32", registry.model_path_for("openvino", "fp32", exported_dir), threads=1) as b:
        alone = {n: b.run(x[:n]).copy() for n in (1, 3, SMALL_BATCH, SMALL_BATCH + 8)}
        for n in (1, 1, SMALL_BATCH + 8, 1, 3, SMALL_BATCH, 3, SMALL_BATCH + 8, 1):
            np.testing.assert_array_equal(b.run(x[:n]), alone[n])
        first = b.run(x[:1]).copy()
        assert not np.array_equal(b.run(x[1:2]), first)  # same shape, new data: the copy happens every call


# --- the triton client against a fake server (no server process: the checks themselves) --------

class FakeTriton:
    """Answers as a Triton server's client would for one model; `signature` and `parameters` vary."""

    def __init__(self, inputs=("input", "FP32", [-1, 1, 28, 28]), outputs=("logits", "FP32", [-1, 10]), parameters=None,
                 models=("served",), ready=True, grpc=False):
        self.meta = {"inputs": [dict(zip(("name", "datatype", "shape"), inputs, strict=True))],
                     "outputs": [dict(zip(("name", "datatype", "shape"), outputs, strict=True))]}
        self.config = {"max_batch_size": 1024, "parameters": parameters or {}}
        self.models, self.ready, self.grpc = set(models), ready, grpc
        self.calls = []  # (method, model, keyword arguments)
        self.not_found = lambda model: RuntimeError(f"[StatusCode.NOT_FOUND] Request for unknown model: '{model}' is not found")
        self.closed = False

    def _answer(self, method, model, kwargs, value):
        self.calls.append((method, model, dict(kwargs)))
        if model is not None and model not in self.models:
            raise self.not_found(model)
        return {"config": value} if self.grpc and method == "get_model_config" else value

    def is_server_live(self, **kwargs):
        return self._answer("is_server_live", None, kwargs, True)

    def get_model_metadata(self, model, **kwargs):
        return self._answer("get_model_metadata", model, kwargs, self.meta)

    def is_model_ready(self, model, **kwargs):
        return self._answer("is_model_ready", model, kwargs, self.ready)

    def get_model_config(self, model, **kwargs):
        return self._answer("get_model_config", model, kwargs, self.config)

    def get_server_metadata(self, **kwargs):
        return self._answer("get_server_metadata", None, kwargs, {"version": "2.99.0"})

    def close(self):
        self.closed = True


def _fake_server(monkeypatch, fake):
    from toolkit.backends import triton

    monkeypatch.setattr(triton.TritonBackend, "_connect", lambda self: fake)
    monkeypatch.setattr(registry, "status", lambda name: registry.BackendStatus(name, True, "", "remote", ("fp32",)))


@pytest.mark.parametrize("change", [
    dict(inputs=("input", "FP16", [-1, 1, 28, 28])),   # the input's dtype alone
    dict(inputs=("input", "FP32", [-1, 28, 28])),      # the input's dims alone
    dict(inputs=("input", "FP32", [-1, 1, 28, 29])),
    dict(outputs=("logits", "FP64", [-1, 10])),        # the output's dtype alone
    dict(outputs=("logits", "FP32", [-1, 11])),        # the output's dims alone
    dict(outputs=("probs", "FP32", [-1, 10])),         # the output's name alone
])
def test_triton_client_refuses_a_signature_that_differs_in_one_field(change, monkeypatch):
    from toolkit.backends.triton import TritonBackend
    from toolkit.errors import ModelFileError

    fake = FakeTriton(**change)
    _fake_server(monkeypatch, fake)
    backend = TritonBackend(None, "fp32", url="http://127.0.0.1:8000", model="served")
    with pytest.raises(ModelFileError, match="has signature .* expected input FP32 \\[-1, 1, 28, 28\\] -> logits FP32 \\[-1, 10\\]"):
        backend.load()
    assert fake.closed and backend.client is None


def test_triton_client_accepts_the_toolkit_signature(monkeypatch):
    from toolkit.backends.triton import TritonBackend

    fake = FakeTriton()
    _fake_server(monkeypatch, fake)
    with TritonBackend(None, "fp32", url="http://127.0.0.1:8000", model="served") as backend:
        assert backend.max_batch == 1024 and backend.server_version == "2.99.0"
    # HTTP: every model request names the model; no gRPC-only arguments.
    assert [c[:2] for c in fake.calls] == [("is_server_live", None), ("get_model_metadata", "served"), ("is_model_ready", "served"),
                                           ("get_model_config", "served"), ("get_server_metadata", None)]
    assert all(c[2] == {} for c in fake.calls)


class _StatusError(Exception):
    """A client error that says "not found" only by its status code (as tritonclient's may)."""

    def __init__(self, status):
        super().__init__("no such thing")
        self._status = status

    def status(self):
        return self._status


@pytest.mark.parametrize("status", ["404", "StatusCode.NOT_FOUND"])
def test_triton_client_reads_not_found_from_the_status_code(status, monkeypatch):
    from toolkit.backends.triton import TritonBackend
    from toolkit.errors import ToolkitError

    fake = FakeTriton(models=())
    fake.not_found = lambda model: _StatusError(status)
    _fake_server(monkeypatch, fake)
    with pytest.raises(InputError, match="model 'served' is not served at"):
        TritonBackend(None, "fp32", url="http://127.0.0.1:8000", model="served").load()
    fake.not_found = lambda model: _StatusError("500")  # another failure is not "not served"
    with pytest.raises(ToolkitError, match="did not describe model 'served'") as err:
        TritonBackend(None, "fp32", url="http://127.0.0.1:8000", model="served").load()
    assert not isinstance(err.value, InputError)


def test_triton_client_without_max_batch_or_version(monkeypatch):
    from toolkit.backends.triton import TritonBackend

    fake = FakeTriton()
    del fake.config["max_batch_size"]
    fake.get_server_metadata = lambda **_: {}
    _fake_server(monkeypatch, fake)
    with TritonBackend(None, "fp32", url="http://127.0.0.1:8000", model="served") as backend:
        assert backend.max_batch == 0 and backend.server_version == ""  # 0: no slicing of batches


def test_triton_client_over_grpc_asks_for_json_with_a_timeout(monkeypatch):
    from toolkit.backends.triton import TritonBackend

    fake = FakeTriton(grpc=True, parameters={"toolkit_precision": {"string_value": "fp32"}})
    _fake_server(monkeypatch, fake)
    with TritonBackend(None, "fp32", url="grpc://127.0.0.1:8001", model="served", timeout_s=7.0) as backend:
        assert backend.max_batch == 1024 and backend.server_version == "2.99.0"  # the config unwrapped
    kwargs = {c[0]: c[2] for c in fake.calls}
    assert kwargs["get_model_metadata"] == {"as_json": True, "client_timeout": 7.0}
    assert kwargs["get_model_config"] == kwargs["get_server_metadata"] == {"as_json": True, "client_timeout": 7.0}
    assert kwargs["is_model_ready"] == kwargs["is_server_live"] == {"client_timeout": 7.0}


@pytest.mark.parametrize("fake, precision, model, error, needle", [
    (dict(models=("other",)), "fp32", "served", "InputError", "model 'served' is not served at http://127.0.0.1:8000"),
    (dict(ready=False), "fp32", "served", "InputError", "model 'served' at http://127.0.0.1:8000 is not ready"),
    (dict(models=("mnist_onnxruntime_fp16",)), "fp32", "mnist_onnxruntime_fp16", "InputError", "is fp16 (by its name), not fp32"),
    (dict(parameters={"toolkit_precision": {"string_value": "int8"}}), "fp32", "served", "InputError", "'served' at http://127.0.0.1:8000 is int8, not fp32"),
])
def test_triton_client_refuses_a_model_that_is_not_the_one_asked_for(fake, precision, model, error, needle, monkeypatch):
    from toolkit.backends.triton import TritonBackend

    server = FakeTriton(**fake)
    _fake_server(monkeypatch, server)
    with pytest.raises(Exception) as err:
        TritonBackend(None, precision, url="http://127.0.0.1:8000", model=model).load()
    assert type(err.value).__name__ == error and needle in str(err.value), str(err.value)
    assert server.closed


@pytest.mark.parametrize("parameters, model, expected", [
    ({"toolkit_precision": {"string_value": "fp16"}}, "served", "fp16"),           # the server's configuration says
    ({"toolkit_precision": {"string_value": "int8"}}, "mnist_openvino_int8", "int8"),
    ({}, "mnist_onnxruntime_fp16", "fp16"),                                         # else the toolkit's model name
])
def test_eval_with_model_and_no_precision_reads_the_precision_from_the_server(parameters, model, expected, monkeypatch, checkpoint):
    _fake_server(monkeypatch, FakeTriton(parameters=parameters, models=(model,)))
    planned = registry.plan_pairs(["triton"], None, checkpoint, endpoint={"url": "http://127.0.0.1:8000", "model": model, "timeout_s": 5.0})
    assert [(p.backend, p.precision, p.available) for p in planned] == [("triton", expected, True)]
    assert planned[0].options["model"] == model


def test_a_served_model_that_records_no_precision_asks_for_one(monkeypatch, checkpoint):
    _fake_server(monkeypatch, FakeTriton())
    with pytest.raises(InputError, match="'served' at http://127.0.0.1:8000 does not record its precision.*pass --precision"):
        registry.plan_pairs(["triton"], None, checkpoint, endpoint={"url": "http://127.0.0.1:8000", "model": "served"})
    # With --precision it is used as given.
    planned = registry.plan_pairs(["triton"], ["fp32"], checkpoint, endpoint={"url": "http://127.0.0.1:8000", "model": "served"})
    assert [(p.backend, p.precision) for p in planned] == [("triton", "fp32")]
