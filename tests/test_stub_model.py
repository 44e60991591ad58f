"""toolkit.serve.stub_model without a server: what the python-backend model answers for each
request of a merged batch, with a stand-in for the stub's `triton_python_backend_utils`. The real
server path is in test_serve.py."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import REFERENCE

from toolkit.errors import ModelFileError


class FakeError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message, code):
        self.message, self.code = message, code


class FakeTensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


class FakeResponse:
    def __init__(self, output_tensors=None, error=None):
        self.outputs, self.error = output_tensors, error


class FakeLogger:
    lines: list[str] = []

    @classmethod
    def log_error(cls, text):
        cls.lines.append(text)


class FakePb:
    TritonError, Tensor, InferenceResponse, Logger = FakeError, FakeTensor, FakeResponse, FakeLogger

    @staticmethod
    def get_input_tensor_by_name(request, name):
        array = request.get(name)
        return None if array is None else FakeTensor(name, array)


def _args(repo, precision="fp32", sha=None):
    params = {"toolkit_backend": "onnxruntime", "toolkit_precision": precision, "toolkit_threads": "1"}
    if sha:
        params["model_sha256"] = sha
    config = {"name": "m", "parameters": {k: {"string_value": v} for k, v in params.items()}}
    return {"model_config": json.dumps(config), "model_repository": str(repo), "model_version": "1"}


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "1").mkdir()
    shutil.copy2(REFERENCE / "mnist_cnn.fp32.onnx", tmp_path / "1" / "model.onnx")
    return tmp_path


def test_each_request_is_judged_on_its_own(repo, test_images):
    from toolkit.backends import registry
    from toolkit.serve.stub_model import StubModel

    x, _ = test_images
    model = StubModel(FakePb, _args(repo))
    requests = [{"input": x[0:3]}, {"input": x[3:4] * 255}, {}, {"input": x[4:6].astype(np.float64)},
                {"input": np.full((1, 1, 28, 28), np.nan, np.float32)}, {"input": x[6:7, :, :14]}]
    responses = model.execute(requests)
    with registry.create_backend("onnxruntime", "fp32", REFERENCE / "mnist_cnn.fp32.onnx", threads=1) as local:
        expected = local.run(x[:7])
    assert np.abs(responses[0].outputs[0].array - expected[0:3]).max() <= 1e-5
    assert np.abs(responses[3].outputs[0].array - expected[4:6]).max() <= 1e-5
    for i, needle in ((1, "expected [0, 1]"), (2, "has no input 'input'"), (4, "NaN or Inf"), (5, "expected (N, 1, 28, 28)")):
        error = responses[i].error
        assert error.code == "INVALID_ARG" and needle in error.message and "\n" not in error.message, (i, error.message)
    assert model.execute([{"input": x[0:1] * 255}])[0].error.code == "INVALID_ARG"  # nothing good: nothing run
    model.close()


def test_a_runtime_failure_is_one_fixed_line_and_logged(repo, test_images):
    from toolkit.serve.stub_model import RUNTIME_FAILURE, StubModel

    x, _ = test_images
    model = StubModel(FakePb, _args(repo))

    def broken(batch):
        raise RuntimeError("/some/internal/path.py: kernel exploded")

    model.backend.run_trusted = broken
    responses = model.execute([{"input": x[0:1]}, {"input": x[1:2] * 255}])
    assert responses[0].error.code == "INTERNAL" and responses[0].error.message == RUNTIME_FAILURE
    assert responses[1].error.code == "INVALID_ARG"
    assert "kernel exploded" in FakeLogger.lines[-1]


def test_a_file_that_is_not_what_the_config_says_is_not_loaded(repo):
    from toolkit.serve.stub_model import StubModel

    with pytest.raises(ModelFileError, match="records precision fp32, and is served as fp16"):
        StubModel(FakePb, _args(repo, precision="fp16"))
    with pytest.raises(ModelFileError, match="differs from the SHA-256 recorded"):
        StubModel(FakePb, _args(repo, sha="0" * 64))
