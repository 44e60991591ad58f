"""PyTorch eager backends: the reference (CPU fp32) and CUDA (fp32, fp16 via .half())."""

from __future__ import annotations

import numpy as np

from toolkit.backends.base import Backend


class TorchBackend(Backend):
    name = "pytorch"
    device = "cpu"
    # torch.compile modes (None: eager). "max-autotune-no-cudagraphs" benchmarks kernel choices while compiling.
    OPTIONS = {"compile": (None, "default", "max-autotune-no-cudagraphs")}

    def _load(self) -> None:
        import torch

        from toolkit.files.checkpoint import load_model

        if self.threads:
            torch.set_num_threads(self.threads)
        self._torch = torch
        self.model = load_model(self.model_path).to(self._device())
        if self.precision == "fp16":
            self.model = self.model.half()
        compile_mode = self.options.get("compile")
        self.forward = torch.compile(self.model, mode=compile_mode) if compile_mode else self.model

    def _device(self) -> str:
        return "cpu"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        # torch's thread count is global to the process: another instance (a tuning candidate, the
        # parity reference) may have changed it since this one loaded.
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            x = torch.from_numpy(batch)
            return self.forward(x).numpy()

    def runtime_version(self) -> str:
        import torch

        return f"torch {torch.__version__}"

    def details(self) -> dict:
        out = {"compile": self.options.get("compile") or False}
        if self._loaded:
            out["threads"] = self._torch.get_num_threads()
        return out


class TorchCudaBackend(TorchBackend):
    name = "pytorch-cuda"
    device = "cuda"
    OPTIONS = None

    def _device(self) -> str:
        return "cuda"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to("cuda", non_blocking=False)
            if self.precision == "fp16":
                x = x.half()
            # .cpu() synchronises: the call returns when the logits are on the host.
            return self.forward(x).float().cpu().numpy()

    def details(self) -> dict:
        out = super().details()
        if self._loaded:
            out["gpu"] = self._torch.cuda.get_device_name()
            out["tf32_matmul"] = self._torch.backends.cuda.matmul.allow_tf32
            out["tf32_cudnn"] = self._torch.backends.cudnn.allow_tf32
        return out
