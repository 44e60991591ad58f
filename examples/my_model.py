"""A model of your own, as `toolkit export --model examples/my_model.py:small_resnet` loads it: a
factory function returning an `nn.Module` (3-channel input, BatchNorm, one residual block, global
average pooling). See docs/your-own-model.md."""

import torch
from torch import nn


class SmallResNet(nn.Module):
    def __init__(self, num_classes: int = 3, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(self.pool(x).flatten(1))


def small_resnet(num_classes: int = 3) -> nn.Module:
    return SmallResNet(num_classes)
