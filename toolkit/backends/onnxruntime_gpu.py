"""ONNX Runtime on NVIDIA GPUs: the CUDA execution provider, and the TensorRT one with its caches.

Precision comes from the file, as for the TensorRT backend: the fp16 and Q/DQ int8 exports are fed
as they are, and the TensorRT provider's trt_fp16_enable/trt_int8_enable are never set (they map
to builder flags TensorRT 11 removed). The provider options are built by pure functions so they
are tested without a GPU. onnxruntime falls back to the CPU silently when a provider fails to
load; the backends refuse that instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from toolkit.backends.onnxruntime import OrtCpuBackend
from toolkit.errors import UnavailableError
from toolkit.files.engine_sidecar import EngineOptions
from toolkit.model import IMAGE_SHAPE, INPUT_NAME

CACHE_DIR_NAME = "ort-tensorrt-cache"


def profile_shape(batch: int, name: str = INPUT_NAME) -> str:
    """The TensorRT provider's shape syntax: `input:64x1x28x28`."""
    return f"{name}:" + "x".join(str(d) for d in (batch, *IMAGE_SHAPE))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def tensorrt_cache_dir(artifacts_dir: str | Path, model_sha256: str, ort_version: str, trt_version: str, compute_capability: str) -> Path:
    """Where the TensorRT provider keeps engines and timing for one model on one stack.

    A cached engine is stale once the model, onnxruntime, TensorRT or the GPU changes, and the
    provider would load it anyway; keying the directory on all four means it never finds one.
    """
    key = f"{model_sha256[:16]}-ort{_safe(ort_version)}-trt{_safe(trt_version)}-sm{_safe(compute_capability).replace('.', '')}"
    return Path(artifacts_dir) / CACHE_DIR_NAME / key


def tensorrt_provider_options(cache_dir: str | Path, profile: tuple[int, int, int], workspace_mb: int, cuda_graph: bool = False, device_id: int = 0) -> dict[str, str]:
    """Options for TensorrtExecutionProvider: caches under `cache_dir`, the batch profile, the workspace."""
    low, opt, high = profile
    cache = str(Path(cache_dir).resolve())
    return {
        "device_id": str(device_id),
        "trt_max_workspace_size": str(workspace_mb << 20),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
        "trt_profile_min_shapes": profile_shape(low),
        "trt_profile_opt_shapes": profile_shape(opt),
        "trt_profile_max_shapes": profile_shape(high),
        "trt_cuda_graph_enable": "True" if cuda_graph else "False",
    }


def cuda_provider_options(device_id: int = 0, strict_fp32: bool = False) -> dict[str, str]:
    """Options for CUDAExecutionProvider; `strict_fp32` turns off its TF32 math (on by default)."""
    options = {"device_id": str(device_id), "cudnn_conv_algo_search": "EXHAUSTIVE"}
    if strict_fp32:
        options["use_tf32"] = "0"
    return options


class OrtCudaBackend(OrtCpuBackend):
    name = "onnxruntime-cuda"
    device = "cuda"
    OPTIONS = None  # provider options (strict_fp32, cuda_graph, engine profile) are not searched here
    provider = "CUDAExecutionProvider"

    def providers(self) -> list:
        return [(self.provider, cuda_provider_options(strict_fp32=bool(self.options.get("strict_fp32"))))]

    def _load(self) -> None:
        import torch

        # Initialise CUDA through PyTorch first: onnxruntime-gpu then finds the CUDA and cuDNN
        # libraries PyTorch already loaded and shares its primary context.
        torch.cuda.init()
        super()._load()
        active = self.session.get_providers()
        if not active or active[0] != self.provider:
            self.close()
            raise UnavailableError(
                f"onnxruntime could not enable {self.provider} (active: {', '.join(active) or 'none'}); "
                "its CUDA, cuDNN or TensorRT libraries did not load",
                "check `toolkit info` and the README's GPU and TensorRT section",
            )

    def details(self) -> dict:
        out = super().details()
        if self._loaded:
            out["provider_options"] = dict(self.providers()[0][1])
        return out


class OrtTensorrtBackend(OrtCudaBackend):
    name = "onnxruntime-trt"
    provider = "TensorrtExecutionProvider"

    def _engine_options(self):
        keys = ("min_batch", "opt_batch", "max_batch", "workspace_mb")
        return EngineOptions(**{k: self.options[k] for k in keys if k in self.options})

    def cache_dir(self) -> Path:
        import onnxruntime as ort
        import torch

        from toolkit.env import tensorrt_package_version
        from toolkit.files.store import sha256_file

        major, minor = torch.cuda.get_device_capability()
        return tensorrt_cache_dir(self.model_path.parent, sha256_file(self.model_path), ort.__version__, tensorrt_package_version() or "unknown", f"{major}.{minor}")

    def providers(self) -> list:
        if getattr(self, "_trt_options", None) is None:
            engine = self._engine_options()
            cache = self.cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            self._trt_options = tensorrt_provider_options(cache, engine.profile, engine.workspace_mb, bool(self.options.get("cuda_graph")))
        # CUDA takes whatever TensorRT cannot; onnxruntime adds the CPU provider last by itself.
        return [(self.provider, self._trt_options), ("CUDAExecutionProvider", cuda_provider_options())]
