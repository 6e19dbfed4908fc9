"""A fake fast runtime for `hwq measure`'s tests: a real class implementing MeasureBackend that
builds every single-layer ONNX model (hwq.measure.single_layer) but runs nothing, so a whole
measurement takes milliseconds. It runs conv and linear layers at 32x32 and 8x8 only."""

from __future__ import annotations

from pathlib import Path

from hwq.measure.shapes import LayerShape
from hwq.measure.single_layer import build_model
from hwq.measure.timing import TimingOptions

FAST = TimingOptions(warmup=1, min_repeats=2, max_repeats=4, min_seconds=0.0, min_sample_s=0.0)
PAIRS = ((32, 32), (8, 8))


class FakeBackend:
    name = "fake"

    def __init__(self, threads: int = 1, int8_form: str = "runtime") -> None:
        self.threads = threads
        self.int8_form = int8_form
        self.built: list[tuple[LayerShape, tuple[int, int]]] = []
        self.forms: list[str] = []  # the int8 form each model was built in
        self.networks: list[str] = []  # the network files sessions were made of (existing)

    def unavailable(self) -> str | None:
        return None

    def why_not(self, op: str, pair: tuple[int, int]) -> str | None:
        if op not in ("conv", "linear"):
            return f"fake runs no {op} layers"
        if pair not in PAIRS:
            return f"fake has no {op} kernel at W{pair[0]}A{pair[1]}"
        return None

    def layer_runner(self, shape: LayerShape, pair: tuple[int, int],
                     int8_form: str | None = None):
        form = int8_form or self.int8_form
        model = build_model(shape, pair, int8_form=form)  # checked by onnx.checker
        self.built.append((shape, pair))
        self.forms.append(form)
        return lambda: model

    def empty_runner(self):
        return lambda: None

    def network_runner(self, model_file: Path, inputs):
        assert Path(model_file).is_file(), model_file  # a session reads its file
        self.networks.append(Path(model_file).name)
        return lambda: None

    def describe(self) -> dict[str, str]:
        return {"runtime": "fake 1.0", "threads": str(self.threads)}
