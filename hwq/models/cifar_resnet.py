"""CIFAR ResNet (He et al. 2016, section 4.2): a 3x3 stem of 16 channels, three stages of n
BasicBlocks at 16/32/64 channels on a 32x32 input, global average pooling and a linear layer.

Shortcut choice: the default is option B — a projection (1x1 conv + BatchNorm, torchvision's
`downsample.0/.1`) where the shape changes — because the projection is a quantizable layer that
reads the same tensor as the block's first convolution, as in HAWQ-V3's ResNet-20 (272,474
parameters at 10 classes). `shortcut="A"` gives the paper's parameter-free zero-padding identity
(269,722 parameters).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from hwq.models.resnet import BasicBlock, conv1x1, conv3x3


class PadShortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::2, ::2]
        pad = self.extra_channels // 2
        return nn.functional.pad(x, (0, 0, 0, 0, pad, self.extra_channels - pad))


class CifarResNet(nn.Module):
    def __init__(
        self,
        blocks_per_stage: int = 3,
        num_classes: int = 10,
        shortcut: Literal["A", "B"] = "B",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', found {shortcut!r}")
        self.shortcut = shortcut
        self.inplanes = 16
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, blocks_per_stage, 1)
        self.layer2 = self._make_layer(32, blocks_per_stage, 2)
        self.layer3 = self._make_layer(64, blocks_per_stage, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes:
            if self.shortcut == "B":
                downsample = nn.Sequential(
                    conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes)
                )
            else:
                downsample = PadShortcut(planes - self.inplanes)
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def resnet20(num_classes: int = 10, shortcut: Literal["A", "B"] = "B") -> CifarResNet:
    """ResNet-20 for 32x32 inputs (3 stages of 3 BasicBlocks, 16/32/64 channels)."""
    return CifarResNet(3, num_classes, shortcut)
