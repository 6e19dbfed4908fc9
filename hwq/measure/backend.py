"""The measurement backend plug-in: `--runtime NAME` -> an object that says which (op, pair) it
can run and builds one layer, or loads one whole exported network, as a callable that runs it
once (`hwq.measure.timing` times those callables).

A backend is any object with the `MeasureBackend` protocol, registered by name with
`register_backend(name, factory)`; the factory takes the `BackendOptions` (threads, and the int8
form of the single-layer models: `runtime`, as the runtime's own quantizer writes a network, or
`hwq`, as `hwq export --format onnx` writes an int8 layer on a measured device; both requantize
the output). The shipped
backends (`hwq.measure.onnxruntime_backend`) register on the first lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from hwq.errors import UserError
from hwq.measure.shapes import LayerShape

Runner = Callable[[], object]

SHIPPED_MODULES: tuple[str, ...] = ("hwq.measure.onnxruntime_backend",)
# How int8 layers are built and timed (`hwq.measure.single_layer`): `hwq` as hwq export writes
# them (u8 x u8, exact on every CPU; the default: a search on the profile exports that way),
# `runtime` as onnxruntime's quantize_static writes them by default (u8 x s8).
INT8_FORMS: tuple[str, ...] = ("hwq", "runtime")
DEFAULT_INT8_FORM = "hwq"


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs: `threads` of the runtime, and `int8_form` (module doc)."""

    threads: int = 1
    int8_form: str = DEFAULT_INT8_FORM


class MeasureBackend(Protocol):
    """What `hwq measure` needs of a runtime."""

    name: str
    threads: int
    int8_form: str

    def unavailable(self) -> str | None:
        """Why this backend cannot run on this machine (None: it can)."""
        ...

    def why_not(self, op: str, pair: tuple[int, int]) -> str | None:
        """Why it cannot run layers of `op` at `pair` (None: it can)."""
        ...

    def layer_runner(self, shape: LayerShape, pair: tuple[int, int],
                     int8_form: str | None = None) -> Runner:
        """Build the single-layer model of `shape` at `pair` (int8 layers in `int8_form`,
        None: the backend's; `hwq.measure.single_layer`); a callable that runs it once."""
        ...

    def empty_runner(self) -> Runner:
        """A model that computes nothing (one small Identity): a callable whose time is the
        runtime's own cost of one run, which every single-layer time holds once and a whole
        network pays once."""
        ...

    def network_runner(self, model_file: Path, inputs: Mapping[str, np.ndarray]) -> Runner:
        """Load one whole exported network (an ONNX file); a callable that runs it once on
        `inputs`."""
        ...

    def describe(self) -> dict[str, str]:
        """The runtime, its version, provider and settings, for the profile's `sources`."""
        ...


BackendFactory = Callable[[BackendOptions], MeasureBackend]
_BACKENDS: dict[str, BackendFactory] = {}
_loaded = False


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make `--runtime name` build its backend with `factory(options)`."""
    _BACKENDS[name] = factory


def unregister_backend(name: str) -> None:
    _BACKENDS.pop(name, None)


def backend_names() -> tuple[str, ...]:
    _load()
    return tuple(_BACKENDS)


def get_backend(name: str, threads: int = 1, int8_form: str = DEFAULT_INT8_FORM) -> MeasureBackend:
    """The backend `name` with `threads` threads; a UserError naming the known ones, or saying
    why it cannot run here."""
    _load()
    if threads < 1:
        raise UserError(f"--threads: expected a positive number, found {threads}")
    if int8_form not in INT8_FORMS:
        raise UserError(f"--int8-form: expected one of {', '.join(INT8_FORMS)}, "
                        f"found {int8_form!r}")
    factory = _BACKENDS.get(name)
    if factory is None:
        raise UserError(f"--runtime: unknown runtime {name!r}: expected one of "
                        f"{', '.join(_BACKENDS)}")
    backend = factory(BackendOptions(threads, int8_form))
    reason = backend.unavailable()
    if reason:
        raise UserError(f"--runtime {name}: {reason}")
    return backend


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in SHIPPED_MODULES:
            importlib.import_module(module)
