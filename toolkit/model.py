"""The model and its one contract.

The contract is what every file, backend and caller agrees on: the ONNX input and output names,
the image shape, the number of classes, and `validate_batch`, the check every batch passes before
a runtime sees it. The network is the seed notebook's CNN, unchanged: module names match so the
notebook's state_dict loads as is. torch is imported only when the network itself is asked for
(`toolkit.model.CNN`), so runtimes that never touch PyTorch don't pay for it.
"""

from __future__ import annotations

import numpy as np

from toolkit.errors import InputError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SHAPE = (1, 28, 28)  # per image; batches are (N, 1, 28, 28) float32 in [0, 1]
NUM_CLASSES = 10
NUM_PARAMETERS = 28_938
OUTPUT_SHAPE = (NUM_CLASSES,)  # per image

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



def _build_cnn_class():
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self, num_classes: int = NUM_CLASSES):
            super().__init__()
            self.layer1 = nn.Sequential(
                nn.Conv2d(1, 16, kernel_size=5, stride=1, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=2, stride=2),
            )
            self.layer2 = nn.Sequential(
                nn.Conv2d(16, 32, kernel_size=5, stride=1, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=2, stride=2),
            )
            self.fc1 = nn.Linear(7 * 7 * 32, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.layer1(x)
            out = self.layer2(out)
            out = out.reshape(out.size(0), -1)
            return self.fc1(out)

    CNN.__module__ = __name__
    CNN.__qualname__ = "CNN"
    return CNN


_CNN = None


def __getattr__(name: str):
    # `from toolkit.model import CNN` builds the class (and imports torch) on first use only.
    global _CNN
    if name == "CNN":
        if _CNN is None:
            _CNN = _build_cnn_class()
        return _CNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
