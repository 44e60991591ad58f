"""Direct reference rows: the runtime called through its own Python API on the very session the
toolkit's backend loaded, so the row differs from the toolkit's only by the wrapper."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _direct_onnxruntime(backend) -> tuple[Callable, str]:
    import onnxruntime as ort

    # The backend's own (loaded) session: same settings, same thread pool, same prepacked weights.
    # A second session has its own intra-op worker threads, and on a 2-core machine the idle
    # session's workers still spinning after its block compete with the measured one: the two rows
    # then differ by more than the wrapper (issue 13).
    session = backend.load().session
    outputs, feed_name = [backend.output_name], backend.input_name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(outputs, {feed_name: batch})[0]

    return run, f"onnxruntime {ort.__version__}: InferenceSession.run"


def _direct_openvino(backend) -> tuple[Callable, str]:
    import openvino as ov

    # The backend's own CompiledModel (same streams and thread pool); __call__ uses its own request.
    compiled = backend.load().compiled

    def run(batch: np.ndarray) -> np.ndarray:
        # CompiledModel.__call__: the idiomatic synchronous call; it returns owned output arrays.
        return compiled(batch)[0]

    return run, f"openvino {ov.get_version()}: CompiledModel.__call__"


DIRECT_RUNTIMES: dict[str, Callable] = {"onnxruntime": _direct_onnxruntime, "openvino": _direct_openvino}
DIRECT_PRECISIONS = ("fp32",)

