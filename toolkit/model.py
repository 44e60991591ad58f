"""The model and its one contract.

The contract is what every file, backend and caller agrees on: the ONNX input and output names,
the image shape, the number of classes, and `validate_batch`, the check every batch passes before
a runtime sees it. The network is the seed notebook's CNN, unchanged: module names match so the
notebook's state_dict loads as is. torch is imported only when the network itself is asked for
(`toolkit.model.CNN`), so runtimes that never touch PyTorch don't pay for it.
"""

from __future__ import annotations

from toolkit.spec import ModelSpec, Preprocessing, Task, TensorSpec

# The built-in model's contract; the names below are read from it for the code that serves only
# the built-in CNN.
MNIST_CNN_SPEC = ModelSpec(
    name="mnist_cnn",
    inputs=(TensorSpec("input", "float32", (-1, 1, 28, 28), value_range=(0.0, 1.0)),),
    outputs=(TensorSpec("logits", "float32", (-1, 10)),),
    task=Task("classification", num_classes=10, class_names=tuple(str(d) for d in range(10))),
    preprocessing=Preprocessing(size=(28, 28), channels=1, scale=1 / 255, mean=(0.0,), std=(1.0,)),
    source="mnist-cnn",
)
INPUT_NAME = MNIST_CNN_SPEC.inputs[0].name
OUTPUT_NAME = MNIST_CNN_SPEC.outputs[0].name
IMAGE_SHAPE = MNIST_CNN_SPEC.inputs[0].item_shape  # per image; batches are (N, 1, 28, 28) float32 in [0, 1]
NUM_CLASSES = MNIST_CNN_SPEC.task.num_classes
OUTPUT_SHAPE = MNIST_CNN_SPEC.outputs[0].item_shape  # per image
NUM_PARAMETERS = 28_938

# Check a batch against the built-in contract (N,1,28,28), float, finite, in [0,1]; return it as
# C-contiguous float32 (TensorSpec.validate: other float dtypes, non-contiguous and read-only arrays
# are copied; integer dtypes are refused).
validate_batch = MNIST_CNN_SPEC.inputs[0].validate


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
