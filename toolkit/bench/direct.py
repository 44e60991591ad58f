"""Direct reference rows: the runtime called through its own Python API on the session the
backend module builds, so the row differs from the toolkit's only by the wrapper."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from toolkit.model import INPUT_NAME, OUTPUT_NAME


def _direct_onnxruntime(backend) -> tuple[Callable, str]:
    import onnxruntime as ort

    from toolkit.backends.onnxruntime import build_session

    # The backend module's own session builder and options: the same settings by construction.
    session = build_session(backend.model_path, backend.session_options(), backend.providers())
    outputs, feed_name = [OUTPUT_NAME], INPUT_NAME

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(outputs, {feed_name: batch})[0]

    return run, f"onnxruntime {ort.__version__}: InferenceSession.run"


def _direct_openvino(backend) -> tuple[Callable, str]:
    import openvino as ov

    from toolkit.backends.openvino import compile_model

    compiled = compile_model(backend.model_path, backend.config())

    def run(batch: np.ndarray) -> np.ndarray:
        # CompiledModel.__call__: the idiomatic synchronous call; it returns owned output arrays.
        return compiled(batch)[0]

    return run, f"openvino {ov.get_version()}: CompiledModel.__call__"


DIRECT_RUNTIMES: dict[str, Callable] = {"onnxruntime": _direct_onnxruntime, "openvino": _direct_openvino}
DIRECT_PRECISIONS = ("fp32",)

