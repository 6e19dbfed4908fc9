"""The MLPerf Tiny reference models: every layer's MACs against a hand count of the reference
architectures (mlcommons/tiny benchmark/training/<task>/), totals within 1 % of X-CUBE-AI 7.3's
ModelMacc, shapes at the natural inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import hwq.models as zoo
from hwq.model_source import load_graph

ROOT = Path(__file__).resolve().parents[2]
XCUBEAI = ROOT / "benchmarks" / "data" / "xcubeai73_footprints.csv"


def conv(h: int, w: int, cin: int, cout: int, k: int | tuple[int, int], groups: int = 1) -> int:
    """MACs of a conv with an h x w output: h·w·cout·(cin/groups)·kh·kw."""
    kh, kw = (k, k) if isinstance(k, int) else k
    return h * w * cout * (cin // groups) * kh * kw


def dw(h: int, c: int) -> int:
    return conv(h, h, c, c, 3, groups=c)


def ic_layers() -> list[int]:
    """ResNet-8, 16 filters, 32x32 input: stem, stack 1 (two 3x3 at 32x32x16), stack 2 (3x3 s2,
    3x3, 1x1 s2 shortcut at 16x16x32), stack 3 (the same at 8x8x64), fc 64 -> 10."""
    return [conv(32, 32, 3, 16, 3),
            conv(32, 32, 16, 16, 3), conv(32, 32, 16, 16, 3),
            conv(16, 16, 16, 32, 3), conv(16, 16, 32, 32, 3), conv(16, 16, 16, 32, 1),
            conv(8, 8, 32, 64, 3), conv(8, 8, 64, 64, 3), conv(8, 8, 32, 64, 1),
            64 * 10]


def vww_layers() -> list[int]:
    """MobileNetV1 alpha 0.25, 96x96: a 3x3 s2 conv to 48x48x8, 13 (depthwise, pointwise) blocks,
    fc 256 -> 2."""
    out = [conv(48, 48, 3, 8, 3)]
    blocks = [(48, 8, 16), (24, 16, 32), (24, 32, 32), (12, 32, 64), (12, 64, 64), (6, 64, 128),
              *[(6, 128, 128)] * 5, (3, 128, 256), (3, 256, 256)]  # (output size, in, out)
    for h, cin, cout in blocks:
        out += [dw(h, cin), conv(h, h, cin, cout, 1)]
    return [*out, 256 * 2]


def kws_layers() -> list[int]:
    """DS-CNN, 49x10x1: a 10x4 s2 conv to 25x5x64, four (depthwise 3x3, pointwise 64) blocks,
    fc 64 -> 12."""
    out = [conv(25, 5, 1, 64, (10, 4))]
    for _ in range(4):
        out += [conv(25, 5, 64, 64, 3, groups=64), conv(25, 5, 64, 64, 1)]
    return [*out, 64 * 12]


def ad_layers() -> list[int]:
    """640-128-128-128-128-8-128-128-128-128-640."""
    widths = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
    return [a * b for a, b in zip(widths[:-1], widths[1:])]


HAND = {"mlperf_tiny_ic": ic_layers, "mlperf_tiny_vww": vww_layers,
        "mlperf_tiny_kws": kws_layers, "mlperf_tiny_ad": ad_layers}
SHAPES = {"mlperf_tiny_ic": ((1, 3, 32, 32), 10), "mlperf_tiny_vww": ((1, 3, 96, 96), 2),
          "mlperf_tiny_kws": ((1, 1, 49, 10), 12), "mlperf_tiny_ad": ((1, 640), 640)}


def xcubeai_macc() -> dict[str, int]:
    with open(XCUBEAI, newline="", encoding="utf-8") as fh:
        return {row["model"]: int(row["macc"]) for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def graphs() -> dict:
    return {name: load_graph(name) for name in HAND}


@pytest.mark.parametrize("name", sorted(HAND))
def test_macs_per_layer_are_the_hand_count(name, graphs):
    assert graphs[name].frame["macs"].tolist() == HAND[name]()


def test_hand_totals():
    assert [sum(HAND[n]()) for n in sorted(HAND)] == [264_192, 12_501_632, 2_656_768, 7_489_664]


@pytest.mark.parametrize("name", sorted(HAND))
def test_macs_within_one_percent_of_xcubeai(name, graphs):
    macc = xcubeai_macc()[name]
    macs = int(graphs[name].frame["macs"].sum())
    # ModelMacc counts a little more than the multiply-accumulates (biases and glue), never less
    assert macs <= macc and macs == pytest.approx(macc, rel=0.01)


@pytest.mark.parametrize("name", sorted(HAND))
def test_natural_input_and_output(name):
    shape, outputs = SHAPES[name]
    assert zoo.natural_input_shape(name) == shape
    model = zoo.load_model(name)
    with torch.no_grad():
        y = model(torch.randn(shape))
    assert y.shape == (1, outputs) and torch.isfinite(y).all()


def test_layer_kinds(graphs):
    kws = graphs["mlperf_tiny_kws"].frame
    assert (kws["groups"] == 64).sum() == 4 and kws["kernel_h"].tolist()[0] == 10
    vww = graphs["mlperf_tiny_vww"].frame
    assert (vww["groups"] > 1).sum() == 13
    assert ((vww["kernel_h"] == 1) & (vww["op"] == "conv")).sum() == 13
    ad = graphs["mlperf_tiny_ad"].frame
    assert set(ad["op"]) == {"linear"} and ad["weight_params"].sum() == 264_192
    ic = graphs["mlperf_tiny_ic"]
    assert ic.frame["weight_params"].sum() == 77_360
    assert ic.names[5] == "stack2.shortcut" and ic.frame["kernel_h"].tolist()[5] == 1


def test_ic_filters_argument():
    wide = load_graph("mlperf_tiny_ic", model_args={"filters": 26})
    assert wide.frame["out_channels"].tolist()[:2] == [26, 26]
