"""The seed notebook's CNN, unchanged: module names match so the notebook's state_dict loads as is."""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 10
INPUT_SHAPE = (1, 28, 28)  # per image; batches are (N, 1, 28, 28) float32 in [0, 1]
NUM_PARAMETERS = 28_938


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
