"""Where artifacts live by default, and how each (precision, format) file is named."""

from __future__ import annotations

import os
import stat
from pathlib import Path

ARTIFACTS_DIR = Path("artifacts")
CHECKPOINT_NAME = "mnist_cnn.pt"
DEFAULT_CHECKPOINT = ARTIFACTS_DIR / CHECKPOINT_NAME
# The TensorRT optimization profile (min, opt, max batch) engines are built with unless told otherwise.
DEFAULT_ENGINE_PROFILE = (1, 64, 1024)
PRECISIONS = ("fp32", "fp16", "int8")  # every format: ONNX files and TensorRT engines
# ONNX-only variants for CPU runtimes. int8-cpu: asymmetric uint8 activations, int8 per-channel
# weights, first convolution in fp32 -- the layout CPU int8 kernels (VNNI u8s8) run fastest; the
# symmetric s8s8 `int8` file stays the TensorRT-ready one.
CPU_PRECISIONS = ("int8-cpu",)
ONNX_PRECISIONS = PRECISIONS + CPU_PRECISIONS


BUILTIN_NAME = "mnist_cnn"  # the built-in model's artifacts keep today's names
SPEC_NAME = "model.json"  # the model's spec, beside its artifacts


def checkpoint_path(artifacts_dir: str | Path = ARTIFACTS_DIR, name: str = BUILTIN_NAME) -> Path:
    return Path(artifacts_dir) / f"{name}.pt"


def onnx_path(precision: str, artifacts_dir: str | Path = ARTIFACTS_DIR, name: str = BUILTIN_NAME) -> Path:
    return Path(artifacts_dir) / f"{name}.{precision}.onnx"


def engine_path(precision: str, artifacts_dir: str | Path = ARTIFACTS_DIR, strict: bool = False, name: str = BUILTIN_NAME) -> Path:
    suffix = "-strict" if strict else ""
    return Path(artifacts_dir) / f"{name}.{precision}{suffix}.engine"


def spec_path(artifacts_dir: str | Path = ARTIFACTS_DIR) -> Path:
    return Path(artifacts_dir) / SPEC_NAME


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


def timing_cache_path(artifacts_dir: str | Path = ARTIFACTS_DIR) -> Path:
    return Path(artifacts_dir) / "tensorrt.timing-cache"


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why `path` is no regular file to read, in words ("does not exist", "is a FIFO, not a regular
    file"); None when it is one. A FIFO or a link to /dev/zero exists: calling it missing misleads."""
    p = Path(path)
    try:
        mode = p.stat().st_mode  # follows links: a link to /dev/zero is a character device
    except FileNotFoundError:
        return "is a broken symbolic link" if p.is_symlink() else "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    via = f" (a symbolic link to {os.path.realpath(p)})" if p.is_symlink() else ""
    return f"is {kind}{via}, not a regular file"
