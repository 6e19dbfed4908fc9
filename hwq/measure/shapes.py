"""The distinct layer shapes of a LayerGraph, as a `lut` table keys them (op, channels, sizes,
kernel, stride, groups, batch; padding beside them to build the layer): identical shapes are
measured once."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING

from hwq.cost_models.lut import KEY_COLUMNS

if TYPE_CHECKING:
    from hwq.graph import LayerGraph

SHAPE_KEYS: tuple[str, ...] = KEY_COLUMNS[:-2]  # the lut key without (w_bits, a_bits)


@dataclass(frozen=True)
class LayerShape:
    """One row's shape, keyed as the lut kind looks it up (SHAPE_KEYS), plus its padding.

    conv: in_channels, out_channels, in_h x in_w input, kernel, stride, groups, batch samples;
    linear: in_channels -> out_channels over in_h tokens per sample (1: a [batch, C] input);
    matmul: batch x groups products of an [in_h, in_channels] by [in_channels, out_channels]
    operand (in_h = M, in_channels = K, out_channels = N)."""

    op: str
    in_channels: int
    out_channels: int
    in_h: int
    in_w: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    groups: int
    batch: int
    pad_h: int = 0
    pad_w: int = 0

    def key(self) -> tuple[object, ...]:
        """The lut key of this shape (SHAPE_KEYS order)."""
        return astuple(self)[: len(SHAPE_KEYS)]

    def label(self) -> str:
        if self.op == "conv":
            return (f"conv {self.in_channels}->{self.out_channels} {self.in_h}x{self.in_w} "
                    f"k{self.kernel_h}x{self.kernel_w} s{self.stride_h} g{self.groups} "
                    f"b{self.batch}")
        if self.op == "linear":
            return f"linear {self.in_channels}->{self.out_channels} t{self.in_h} b{self.batch}"
        return (f"{self.op} {self.in_h}x{self.in_channels}x{self.out_channels} g{self.groups} "
                f"b{self.batch}")


def graph_shapes(graph: LayerGraph) -> list[LayerShape]:
    """One LayerShape per layer of `graph`, in layer order."""
    cols = [*SHAPE_KEYS, "pad_h", "pad_w"]
    out = []
    for row in graph.frame[cols].itertuples(index=False):
        out.append(LayerShape(str(row[0]), *(int(v) for v in row[1:])))
    return out


def distinct_shapes(graph: LayerGraph) -> list[LayerShape]:
    """The graph's shapes, each lut key once (first occurrence, layer order)."""
    seen: dict[tuple[object, ...], LayerShape] = {}
    for shape in graph_shapes(graph):
        seen.setdefault(shape.key(), shape)
    return list(seen.values())
