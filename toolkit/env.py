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

# The TensorRT wheels have shipped under several distribution names; the bindings carry the
# version of the library the process actually loads, so they come first.
TENSORRT_DISTRIBUTIONS = ("tensorrt-cu13-bindings", "tensorrt-cu12-bindings", "tensorrt-cu13", "tensorrt-cu12", "tensorrt")
# How to get a GPU stack; every "unavailable" message about the GPU backends ends with it.
GPU_INSTALL = ("install one CUDA stack in its own environment: `make gpu-install CUDA=12` (driver r535+) "
               "or `CUDA=13` (driver r580+); see docs/gpu-tensorrt.md")
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


def available_memory_bytes() -> int | None:
    """Memory this process could still take: the kernel's MemAvailable, capped by a cgroup v2
    limit when one is set; None when neither can be read."""
    found = []
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max", encoding="utf-8").read().strip()
        used = open("/sys/fs/cgroup/memory.current", encoding="utf-8").read().strip()
        if limit != "max":
            found.append(max(0, int(limit) - int(used)))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_memory(needed: int, what: str, fix: str, available: int | None = None) -> None:
    """InputError when `what` needs more bytes than are available (unknown: not refused)."""
    from toolkit.errors import InputError

    available = available_memory_bytes() if available is None else available
    if available is not None and needed > available:
        raise InputError(f"{what} needs about {needed / 2**30:.1f} GiB for its arrays, this machine has {available / 2**30:.1f} GiB available", fix)


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


# The oldest driver branch that runs each CUDA major (NVIDIA's CUDA minor-version compatibility
# table); TensorRT's own floor for CUDA 12 is r535.
MIN_DRIVER_FOR_CUDA = {11: 450, 12: 525, 13: 580}


def driver_cuda_version() -> int | None:
    """The CUDA version the installed NVIDIA driver supports (e.g. 12020 for 12.2), from
    cuDriverGetVersion in libcuda; None when there is no driver library."""
    import ctypes

    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return version.value


def explain_no_cuda(torch_cuda: str | None, driver_cuda: int | None) -> str:
    """Why torch sees no usable GPU, in words a user can act on.

    `torch_cuda` is torch.version.cuda ("12.8", None for a CPU-only build); `driver_cuda` is
    driver_cuda_version(). A CUDA build of torch needs a driver of at least its CUDA major."""
    if torch_cuda is None:
        return "this torch is a CPU-only build (install a CUDA one: the gpu-cu12 or gpu-cu13 extra)"
    major = int(torch_cuda.split(".")[0])
    if driver_cuda is None:
        return f"no NVIDIA driver found (libcuda.so.1 is missing; this torch is built for CUDA {torch_cuda})"
    driver_major, driver_minor = driver_cuda // 1000, (driver_cuda % 1000) // 10
    if driver_major < major:
        branch = MIN_DRIVER_FOR_CUDA.get(major)
        need = f"r{branch}+" if branch else f"one for CUDA {major}"
        older = f" or use the gpu-cu{driver_major} extra" if driver_major in MIN_DRIVER_FOR_CUDA and driver_major >= 12 else ""
        return (f"driver too old for CUDA {major}: it supports CUDA {driver_major}.{driver_minor}, this torch is built for "
                f"CUDA {torch_cuda} (install NVIDIA driver {need}{older})")
    return f"no CUDA GPU is visible (driver supports CUDA {driver_major}.{driver_minor}; check nvidia-smi and CUDA_VISIBLE_DEVICES)"


@functools.lru_cache(maxsize=1)
def cuda_available() -> tuple[bool, str]:
    """(usable, reason) for CUDA through torch, which every GPU backend relies on for buffers/context."""
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed"
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch warns (to stderr) when the driver is too old; the reason below says it in one line.
        warnings.simplefilter("ignore")
        usable = torch.cuda.is_available()
    if not usable:
        return False, explain_no_cuda(torch.version.cuda, driver_cuda_version() if torch.version.cuda else None)
    return True, ""


def gpu_description() -> str | None:
    """'<names> (CUDA <version>)' when a CUDA GPU is usable, else None."""
    ok, _ = cuda_available()
    if not ok:
        return None
    import torch

    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{', '.join(names)} (CUDA {torch.version.cuda})"
