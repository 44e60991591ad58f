"""Where artifacts live by default, and how each (precision, format) file is named."""

from __future__ import annotations

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
