"""Bundled real data: scikit-learn's handwritten digits, and the hook for a user's own data.

The digits (1797 images of 8x8 pixels, 10 classes) ship inside scikit-learn, so nothing is
downloaded. They are split once with a fixed seed into 60 % train, 20 % validation (search-time
quality) and 20 % test (verification), stratified by class, and normalised with the mean and
standard deviation of the training pixels. Tensors are (N, 1, 8, 8) float32 and (N,) int64.

A user brings their own data with `package.module:factory`: a callable returning three iterables
of `(inputs, labels)` batches (train, validation, test), e.g. three `DataLoader`s.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from hwq.errors import UserError, user_code_failed

SPLIT_SEED = 0
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
DIGITS_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


@dataclass(frozen=True)
class Split:
    """One split of a data set as whole tensors."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def dataset(self) -> TensorDataset:
        return TensorDataset(self.x, self.y)


@dataclass(frozen=True)
class DigitsData:
    train: Split
    val: Split
    test: Split
    mean: float
    std: float


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


@lru_cache(maxsize=1)
def split_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 60/20/20 index split with the fixed seed (the same on every machine)."""
    _, y = _digits_arrays()
    rng = np.random.default_rng(SPLIT_SEED)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for cls in range(NUM_CLASSES):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        n_train = int(round(SPLIT_FRACTIONS[0] * len(idx)))
        n_val = int(round(SPLIT_FRACTIONS[1] * len(idx)))
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def load_digits_splits() -> DigitsData:
    """The digits as (N, 1, 8, 8) normalised float32 tensors, split 60/20/20 with a fixed seed."""
    images, labels = _digits_arrays()
    train_idx, val_idx, test_idx = split_indices()
    mean = float(images[train_idx].mean())
    std = float(images[train_idx].std())

    def split(idx: np.ndarray) -> Split:
        x = torch.from_numpy((images[idx] - mean) / std).reshape(-1, *DIGITS_SHAPE).contiguous()
        return Split(x, torch.from_numpy(labels[idx]).contiguous())

    return DigitsData(split(train_idx), split(val_idx), split(test_idx), mean, std)


def digits_loaders(
    batch_size: int = 64, seed: int = 0
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val, test) loaders; the training loader shuffles with a generator seeded by
    `seed`."""
    data = load_digits_splits()
    gen = torch.Generator().manual_seed(seed)
    train = DataLoader(data.train.dataset(), batch_size=batch_size, shuffle=True, generator=gen)
    val = DataLoader(data.val.dataset(), batch_size=batch_size * 8)
    test = DataLoader(data.test.dataset(), batch_size=batch_size * 8)
    return train, val, test


def digits_calibration(
    batches: int = 4, batch_size: int = 64
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `batches` x `batch_size` training images in a fixed order: deterministic
    calibration batches that do not depend on any loader's shuffling state."""
    train = load_digits_splits().train
    n = min(batches * batch_size, len(train))
    return [
        (train.x[i : i + batch_size], train.y[i : i + batch_size]) for i in range(0, n, batch_size)
    ]


def load_data(spec: str | None = None, **kwargs: Any) -> tuple[Any, Any, Any]:
    """(train, val, test) loaders: `None`/`"digits"` for the bundled digits, or a
    `package.module:factory` whose call (with `kwargs`) returns three iterables of batches."""
    if spec is None or spec == "digits":
        return digits_loaders(**kwargs)
    if ":" not in spec:
        raise UserError(f"--data: expected 'digits' or package.module:factory, found {spec!r}")
    module_name, attr = spec.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"--data {spec}: cannot import {module_name}: {exc}") from None
    except Exception as exc:  # the user's module failed while importing
        raise user_code_failed(f"--data {spec}: importing {module_name}", exc) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"--data {spec}: {module_name} has no callable {attr!r}")
    try:
        result = factory(**kwargs)
    except UserError:
        raise
    except Exception as exc:
        raise user_code_failed(f"--data {spec}: the data factory", exc) from exc
    if not isinstance(result, tuple | list) or len(result) != 3:
        raise UserError(
            f"--data {spec}: the factory must return (train, val, test) loaders, "
            f"found {type(result).__name__}"
        )
    return tuple(result)  # type: ignore[return-value]


def first_batches(loader: Any, batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `batches` (inputs, labels) pairs of a loader, as a list."""
    out = []
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        out.append((batch[0], batch[1]))
    return out
