"""The trained model and data behind a model name (DESIGN.md §4, §5): a zoo model that comes
trained (`hwq.models.trained_source`), or any model with `--weights FILE` and `--data
package.module:factory`. Quality objectives, verification, `hwq finetune` and `hwq export` load
it through here; without trained weights and data hwq refuses, never measuring quality on random
weights.

`has_trained_model` and `trained_model_kwargs` import no torch; `load_trained` and
`calibration_batches` do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwq.errors import UserError
from hwq.models import trained_source

NO_WEIGHTS_HINT = (
    "pass --weights FILE (a state dict of the trained model) with --data package.module:factory "
    "(train, val, test loaders), or --sensitivity FILE (a per-layer sensitivity table); hwq never "
    "measures quality on random weights"
)


WEIGHTED_PREFIXES = ("hf:",)  # a model named with its weights: a local Hugging Face directory


def comes_with_weights(model: str) -> bool:
    """Whether MODEL names its trained weights itself (`hf:PATH`, a directory with safetensors),
    so that `--data` alone makes it a trained model."""
    return model.startswith(WEIGHTED_PREFIXES)


def has_trained_model(model: str, weights: str | None, data: str | None) -> bool:
    """Whether `model` has trained weights and data: it comes trained (and no other data is
    named), or both `weights` and `data` are given (`data` alone for a model named with its
    weights, `hf:PATH`)."""
    comes_trained = trained_source(model) is not None
    weighted = weights is not None or comes_with_weights(model)
    return (comes_trained and data is None) or (weighted and data is not None)


def trained_model_kwargs(
    model: str, weights: str | None, data: str | None, model_args: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Keyword arguments of `load_trained` naming the trained model and data (what quality and
    verification jobs receive).

    The trained model never depends on a search's seed: a model that comes trained is the one
    trained with seed 0 unless `--model-arg seed=N` says otherwise."""
    args = dict(model_args or {})
    if trained_source(model) is not None and weights is None:
        args.setdefault("seed", 0)
    return {"model": model, "weights": weights, "data": data, "model_args": args, "seed": 0}


def load_trained(
    model: str,
    *,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    objective: str = "accuracy",
) -> tuple[Any, tuple[Any, Any, Any], dict[str, Any]]:
    """(trained model, (train, val, test) loaders, info). A zoo model that comes trained loads
    (trains and caches on first use) its weights of `--model-arg seed` (default `seed`) unless
    `weights` is given; any other model needs `weights` and `data`."""
    from hwq.data import load_data
    from hwq.models import load_model
    from hwq.models.loading import load_weights

    source = trained_source(model)
    kwargs = dict(model_args or {})
    info: dict[str, Any] = {"model": model}
    if source is not None and weights is None:
        extra = set(kwargs) - source.model_args
        if extra:
            raise UserError(f"{model}: unknown model argument(s) {', '.join(sorted(extra))}")
        net, info = source.load(int(kwargs.get("seed", seed)))
    elif weights is None and comes_with_weights(model):
        net = load_model(model, **kwargs).eval()
        info["weights"] = model
    else:
        if weights is None:
            raise UserError(
                f"the {objective} objective needs trained weights for {model}: " + NO_WEIGHTS_HINT
            )
        net = load_weights(load_model(model, **kwargs), weights).eval()
        info["weights"] = str(weights)
    if data is not None:
        return net, load_data(data), info
    if source is None:
        raise UserError(
            f"the {objective} objective for {model} needs its data: pass --data "
            "package.module:factory returning (train, val, test) loaders"
        )
    return net, source.loaders(seed=seed), info


def calibration_batches(model: str, data: str | None, train: Any, batches: int) -> Any:
    """The calibration data of PTQ and QAT: the fixed calibration batches of a model that comes
    trained (on its own data), else the training loader (its first `batches` are used)."""
    source = trained_source(model)
    if source is not None and data is None:
        return source.calibration(batches)
    return train


def state_dict_sha256(state: Mapping[str, Any]) -> str:
    """sha256 over a state dict's keys (sorted), dtypes, shapes and raw tensor bytes: two
    state dicts hash equal exactly when they hold the same bits."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        digest.update(key.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def trained_weights_sha256(
    model: str, weights: str | None, model_args: Mapping[str, Any] | None = None
) -> str:
    """`state_dict_sha256` of the weights a quality job or verification of `model` uses: the
    bundled trained weights (of `--model-arg seed`, default 0), or `weights` loaded into it."""
    from hwq.models import load_model
    from hwq.models.loading import load_weights

    source = trained_source(model)
    kwargs = dict(model_args or {})
    if source is not None and weights is None:
        net, _info = source.load(int(kwargs.get("seed", 0)))
    elif weights is None and comes_with_weights(model):
        net = load_model(model, **kwargs)
    else:
        if weights is None:
            raise UserError(f"{model}: no trained weights to hash: " + NO_WEIGHTS_HINT)
        net = load_weights(load_model(model, **kwargs), weights)
    return state_dict_sha256(net.state_dict())
