"""ONNX Runtime on the CPU execution provider."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolkit.backends.base import Backend
from toolkit.model import INPUT_NAME, OUTPUT_NAME

GRAPH_OPTIMIZATION = "ORT_ENABLE_ALL"


def session_options(threads: int | None, cpu: bool = True):
    """The SessionOptions every toolkit session uses (the backend and the benchmark's direct row)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # fatal only: a failing call comes back as an exception the toolkit reports in its one line;
    # onnxruntime's own ERROR log lines would be a second, raw copy of it on stderr
    so.log_severity_level = 4
    if cpu:
        # QDQ propagation moves the uint8 quantization of int8-cpu above a MaxPool that then
        # runs as ORT's slow NCHW uint8 MaxPool (4x slower in total, measured at batch 256);
        # fp32/fp16 graphs have no Q/DQ and the s8s8 int8 file measured the same either way.
        so.add_session_config_entry("optimization.disable_specified_optimizers", "QDQPropagationTransformer")
    return so


def build_session(model_path: str | Path, sess_options, providers: list):
    """An InferenceSession on a checked model file: unsafe or foreign files are refused before
    onnxruntime sees them, and a file onnxruntime cannot load is one ModelFileError."""
    import onnxruntime as ort

    from toolkit.errors import ModelFileError
    from toolkit.files.onnx_file import load_checked

    model = load_checked(model_path)
    try:
        return ort.InferenceSession(model.SerializeToString(), sess_options=sess_options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelFileError(f"onnxruntime cannot load {model_path} ({str(exc).splitlines()[0][:160]})", "re-export it with `toolkit export --format onnx`") from None


class OrtCpuBackend(Backend):
    name = "onnxruntime"
    device = "cpu"

    def providers(self) -> list:
        return ["CPUExecutionProvider"]

    def session_options(self):
        return session_options(self.threads, cpu=self.device == "cpu")

    def _load(self) -> None:
        self.session = build_session(self.model_path, self.session_options(), self.providers())
        self._outputs = [OUTPUT_NAME]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self._outputs, {INPUT_NAME: batch})[0]

    def runtime_version(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"

    def details(self) -> dict:
        out = {"intra_op_threads": self.threads or os.cpu_count(), "graph_optimization": GRAPH_OPTIMIZATION}
        if self._loaded:
            out["providers"] = self.session.get_providers()
        return out

    def close(self) -> None:
        self.session = None
        super().close()
