"""The backend interface: load a model file, run a numpy batch, describe itself, release.

A backend only reads files that export code wrote. The base class checks every batch against the
model's input contract once for all backends, so a runtime never sees input it would crash on or
silently mis-handle.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import InputError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


@dataclass(frozen=True)
class BackendInfo:
    name: str
    device: str
    precision: str
    model_path: str
    runtime: str  # e.g. "onnxruntime 1.32.0"
    threads: int | None = None
    details: dict = field(default_factory=dict)


_FLOAT32_ONE_BITS = 0x3F800000  # the bit pattern of float32 1.0
# dtype objects made once: converting np.float32/np.uint32 to a dtype on every call is measurable.
_FLOAT32 = np.dtype(np.float32)
_UINT32 = np.dtype(np.uint32)


def validate_batch(batch) -> np.ndarray:
    """Check a batch against the contract (N,1,28,28), float, finite, in [0,1]; return it as
    C-contiguous float32. Other float dtypes, non-contiguous and read-only arrays are copied; integer
    dtypes are refused (unscaled 0..255 pixels are the usual mistake)."""
    if not isinstance(batch, np.ndarray):
        raise InputError(f"batch must be a numpy array, got {type(batch).__name__}", "pass np.ndarray of shape (N,1,28,28)")
    if batch.ndim != 4 or batch.shape[1:] != IMAGE_SHAPE:
        raise InputError(f"batch has shape {batch.shape}, expected (N, 1, 28, 28)", "reshape to (N,1,28,28); a single image is x[None, None]")
    if batch.dtype.kind != "f":  # same test as np.issubdtype(dtype, np.floating), 10x cheaper per call
        raise InputError(
            f"batch has dtype {batch.dtype}, expected float32 in [0,1]",
            "convert with x.astype(np.float32) / 255 for uint8 pixels",
        )
    if batch.dtype != _FLOAT32 or not batch.flags.c_contiguous:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
    elif not batch.flags.writeable:
        # Read-only arrays (memory-mapped, np.frombuffer): runtimes that share memory want writable ones.
        batch = batch.copy()
    # One pass over the bits decides the common case (the check is a measurable part of a batch-1
    # call): float32 bit patterns of +0.0..1.0 are exactly the uint32 range 0..0x3F800000, and every
    # negative value, -0.0, NaN and Inf lies above it. argmax has a quarter of a ufunc reduction's
    # fixed cost. Only when the largest pattern is out of range does the precise float check run.
    bits = batch.view(_UINT32).ravel()
    if bits.size and bits.item(bits.argmax()) > _FLOAT32_ONE_BITS:
        # NaN fails both comparisons, so two reductions check range and finiteness together.
        lo, hi = batch.min(), batch.max()
        if not (lo >= 0.0 and hi <= 1.0):
            if not np.isfinite(batch).all():
                raise InputError("batch contains NaN or Inf", "clean the input; pixels must be finite values in [0,1]")
            raise InputError(f"batch values span [{lo:g}, {hi:g}], expected [0, 1]", "scale pixels to [0,1] (uint8 / 255)")
    return batch


class Backend(abc.ABC):
    """Subclasses set `name`/`device`, implement `_load`, `_run`, `runtime_version`, may override `close`."""

    name: str = ""
    device: str = "cpu"  # which precisions a backend runs and which file it reads: registry.SPECS

    def __init__(self, model_path: str | Path, precision: str, threads: int | None = None, **options):
        self.model_path = Path(model_path)
        self.precision = precision
        self.threads = threads
        self.options = options
        self._loaded = False

    # -- life cycle ---------------------------------------------------------------------------
    def load(self) -> Backend:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def close(self) -> None:
        self._loaded = False

    def __enter__(self) -> Backend:
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inference ----------------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N,10) float32 for a batch (N,1,28,28) float32 in [0,1]; the input is validated."""
        batch = validate_batch(batch)
        if batch.shape[0] == 0:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        if not self._loaded:
            self.load()
        return self._run(batch)

    def run_trusted(self, batch: np.ndarray) -> np.ndarray:
        """Like run() for a batch already validated (the gate and the benchmark validate once)."""
        if not self._loaded:
            self.load()
        return self._run(batch)

    def describe(self) -> BackendInfo:
        return BackendInfo(
            name=self.name, device=self.device, precision=self.precision, model_path=str(self.model_path),
            runtime=self.runtime_version(), threads=self.threads, details=self.details(),
        )

    def details(self) -> dict:
        return {}

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def runtime_version(self) -> str: ...
