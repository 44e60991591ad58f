"""ONNX Runtime on the CPU execution provider."""

from __future__ import annotations

import os

import numpy as np

from toolkit.backends.base import INPUT_NAME, OUTPUT_NAME, Backend


class OrtCpuBackend(Backend):
    name = "onnxruntime"
    device = "cpu"

    def providers(self) -> list:
        return ["CPUExecutionProvider"]

    def session_options(self):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = self.threads or os.cpu_count() or 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if self.device == "cpu":
            # QDQ propagation moves the uint8 quantization of int8-cpu above a MaxPool that then
            # runs as ORT's slow NCHW uint8 MaxPool (4x slower in total, measured at batch 256);
            # fp32/fp16 graphs have no Q/DQ and the s8s8 int8 file measured the same either way.
            so.add_session_config_entry("optimization.disable_specified_optimizers", "QDQPropagationTransformer")
        return so

    def _load(self) -> None:
        import onnxruntime as ort

        from toolkit.errors import ModelFileError
        from toolkit.onnx_file import load_checked

        model = load_checked(self.model_path)  # refuse unsafe or foreign files before the runtime sees them
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), sess_options=self.session_options(), providers=self.providers())
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelFileError(f"onnxruntime cannot load {self.model_path} ({str(exc).splitlines()[0][:160]})", "re-export it with `toolkit export --format onnx`") from None
        self._outputs = [OUTPUT_NAME]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self._outputs, {INPUT_NAME: batch})[0]

    def runtime_version(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"

    def details(self) -> dict:
        out = {"intra_op_threads": self.threads or os.cpu_count(), "graph_optimization": "ORT_ENABLE_ALL"}
        if self._loaded:
            out["providers"] = self.session.get_providers()
        return out

    def close(self) -> None:
        self.session = None
        super().close()
