"""OpenVINO on the CPU (optional extra `openvino`), reading the same ONNX files."""

from __future__ import annotations

import os

import numpy as np

from toolkit.backends.base import Backend


class OpenVinoBackend(Backend):
    name = "openvino"
    device = "cpu"

    def _load(self) -> None:
        import openvino as ov

        from toolkit.errors import ModelFileError
        from toolkit.onnx_file import load_checked

        load_checked(self.model_path)
        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": int(self.threads or os.cpu_count() or 1),
            "PERFORMANCE_HINT": self.options.get("hint", "LATENCY"),
            # f32 math on every CPU: without it, CPUs with bf16 units may silently compute in bf16.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        try:
            self.compiled = core.compile_model(core.read_model(str(self.model_path)), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            raise ModelFileError(f"OpenVINO cannot load {self.model_path} ({str(exc).splitlines()[0][:160]})", "re-export it with `toolkit export --format onnx`") from None
        self.request = self.compiled.create_infer_request()
        self._version = ov.get_version()
        self._ov = ov

    def _run(self, batch: np.ndarray) -> np.ndarray:
        # Wrap the (validated, C-contiguous float32) batch without copying it: infer({0: batch})
        # copies the input and every output, about a quarter of a batch-1 call here.
        self.request.set_input_tensor(self._ov.Tensor(batch, shared_memory=True))
        self.request.infer()
        # The output tensor is reused by the next call: hand the caller its own copy.
        return self.request.get_output_tensor(0).data.copy()

    def runtime_version(self) -> str:
        import openvino as ov

        return f"openvino {ov.get_version()}"

    def details(self) -> dict:
        return {"threads": int(self.threads or os.cpu_count() or 1), "hint": self.options.get("hint", "LATENCY"), "inference_precision": "f32"}

    def close(self) -> None:
        self.request = None
        self.compiled = None
        super().close()
