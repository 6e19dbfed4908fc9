"""The model zoo: built-in architectures by name, and `package.module:factory` paths.

Importing this package is cheap: the architectures (and torch) load only when a model is built.
Other modules add entries with `register(...)`; the modules of PLUGIN_MODULES are imported on
first use of the registry so that they can register themselves.

An entry that comes trained says so with a `Trained` (how to load its weights, its data and its
calibration batches): `trained_source(name)` asks the zoo, without importing torch, instead of
comparing model names.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hwq.errors import UserError, user_code_failed

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "PLUGIN_MODULES",
    "Trained",
    "ZooEntry",
    "load_model",
    "natural_input_shape",
    "register",
    "trained_source",
    "zoo_entry",
    "zoo_names",
]

# Modules imported on first use of the registry so that they can call `register`. A module that
# does not exist is skipped; any other import failure propagates.
PLUGIN_MODULES: tuple[str, ...] = ()


class Trained(NamedTuple):
    """How a zoo model that comes trained loads its weights and data (callables, imported when
    called, so that asking whether a model comes trained imports no torch).

    `load(seed) -> (model in eval mode, info)`: the trained weights of `seed`;
    `loaders(seed=...) -> (train, val, test)`: its data; `calibration(batches)`: fixed
    calibration batches (independent of any loader's shuffling); `model_args`: the model
    arguments the trained model accepts (`seed` picks the weights)."""

    load: Callable[[int], tuple[Any, dict[str, Any]]]
    loaders: Callable[..., tuple[Any, Any, Any]]
    calibration: Callable[[int], Any]
    model_args: frozenset[str] = frozenset({"seed"})


class ZooEntry(NamedTuple):
    factory: Callable[..., Any]
    input_shape: tuple[int, ...]
    description: str


class _Lazy:
    """A factory named by module and attribute, imported when first called."""

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr

    def resolve(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{self.module}:{self.attr}"


_IMAGENET = (1, 3, 224, 224)
_REGISTRY: dict[str, ZooEntry] = {
    "resnet18": ZooEntry(_Lazy("hwq.models.resnet", "resnet18"), _IMAGENET, "ResNet-18, ImageNet"),
    "resnet50": ZooEntry(
        _Lazy("hwq.models.resnet", "resnet50"), _IMAGENET, "ResNet-50 v1.5, ImageNet"
    ),
    "resnext101_32x8d": ZooEntry(
        _Lazy("hwq.models.resnet", "resnext101_32x8d"), _IMAGENET, "ResNeXt-101 32x8d, ImageNet"
    ),
    "mobilenet_v2": ZooEntry(
        _Lazy("hwq.models.mobilenet", "mobilenet_v2"),
        _IMAGENET,
        "MobileNetV2, ImageNet (model arg width=1.0)",
    ),
    "resnet20": ZooEntry(
        _Lazy("hwq.models.cifar_resnet", "resnet20"),
        (1, 3, 32, 32),
        "ResNet-20, CIFAR-10 (1x1-conv projection shortcuts)",
    ),
    "mlperf_tiny_ic": ZooEntry(
        _Lazy("hwq.models.mlperf_tiny", "mlperf_tiny_ic"),
        (1, 3, 32, 32),
        "MLPerf Tiny image classification: ResNet-8, CIFAR-10, 16 filters (as measured)",
    ),
    "mlperf_tiny_vww": ZooEntry(
        _Lazy("hwq.models.mlperf_tiny", "mlperf_tiny_vww"),
        (1, 3, 96, 96),
        "MLPerf Tiny visual wake words: MobileNetV1 alpha 0.25, 96x96",
    ),
    "mlperf_tiny_kws": ZooEntry(
        _Lazy("hwq.models.mlperf_tiny", "mlperf_tiny_kws"),
        (1, 1, 49, 10),
        "MLPerf Tiny keyword spotting: DS-CNN on 49x10 MFCC features",
    ),
    "mlperf_tiny_ad": ZooEntry(
        _Lazy("hwq.models.mlperf_tiny", "mlperf_tiny_ad"),
        (1, 640),
        "MLPerf Tiny anomaly detection: 640-128-128-128-128-8-...-640 dense autoencoder",
    ),
    "digits_resnet": ZooEntry(
        _Lazy("hwq.models.digits", "digits_resnet"),
        (1, 1, 8, 8),
        "small ResNet for the bundled 8x8 digits (trained and cached on first use with "
        "--model-arg pretrained=true or by the quality objectives)",
    ),
}
# the entries that come trained
_TRAINED: dict[str, Trained] = {
    "digits_resnet": Trained(
        _Lazy("hwq.models.digits", "load_trained_digits_resnet"),
        _Lazy("hwq.data", "digits_loaders"),
        _Lazy("hwq.data", "digits_calibration"),
        frozenset({"seed", "pretrained"}),
    ),
}
_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # set first: a plugin calls register() while being imported
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                _plugins_loaded = False
                raise
        except BaseException:
            _plugins_loaded = False
            raise


def register(
    name: str,
    factory: Callable[..., Any],
    input_shape: tuple[int, ...],
    description: str,
    *,
    trained: Trained | None = None,
    replace: bool = False,
) -> None:
    """Add a zoo entry. `input_shape` is the natural example input (N=1); `trained` says how it
    comes trained, if it does. Registering a name twice is an error unless `replace` is true or
    the factory is the same object."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"zoo name must be a non-empty string without ':', found {name!r}")
    if not callable(factory):
        raise TypeError(f"zoo factory for {name!r} must be callable, found {factory!r}")
    shape = tuple(input_shape)
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"input shape for {name!r} must be positive ints, found {input_shape!r}")
    old = _REGISTRY.get(name)
    if old is not None and not replace and old.factory is not factory:
        raise ValueError(f"zoo name {name!r} is already registered ({old.description})")
    _REGISTRY[name] = ZooEntry(factory, shape, description)
    if trained is not None:
        _TRAINED[name] = trained
    else:
        _TRAINED.pop(name, None)


def zoo_names() -> list[str]:
    """The registered zoo names, sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


def zoo_entry(name: str) -> ZooEntry:
    """The entry of a zoo name; UserError listing the known names when unknown."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = ""
        if "." in name:
            hint = " (for a factory outside the zoo write package.module:factory)"
        known = ", ".join(sorted(_REGISTRY))
        raise UserError(f"unknown model {name!r}{hint}; zoo models: {known}") from None


def trained_source(name: str) -> Trained | None:
    """How the zoo model `name` comes trained; None for a model that does not (or is no zoo
    name: a `package.module:factory`, a layer file)."""
    _load_plugins()
    return _TRAINED.get(name)


def natural_input_shape(name: str) -> tuple[int, ...]:
    """The zoo model's natural example input shape (N, C, H, W) with N=1."""
    if ":" in name:
        raise UserError(f"{name}: a model outside the zoo has no natural input; give N,C,H,W")
    return zoo_entry(name).input_shape


def load_model(name_or_path: str, **kwargs: Any) -> nn.Module:
    """Build a model from a zoo name or a `package.module:factory` path (the module may also be
    a `file.py`), passing `kwargs` to the factory. The model is returned in eval mode."""
    from torch import nn

    if ":" in name_or_path:
        factory, label = _resolve_path(name_or_path)
    else:
        entry = zoo_entry(name_or_path)
        factory, label = entry.factory, name_or_path
        if isinstance(factory, _Lazy):
            factory = factory.resolve()

    if isinstance(factory, nn.Module):
        if kwargs:
            raise UserError(f"{label} is a module instance, so it takes no model arguments")
        model = factory
    else:
        if not callable(factory):
            raise UserError(f"{label} is a {type(factory).__name__}, not a callable factory")
        _check_kwargs(factory, label, kwargs)
        try:
            model = factory(**kwargs)
        except UserError:
            raise
        except Exception as exc:  # the user's factory (or arguments) failed: name it
            if ":" not in name_or_path and not kwargs:
                raise  # a zoo factory failing on its defaults is hwq's bug, not the user's
            given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise user_code_failed(f"model factory {label}({given})", exc) from exc
    if not isinstance(model, nn.Module):
        raise UserError(f"{label} returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _check_kwargs(factory: Callable[..., Any], label: str, kwargs: dict[str, Any]) -> None:
    """UserError naming the keyword arguments the factory does not accept."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = sig.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        known = ", ".join(accepted) or "none"
        raise UserError(f"{label}: unknown model argument {names} (accepted: {known})")
    try:
        sig.bind(**kwargs)
    except TypeError as exc:
        raise UserError(f"{label}: {exc}") from None


def _resolve_path(path: str) -> tuple[Any, str]:
    module_name, _, attr = path.rpartition(":")
    if not module_name or not attr:
        raise UserError(f"{path!r}: expected package.module:factory")
    module = _import(module_name, path)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(f"{path}: module {module_name!r} has no attribute {attr!r}") from None
    return obj, path


def _import(module_name: str, path: str) -> Any:
    try:
        if module_name.endswith(".py"):
            return _import_file(Path(module_name))
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Like uvicorn and gunicorn, look in the working directory too (a console script does
            # not put it on sys.path).
            top = module_name.split(".")[0]
            cwd = os.getcwd()
            if exc.name != top or cwd in sys.path or not _in_dir(top, cwd):
                raise
            sys.path.insert(0, cwd)
            return importlib.import_module(module_name)
    except UserError:
        raise
    except Exception as exc:  # the user's module failed to import: name it and the reason
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(
            f"{path}: cannot import {module_name!r}: {type(exc).__name__}: {reason}"
        ) from exc


def _in_dir(top: str, directory: str) -> bool:
    base = Path(directory)
    return (base / f"{top}.py").is_file() or (base / top).is_dir()


def _import_file(file: Path) -> Any:
    if not file.is_file():
        raise UserError(f"{file}: no such file")
    name = f"_hwq_user_model_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise UserError(f"{file}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
