"""ONNX Runtime on the CPU execution provider."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolkit.backends.base import Backend

GRAPH_OPTIMIZATION = "ORT_ENABLE_ALL"
# The CPU backend's options (first value: the default), searched by `toolkit bench --tune`.
OPTIONS = {
    "spinning": (True, False),  # intra-op worker threads spin between calls instead of sleeping
    "execution_mode": ("sequential", "parallel"),  # parallel: independent nodes on inter-op threads
    "graph_optimization": ("all", "extended", "basic"),
}
_GRAPH_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC"}


def session_options(threads: int | None, cpu: bool = True, spinning: bool = True, execution_mode: str = "sequential",
                    graph_optimization: str = "all"):
    """The SessionOptions every toolkit session uses (the backend and the benchmark's direct row)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_LEVELS[graph_optimization])
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    if execution_mode == "parallel":
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = so.intra_op_num_threads
    else:
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # fatal only: a failing call comes back as an exception the toolkit reports in its one line;
    # onnxruntime's own ERROR log lines would be a second, raw copy of it on stderr
    so.log_severity_level = 4
    if cpu:
        # QDQ propagation moves the uint8 quantization of int8-cpu above a MaxPool that then
        # runs as ORT's slow NCHW uint8 MaxPool (4x slower in total, measured at batch 256);
        # fp32/fp16 graphs have no Q/DQ and the s8s8 int8 file measured the same either way.
        so.add_session_config_entry("optimization.disable_specified_optimizers", "QDQPropagationTransformer")
    return so


def build_session(model_path: str | Path, sess_options, providers: list, spec=None):
    """An InferenceSession on a checked model file: unsafe or foreign files are refused before
    onnxruntime sees them, and a file onnxruntime cannot load is one ModelFileError."""
    import onnxruntime as ort

    from toolkit.errors import ModelFileError
    from toolkit.files.onnx_file import load_checked

    model = load_checked(model_path) if spec is None else load_checked(model_path, spec)
    try:
        return ort.InferenceSession(model.SerializeToString(), sess_options=sess_options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelFileError(f"onnxruntime cannot load {model_path} ({str(exc).splitlines()[0][:160]})", "re-export it with `toolkit export --format onnx`") from None


class OrtCpuBackend(Backend):
    name = "onnxruntime"
    device = "cpu"
    OPTIONS = OPTIONS

    def providers(self) -> list:
        return ["CPUExecutionProvider"]

    def session_options(self):
        if self.device != "cpu":
            return session_options(self.threads, cpu=False)
        return session_options(self.threads, cpu=True, **self.options)

    def _load(self) -> None:
        self.session = build_session(self.model_path, self.session_options(), self.providers(), self.spec)
        self._outputs = [self.output_name]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self._outputs, {self.input_name: batch})[0]

    def _run_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))

    def runtime_version(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"

    def details(self) -> dict:
        out = {"intra_op_threads": self.threads or os.cpu_count(), "graph_optimization": GRAPH_OPTIMIZATION}
        if self.device == "cpu":
            chosen = {name: self.options.get(name, values[0]) for name, values in OPTIONS.items()}
            out.update(chosen, graph_optimization=_GRAPH_LEVELS[chosen["graph_optimization"]])
        if self._loaded:
            out["providers"] = self.session.get_providers()
        return out

    def close(self) -> None:
        self.session = None
        super().close()
