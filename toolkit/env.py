"""Facts about this machine and process: CPU, cores, GPU, runtime versions, the command line.

Asked without importing heavy packages (package metadata, /proc), except that the CUDA check
imports torch when it is installed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import shlex
import sys
from importlib import metadata

# The TensorRT wheels have shipped under several distribution names.
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings", "tensorrt-cu12-bindings")
RUNTIME_DISTRIBUTIONS = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "numpy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would retype it (`toolkit ...`, shell-quoted)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(("toolkit", "__main__.py", "-m")):
        argv[0] = "toolkit"
    return shlex.join(argv)


def package_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    """Versions of what produced an artifact or a measurement (package metadata, no imports)."""
    import toolkit

    out = {"python": sys.version.split()[0], "toolkit": toolkit.__version__}
    for dist in RUNTIME_DISTRIBUTIONS:
        version = package_version(dist)
        if version is not None:
            out[dist] = version
    return out


def tensorrt_package_version() -> str | None:
    """TensorRT's version from package metadata (no import: it loads the CUDA libraries)."""
    for dist in TENSORRT_DISTRIBUTIONS:
        version = package_version(dist)
        if version is not None:
            return version
    return None


@functools.lru_cache(maxsize=1)
def cuda_available() -> tuple[bool, str]:
    """(usable, reason) for CUDA through torch, which every GPU backend relies on for buffers/context."""
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return False, "this torch is a CPU-only build"
        return False, "no CUDA GPU is visible"
    return True, ""


def gpu_description() -> str | None:
    """'<names> (CUDA <version>)' when a CUDA GPU is usable, else None."""
    ok, _ = cuda_available()
    if not ok:
        return None
    import torch

    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{', '.join(names)} (CUDA {torch.version.cuda})"
