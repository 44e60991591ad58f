"""What a python-backend model of the toolkit's repository runs inside Triton's stub process.

The repository's `model.py` (written by `toolkit export --format triton --runtime python`, and by
`toolkit serve`) is a few lines that put the toolkit on `sys.path` and hand each call to
`StubModel`: the model file is loaded here with the toolkit's own backend (onnxruntime or
OpenVINO, the same session options as in process), so a batch is run in the stub itself, with no
hop to another process.

Every request of a dynamic batch is checked on its own against the input contract
(`toolkit.model.validate_batch`, the one implementation of it): a bad one is answered with a
one-line INVALID_ARG error (HTTP 400, gRPC INVALID_ARGUMENT), the good ones are run together as
one batch and their rows sliced back. No response carries a traceback or a path; a failure of the
runtime itself is logged in the server's log and answered with a fixed one-line INTERNAL error.
"""

from __future__ import annotations

import json
import os

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.files.onnx_file import check_record
from toolkit.model import INPUT_NAME, OUTPUT_NAME, validate_batch

MAX_MESSAGE = 200
RUNTIME_FAILURE = "the model failed to run this batch; the server's log has the details"


def one_line(exc: BaseException) -> str:
    """An exception's message as one short line (a ToolkitError's problem and fix, nothing else)."""
    text = " ".join(str(exc).split())
    return text[:MAX_MESSAGE] or type(exc).__name__


def parameters(model_config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in (model_config.get("parameters") or {}).items()}


class StubModel:
    """One model instance: `pb` is the stub's `triton_python_backend_utils` module."""

    def __init__(self, pb, args: dict):
        from toolkit.backends import registry

        self.pb = pb
        config = json.loads(args["model_config"])
        params = parameters(config)
        self.name = config.get("name", "")
        threads = int(params.get("toolkit_threads") or 0) or None
        model_file = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        # The file must be what the config says it is: a swapped or re-labelled file is not served.
        check_record(model_file, params["toolkit_precision"], params.get("model_sha256") or None)
        self.backend = registry.create_backend(params["toolkit_backend"], params["toolkit_precision"], model_file, threads=threads)
        self.backend.load()

    def execute(self, requests) -> list:
        pb = self.pb
        responses: list = [None] * len(requests)
        good: list[int] = []
        batches: list[np.ndarray] = []
        for i, request in enumerate(requests):
            tensor = pb.get_input_tensor_by_name(request, INPUT_NAME)
            try:
                if tensor is None:
                    raise ToolkitError(f"the request has no input {INPUT_NAME!r}", f"send one FP32 input {INPUT_NAME!r} of shape [N,1,28,28]")
                batch = validate_batch(tensor.as_numpy())
            except ToolkitError as exc:
                responses[i] = pb.InferenceResponse(error=pb.TritonError(one_line(exc), pb.TritonError.INVALID_ARG))
                continue
            good.append(i)
            batches.append(batch)
        if not batches:
            return responses
        merged = batches[0] if len(batches) == 1 else np.concatenate(batches)
        try:
            logits = self.backend.run_trusted(merged)
        except Exception as exc:  # noqa: BLE001 - any runtime failure: logged here, one fixed line to the clients
            pb.Logger.log_error(f"{self.name}: {type(exc).__name__}: {one_line(exc)}")
            for i in good:
                responses[i] = pb.InferenceResponse(error=pb.TritonError(RUNTIME_FAILURE, pb.TritonError.INTERNAL))
            return responses
        start = 0
        for i, batch in zip(good, batches, strict=True):
            end = start + batch.shape[0]
            responses[i] = pb.InferenceResponse(output_tensors=[pb.Tensor(OUTPUT_NAME, logits[start:end])])
            start = end
        return responses

    def close(self) -> None:
        self.backend.close()

