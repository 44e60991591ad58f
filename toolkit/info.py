"""`toolkit info`: the runtimes installed, the GPU if any, and which backends can run here and why not.

Versions come from package metadata, so nothing heavy is imported for them; torch is imported
only when installed, to ask for the GPU (the CUDA backends ask the same question).
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata

from toolkit.backends.registry import BackendStatus, all_statuses
from toolkit.env import cuda_available, tensorrt_package_version

RUNTIME_DISTRIBUTIONS = ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "numpy")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str
    memory_gib: float


@dataclass
class ToolkitInfo:
    toolkit: str
    python: str
    platform: str
    runtimes: dict[str, str | None]  # distribution -> version, None when not installed
    torch_cuda: str | None  # the CUDA version torch was built for; None for a CPU-only build
    gpus: list[GpuInfo]
    gpu_reason: str  # why no GPU is usable; "" when one is
    backends: list[BackendStatus]
    warnings: list[str] = field(default_factory=list)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _gpus() -> tuple[list[GpuInfo], str, str | None]:
    """(GPUs, why none is usable, the CUDA version torch was built for)."""
    ok, why = cuda_available()
    if _version("torch") is None:
        return [], why, None
    import torch

    if not ok:
        return [], why, torch.version.cuda
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append(GpuInfo(i, props.name, f"{props.major}.{props.minor}", round(props.total_memory / 2**30, 1)))
    return gpus, "", torch.version.cuda


def _warnings(runtimes: dict[str, str | None]) -> list[str]:
    out = []
    if runtimes.get("onnxruntime") and runtimes.get("onnxruntime-gpu"):
        out.append("onnxruntime and onnxruntime-gpu are both installed and overwrite each other's files: "
                   "uninstall both, then install only onnxruntime-gpu (docs/gpu-tensorrt.md)")
    return out


def collect_info() -> ToolkitInfo:
    import toolkit

    runtimes = {dist: _version(dist) for dist in RUNTIME_DISTRIBUTIONS}
    runtimes["tensorrt"] = tensorrt_package_version()
    gpus, gpu_reason, torch_cuda = _gpus()
    return ToolkitInfo(
        toolkit=toolkit.__version__, python=sys.version.split()[0], platform=f"{platform.system()} {platform.machine()}",
        runtimes=runtimes, torch_cuda=torch_cuda, gpus=gpus, gpu_reason=gpu_reason, backends=all_statuses(),
        warnings=_warnings(runtimes),
    )
