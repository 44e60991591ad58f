"""What this machine offers TensorRT: the availability check, the environment engines are tied to,
and the one logger TensorRT reports through.

TensorRT is imported only inside these functions, so importing this module never needs it.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import re
import sys
from importlib import metadata

from toolkit.env import GPU_INSTALL, cuda_available
from toolkit.errors import ToolkitError, UnavailableError
from toolkit.files.engine_sidecar import EngineEnvironment


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


@functools.lru_cache(maxsize=1)
def tensorrt_import_problem() -> str:
    """Why `import tensorrt` fails here, in one line; "" when it works (tried once per process).

    The pip wheels load libnvinfer and its CUDA runtime when the module is imported, so a wheel
    for another CUDA major, a missing libs wheel or a broken install fails here, with an
    ImportError or an OSError from the dynamic loader, not at the first TensorRT call."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the Python package 'tensorrt' is not installed"
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure to import is "TensorRT is unusable", said in one line
        return f"`import tensorrt` failed ({type(exc).__name__}: {_one_line(exc)})"
    return ""


def missing_for_tensorrt() -> list[str]:
    """What keeps TensorRT from running here, in words; empty when it can run."""
    missing = []
    problem = tensorrt_import_problem()
    if problem:
        missing.append(problem)
    ok, why = cuda_available()
    if not ok:
        missing.append(f"no usable CUDA GPU ({why})")
    return missing


def require_tensorrt(what: str) -> EngineEnvironment:
    """This machine's TensorRT environment, or UnavailableError saying what is missing and how to install it."""
    missing = missing_for_tensorrt()
    if missing:
        raise UnavailableError(f"{what} needs TensorRT and a CUDA GPU: {'; '.join(missing)}", GPU_INSTALL)
    return current_environment()


def current_environment() -> EngineEnvironment:
    import tensorrt as trt
    import torch

    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return EngineEnvironment(trt.__version__, torch.cuda.get_device_name(index), f"{major}.{minor}")


def tensorrt_major(version: str) -> int:
    """10 for "10.16.1.11"."""
    return int(version.split(".")[0])


_CUDA_SUFFIX = re.compile(r"^tensorrt[-_]cu(\d+)(?:[-_](?:libs|bindings))?$")


def tensorrt_cuda(distributions=None) -> dict:
    """The CUDA that TensorRT itself was built for and loads: its wheels are per CUDA major
    (tensorrt-cu12-libs, tensorrt-cu13-bindings, ...), which need not be the CUDA torch was built
    for. `libcudart` is the version of that major's runtime library loaded in this process, when
    one is (TensorRT's Python API does not report the CUDA version it was built with)."""
    found = {}
    for dist in distributions if distributions is not None else metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        match = _CUDA_SUFFIX.match(name)
        if match:
            found.setdefault(int(match.group(1)), f"{name.replace('_', '-')} {dist.version}")
    if len(found) != 1:
        return {"cuda_major": None, "packages": sorted(found.values()), "libcudart": None}
    (major, package), = found.items()
    return {"cuda_major": major, "packages": [package], "libcudart": _loaded_cudart(major)}


def _loaded_cudart(major: int) -> str | None:
    try:
        cudart = ctypes.CDLL(f"libcudart.so.{major}")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if cudart.cudaRuntimeGetVersion(ctypes.byref(version)) != 0:
        return None
    return f"{version.value // 1000}.{(version.value % 1000) // 10}"


_LOGGER = None


def trt_logger():
    """The process-wide TensorRT logger (TensorRT keeps the first one it is given).

    It keeps errors for the toolkit's one-line messages instead of printing them, and echoes
    warnings and errors to stderr only under --debug.
    """
    global _LOGGER
    if _LOGGER is None:
        import tensorrt as trt

        class CollectingLogger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, msg):
                if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                    self.errors.append(" ".join(str(msg).split()))
                if os.environ.get("TOOLKIT_DEBUG") == "1" and int(severity) <= int(trt.ILogger.Severity.WARNING):
                    print(f"tensorrt: {msg}", file=sys.stderr)

            def take_errors(self) -> list[str]:
                errors, self.errors = self.errors, []
                return errors

        _LOGGER = CollectingLogger()
    return _LOGGER


def last_error(logger, fallback: str) -> str:
    """TensorRT's last logged error (shortened), or `fallback` when it logged none."""
    errors = logger.take_errors()
    return errors[-1][:200] if errors else fallback


def create_with_logger(factory, logger, what: str):
    """`trt.Builder(logger)` / `trt.Runtime(logger)`: the binding raises TypeError when the
    factory returns nullptr (driver or CUDA mismatch); turn that into one line with the fix."""
    try:
        return factory(logger)
    except TypeError:
        raise ToolkitError(f"TensorRT could not create a {what} ({last_error(logger, 'no details logged')})",
                           "check the NVIDIA driver and that TensorRT matches the CUDA version (toolkit info)") from None
