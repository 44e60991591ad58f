"""OpenVINO on the CPU (optional extra `openvino`), reading the same ONNX files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolkit.backends.base import Backend

DEFAULT_HINT = "LATENCY"
SMALL_BATCH = 64  # up to this many images, a batch is copied into a kept input tensor (see _run)
# The options (first value: the default), searched by `toolkit bench --tune`. "streams": "auto"
# leaves the stream count to the hint. "inference_precision": bf16 changes the arithmetic of the
# fp32/fp16 files, so a bf16 pair is labelled and judged under the fp16 tolerances; the int8
# files keep f32 for their non-quantized layers.
OPTIONS = {
    "hint": ("LATENCY", "THROUGHPUT"),
    "streams": ("auto", 1, 2),
    "inference_precision": ("f32", "bf16"),
}


def compile_config(threads: int | None, hint: str = DEFAULT_HINT, streams="auto", inference_precision: str = "f32") -> dict:
    """The CPU plugin settings every toolkit model uses (the backend and the benchmark's direct row)."""
    config = {
        "INFERENCE_NUM_THREADS": int(threads or os.cpu_count() or 1),
        "PERFORMANCE_HINT": hint,
        # f32 math unless asked otherwise: without it, CPUs with bf16 units may silently compute in bf16.
        "INFERENCE_PRECISION_HINT": inference_precision,
    }
    if streams != "auto":
        config["NUM_STREAMS"] = int(streams)
    return config


def compile_model(model_path: str | Path, config: dict):
    """A CompiledModel on a checked model file (unsafe or foreign files refused first)."""
    import openvino as ov

    from toolkit.errors import ModelFileError
    from toolkit.files.onnx_file import load_checked

    load_checked(model_path)
    core = ov.Core()
    try:
        return core.compile_model(core.read_model(str(model_path)), "CPU", config)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
        raise ModelFileError(f"OpenVINO cannot load {model_path} ({str(exc).splitlines()[0][:160]})", "re-export it with `toolkit export --format onnx`") from None


class OpenVinoBackend(Backend):
    name = "openvino"
    device = "cpu"
    OPTIONS = OPTIONS

    @classmethod
    def option_choices(cls, precision: str) -> dict[str, tuple]:
        choices = dict(OPTIONS)
        if precision not in ("fp32", "fp16"):
            choices["inference_precision"] = ("f32",)
        return choices

    @classmethod
    def compute_precision(cls, precision: str, options: dict) -> str:
        return "bf16" if options.get("inference_precision") == "bf16" else ""

    def config(self) -> dict:
        return compile_config(self.threads, **self.options)

    def _load(self) -> None:
        import openvino as ov

        self.compiled = compile_model(self.model_path, self.config())
        self.request = self.compiled.create_infer_request()
        self._ov = ov
        self._small_shape = None  # the shape of the kept input tensor that is the request's input now
        self._small_input = None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] <= SMALL_BATCH:
            # Setting a new input tensor costs more than the call's copy of a small batch (batch 1,
            # int8-cpu: 59 µs per call with set_input_tensor each time, 52 µs copying into a tensor
            # kept per shape, measured): small batches go into a kept tensor.
            if batch.shape != self._small_shape:
                small = self._ov.Tensor(self._ov.Type.f32, self._ov.Shape(list(batch.shape)))
                self.request.set_input_tensor(small)
                self._small_input, self._small_shape = small.data, batch.shape
            np.copyto(self._small_input, batch)
        else:
            # Large batches are wrapped without a copy: infer({0: batch}) copies the input and every
            # output, about a quarter of a call. The kept small tensor is no longer the input.
            self.request.set_input_tensor(self._ov.Tensor(batch, shared_memory=True))
            self._small_shape = None
        self.request.infer()
        # The output tensor is reused by the next call: hand the caller its own copy.
        return self.request.get_output_tensor(0).data.copy()

    def runtime_version(self) -> str:
        import openvino as ov

        return f"openvino {ov.get_version()}"

    def details(self) -> dict:
        config = self.config()
        return {"threads": config["INFERENCE_NUM_THREADS"], "hint": config["PERFORMANCE_HINT"],
                "streams": config.get("NUM_STREAMS", "auto"), "inference_precision": config["INFERENCE_PRECISION_HINT"]}

    def close(self) -> None:
        self.request = None
        self.compiled = None
        super().close()
