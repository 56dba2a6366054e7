"""The book's seed CNN for cifar2, built three ways (chapter 2), and helpers to inspect models.

- `Net`: an `nn.Module` subclass, the seed network of the source tutorial (54,273 parameters).
  It returns logits (one by default, for `BCEWithLogitsLoss`; `num_outputs=2` for
  `CrossEntropyLoss`), never probabilities.
- `SigmoidNet`: `Net` followed by a sigmoid, the source tutorial's original recipe (pair it with
  `BCELoss`). Same parameters and `state_dict` keys as `Net`; only the race benchmark uses it.
- `sequential_net()`: the same layers as a named `nn.Sequential`.
- `ContainerNet`: the same computation organised in `nn.ModuleList`, `nn.ModuleDict` and
  `nn.Sequential` blocks.

`copy_weights(src, dst)` copies weights between any two of them, so they compute the same function.

Chapter 7's CIFAR-style ResNet: `BasicBlock` (two 3x3 convolutions and a shortcut) and
`resnet(depth, width, num_classes)`, the ResNet-20/32/56 family (depth = 6n + 2).

Chapter 8's ten-class baseline: `SimpleCNN`, the source tutorial's one-convolution network
(conv 3->18, max-pool, fc 4608->64->10; 296,130 parameters).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class Net(nn.Module):
    """The seed CNN: two convolutions, global max-pooling and a small classifier."""

    def __init__(self, num_outputs: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=3, out_channels=32, kernel_size=3)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=5)
        self.dropout = nn.Dropout2d(p=0.1)
        self.adaptive_pool = nn.AdaptiveMaxPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(64, 32)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(32, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.pool(x)
        x = self.conv2(x)
        x = self.pool(x)
        x = self.dropout(x)
        x = self.adaptive_pool(x)
        x = self.flatten(x)
        x = self.linear1(x)
        x = self.relu(x)
        return self.linear2(x)


class SigmoidNet(Net):
    """The source tutorial's original model: Net with a sigmoid on top (use with nn.BCELoss)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().forward(x))


def sequential_net(num_outputs: int = 1) -> nn.Sequential:
    """The seed CNN as an nn.Sequential whose layers have names."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 32, kernel_size=3)),
        ("pool1", nn.MaxPool2d(kernel_size=2, stride=2)),
        ("conv2", nn.Conv2d(32, 64, kernel_size=5)),
        ("pool2", nn.MaxPool2d(kernel_size=2, stride=2)),
        ("dropout", nn.Dropout2d(p=0.1)),
        ("adaptive_pool", nn.AdaptiveMaxPool2d((1, 1))),
        ("flatten", nn.Flatten()),
        ("linear1", nn.Linear(64, 32)),
        ("relu", nn.ReLU()),
        ("linear2", nn.Linear(32, num_outputs)),
    ]))


class ContainerNet(nn.Module):
    """The seed CNN in blocks: a ModuleList of conv blocks and a ModuleDict of named stages."""

    def __init__(self, num_outputs: int = 1):
        super().__init__()
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, 32, kernel_size=3), nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(32, 64, kernel_size=5), nn.MaxPool2d(2)),
        ])
        self.stages = nn.ModuleDict({
            "pool": nn.Sequential(nn.Dropout2d(p=0.1), nn.AdaptiveMaxPool2d((1, 1)), nn.Flatten()),
            "classifier": nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_outputs)),
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        x = self.stages["pool"](x)
        return self.stages["classifier"](x)


def count_parameters(model: nn.Module) -> int:
    """Return the number of parameters (numbers the optimiser can change) in the model."""
    return sum(p.numel() for p in model.parameters())


def copy_weights(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Copy src's parameters and buffers into dst, matched by position, not by name; return dst."""
    src_state, dst_state = src.state_dict(), dst.state_dict()
    if len(src_state) != len(dst_state):
        raise ValueError(f"src has {len(src_state)} tensors, dst has {len(dst_state)}")
    dst.load_state_dict(OrderedDict(zip(dst_state.keys(), src_state.values())))
    return dst


def layer_output_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str, tuple]]:
    """Run x through the model; list (name, type, output shape) for every call of a leaf layer."""
    names = {module: name for name, module in model.named_modules() if not list(module.children())}
    shapes = []

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        shapes.append((names[module], type(module).__name__, tuple(output.shape)))

    handles = [module.register_forward_hook(record) for module in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut: identity, or a strided 1x1 conv-BN on shape change."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 shortcut: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if shortcut:
            self.shortcut = nn.Identity()
            if stride != 1 or in_channels != out_channels:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class ResNet(nn.Module):
    """A CIFAR ResNet: 3x3 stem, three stages of BasicBlocks (width, 2x, 4x), average pool, linear."""

    def __init__(self, blocks_per_stage: int, width: int = 16, num_classes: int = 10,
                 shortcut: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages, channels = [], width
        for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
            stride = 1 if stage == 0 else 2
            blocks = []
            for index in range(blocks_per_stage):
                blocks.append(BasicBlock(channels, out_channels, stride if index == 0 else 1,
                                         shortcut))
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.stages(self.stem(x)))))


def resnet(depth: int = 20, width: int = 16, num_classes: int = 10,
           shortcut: bool = True) -> ResNet:
    """The CIFAR ResNet of `depth` = 6n + 2 layers (20, 32, 56, ...); shortcut=False: a plain net."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth}")
    return ResNet((depth - 2) // 6, width, num_classes, shortcut)


class SimpleCNN(nn.Module):
    """The source tutorial's ten-class baseline: conv 3->18, 2x2 max-pool, fc 4608->64->10."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 18, kernel_size=3, stride=1, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(18 * 16 * 16, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))  # (N, 18, 16, 16)
        x = self.relu(self.fc1(self.flatten(x)))  # (N, 64)
        return self.fc2(x)  # ten logits, one per class
