"""What this machine offers TensorRT: the availability check, the environment engines are tied to,
and the one logger TensorRT reports through.

TensorRT is imported only inside these functions, so importing this module never needs it.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from toolkit.backends.registry import GPU_INSTALL
from toolkit.env import cuda_available
from toolkit.errors import ToolkitError, UnavailableError
from toolkit.files.engine_sidecar import EngineEnvironment


def missing_for_tensorrt() -> list[str]:
    """What keeps TensorRT from running here, in words; empty when it can run."""
    missing = []
    if importlib.util.find_spec("tensorrt") is None:
        missing.append("the Python package 'tensorrt' is not installed")
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
