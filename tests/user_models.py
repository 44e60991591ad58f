"""Models unlike the built-in CNN, as factories (`tests/user_models.py:<function>` on the command
line, `user_models` in tests): shared by test_model_sources, test_datasets and the pipeline's tests."""

from __future__ import annotations

import torch
from torch import nn

FILE = __file__


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class ResidualBNNet(nn.Module):
    """3-channel input of any size, BatchNorm, one residual block, global average pooling."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block = ResidualBlock(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.block(self.stem(x))).flatten(1))


def residual_bn_net(num_classes: int = 10) -> nn.Module:
    """Random init with seed 0, BatchNorm statistics made non-trivial so eval differs from identity."""
    torch.manual_seed(0)
    model = ResidualBNNet(num_classes)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


class TwoInTwoOut(nn.Module):
    """Inputs: an image (N, 3, 8, 8) and a vector (N, 4); outputs: logits (N, 10) and an embedding (N, 6)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.vec = nn.Linear(4, 4)
        self.embed = nn.Linear(4 * 8 * 8 + 4, 6)
        self.head = nn.Linear(6, 10)

    def forward(self, image, features):
        joined = torch.cat([torch.relu(self.conv(image)).flatten(1), torch.tanh(self.vec(features))], dim=1)
        embedding = self.embed(joined)
        return self.head(torch.relu(embedding)), embedding


def two_in_two_out() -> nn.Module:
    torch.manual_seed(0)
    return TwoInTwoOut().eval()


# The --input options these models need (TWO_IN_TWO_OUT_OUTPUTS: the --output names).
RESIDUAL_BN_INPUTS = ("input:float32:[-1,3,16,16]",)
TWO_IN_TWO_OUT_INPUTS = ("image:float32:[-1,3,8,8]", "features:float32:[-1,4]")
TWO_IN_TWO_OUT_OUTPUTS = ("logits", "embedding")
