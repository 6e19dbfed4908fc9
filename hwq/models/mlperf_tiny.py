"""The four MLPerf Tiny reference models (mlcommons/tiny, `benchmark/training/<task>/`), written in
torch from the Keras architectures there: the shapes, kernel sizes, strides and channel counts of
every layer are the reference's, so MAC and weight counts are those of the measured int8 .tflite
files (BatchNorm folds into the preceding layer when converted).

* `mlperf_tiny_ic`: ResNet-8 for CIFAR-10 (32x32x3): a 3x3 conv, three stacks of two 3x3 convs
  (16, 32, 64 filters; the second and third stacks start with stride 2 and add a 1x1 stride-2
  conv on the shortcut, without BatchNorm), 8x8 average pooling, a 10-way linear layer. The
  measured results run `pretrainedResnet_quant.tflite`, 16 filters (`filters=16`, the default
  here; the training script's newer default is 26).
* `mlperf_tiny_vww`: MobileNetV1 with alpha 0.25 for Visual Wake Words (96x96x3): a 3x3 stride-2
  conv of 8 filters, 13 depthwise-separable blocks (3x3 depthwise, 1x1 pointwise) from 8 to 256
  channels, 3x3 average pooling, a 2-way linear layer. ReLU, as in the reference (not ReLU6).
* `mlperf_tiny_kws`: DS-CNN for keyword spotting (49x10x1 MFCC): a 10x4 stride-2 conv of 64
  filters, four blocks of 3x3 depthwise + 1x1 pointwise (64), 25x5 average pooling, a 12-way
  linear layer.
* `mlperf_tiny_ad`: the fully connected autoencoder for anomaly detection (640 inputs):
  640-128-128-128-128-8-128-128-128-128-640, each hidden layer with BatchNorm and ReLU.

Keras `padding='same'` pads asymmetrically (one more row below) where the padding is odd; the
torch layers pad symmetrically with the padding that gives the same output size (3x3 stride 2 on
an even input: 1; DS-CNN's 10x4 stride 2 on 49x10: (5, 1) for Keras' 4 above / 5 below, 1 / 1):
shapes, MACs and weights are the reference's, the border pixels a kernel reads differ by a row.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn


def _conv_bn(inp: int, out: int, kernel: int | tuple[int, int], stride: int = 1,
             padding: int | tuple[int, int] = 0, groups: int = 1) -> list[nn.Module]:
    """Conv2d (with bias, as Keras' default) and BatchNorm2d."""
    return [nn.Conv2d(inp, out, kernel, stride, padding, groups=groups, bias=True),
            nn.BatchNorm2d(out)]


# -- IC: ResNet-8 ----------------------------------------------------------------------------------
class ResNet8Stack(nn.Module):
    """Two 3x3 convs (the first may stride 2) plus the shortcut: identity, or a 1x1 conv of the
    same stride (no BatchNorm) where the shape changes."""

    def __init__(self, inp: int, out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(inp, out, 3, stride, 1)
        self.conv2, self.bn2 = _conv_bn(out, out, 3, 1, 1)
        self.relu = nn.ReLU()
        self.shortcut = (nn.Conv2d(inp, out, 1, stride, 0, bias=True)
                         if stride != 1 or inp != out else None)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(identity + y)


class ResNet8(nn.Module):
    def __init__(self, filters: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(3, filters, 3, 1, 1)
        self.relu = nn.ReLU()
        self.stack1 = ResNet8Stack(filters, filters, 1)
        self.stack2 = ResNet8Stack(filters, 2 * filters, 2)
        self.stack3 = ResNet8Stack(2 * filters, 4 * filters, 2)
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(4 * filters, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.stack3(self.stack2(self.stack1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def mlperf_tiny_ic(filters: int = 16, num_classes: int = 10) -> ResNet8:
    """ResNet-8 (MLPerf Tiny image classification); 16 filters as measured."""
    return ResNet8(filters, num_classes)


# -- VWW: MobileNetV1 alpha 0.25 -------------------------------------------------------------------
# (output channels, depthwise stride) of the 13 depthwise-separable blocks at alpha 0.25
VWW_BLOCKS: tuple[tuple[int, int], ...] = (
    (16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2),
    (128, 1), (128, 1), (128, 1), (128, 1), (128, 1), (256, 2), (256, 1),
)


class SeparableBlock(nn.Module):
    """3x3 depthwise conv + BatchNorm + ReLU, then 1x1 pointwise conv + BatchNorm + ReLU."""

    def __init__(self, inp: int, out: int, stride: int) -> None:
        super().__init__()
        self.depthwise, self.bn1 = _conv_bn(inp, inp, 3, stride, 1, groups=inp)
        self.pointwise, self.bn2 = _conv_bn(inp, out, 1)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(self.bn2(self.pointwise(x)))


class MobileNetV1(nn.Module):
    def __init__(self, first_filters: int = 8, blocks: tuple[tuple[int, int], ...] = VWW_BLOCKS,
                 num_classes: int = 2, input_size: int = 96) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(3, first_filters, 3, 2, 1)
        self.relu = nn.ReLU()
        layers, inp, size = [], first_filters, input_size // 2
        for out, stride in blocks:
            layers.append(SeparableBlock(inp, out, stride))
            inp, size = out, size // stride
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(size)
        self.fc = nn.Linear(inp, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def mlperf_tiny_vww(num_classes: int = 2) -> MobileNetV1:
    """MobileNetV1 alpha 0.25 at 96x96 (MLPerf Tiny visual wake words)."""
    return MobileNetV1(num_classes=num_classes)


# -- KWS: DS-CNN -----------------------------------------------------------------------------------
class DSCNN(nn.Module):
    def __init__(self, filters: int = 64, blocks: int = 4, num_classes: int = 12) -> None:
        super().__init__()
        # Keras 'same' on 49x10 with a 10x4 stride-2 kernel: a 25x5 output
        self.conv1, self.bn1 = _conv_bn(1, filters, (10, 4), 2, (5, 1))
        self.relu = nn.ReLU()
        self.drop1 = nn.Dropout(0.2)
        self.blocks = nn.Sequential(*(SeparableBlock(filters, filters, 1) for _ in range(blocks)))
        self.drop2 = nn.Dropout(0.4)
        self.pool = nn.AvgPool2d((25, 5))
        self.fc = nn.Linear(filters, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop1(self.relu(self.bn1(self.conv1(x))))
        x = self.drop2(self.blocks(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def mlperf_tiny_kws(num_classes: int = 12) -> DSCNN:
    """DS-CNN on 49x10 MFCC features (MLPerf Tiny keyword spotting)."""
    return DSCNN(num_classes=num_classes)


# -- AD: fully connected autoencoder ---------------------------------------------------------------
AD_WIDTHS: tuple[int, ...] = (640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640)


class DenseAutoencoder(nn.Module):
    """Linear layers `fc1` ... `fc10`, each but the last followed by `bn<i>` and `relu<i>`."""

    def __init__(self, widths: tuple[int, ...] = AD_WIDTHS) -> None:
        super().__init__()
        layers: dict[str, nn.Module] = {}
        last = len(widths) - 1
        for i, (inp, out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            layers[f"fc{i}"] = nn.Linear(inp, out)
            if i < last:
                layers[f"bn{i}"] = nn.BatchNorm1d(out)
                layers[f"relu{i}"] = nn.ReLU()
        self.layers = nn.Sequential(OrderedDict(layers))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def mlperf_tiny_ad() -> DenseAutoencoder:
    """The 640-128x4-8-128x4-640 dense autoencoder (MLPerf Tiny anomaly detection)."""
    return DenseAutoencoder()
