"""Bundled text for the language models: Python's own standard library sources, as bytes.

Nothing is downloaded: the `.py` files under `sysconfig.get_paths()["stdlib"]` (without the test
suites, `site-packages` and the demo/tool packages: `EXCLUDED_DIRS`) ship with every Python. Each
file goes to one split by the hash of its path relative to the stdlib (sha256, first byte mod
10: 0 test, 1 validation, else train), so the split is fixed, the same on every machine with the
same Python, and no file is seen in two splits.

Text is tokenized by `ByteTokenizer` (written here, no download): ids 0-255 are the UTF-8 bytes,
`BOS` = 256, `EOS` = 257 (one after every file), `VOCAB_SIZE` = 258. A split is one int64 token
stream; batches are int64 token-id tensors [B, T] (`context` tokens per row): the training
loader draws windows at random starts (a seeded generator), validation and test are fixed windows
spread evenly over their streams. A language model predicts each row's tokens 1..T-1 from the
ones before (`hwq.quant.perplexity`).

A user's own data (`--data package.module:factory`) returns (train, val, test) iterables of
such batches: a tensor [B, T], a tuple/list whose first item is one, or a dict with
`input_ids` (`token_batch`).
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hwq.errors import UserError

BYTES = 256
BOS = 256
EOS = 257
VOCAB_SIZE = 258
CONTEXT = 128
EXCLUDED_DIRS = frozenset({"test", "tests", "site-packages", "dist-packages", "idlelib",
                           "turtledemo", "lib2to3", "__pycache__", "ensurepip"})
SPLITS = ("train", "val", "test")
VAL_WINDOWS = 64
TEST_WINDOWS = 128


class ByteTokenizer:
    """Byte-level tokenizer: UTF-8 bytes 0-255, BOS 256, EOS 257."""

    vocab_size = VOCAB_SIZE
    bos_id = BOS
    eos_id = EOS

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        ids = list(text.encode("utf-8"))
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Any) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < BYTES).decode("utf-8", errors="replace")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relative: str) -> str:
    """The split of a file by its path relative to the stdlib (posix separators)."""
    bucket = hashlib.sha256(relative.encode()).digest()[0] % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


@lru_cache(maxsize=1)
def stdlib_files() -> tuple[str, ...]:
    """The stdlib's `.py` files (relative posix paths, sorted), without `EXCLUDED_DIRS`."""
    root = stdlib_root()
    if not root.is_dir():
        raise UserError(f"the standard library's sources are not at {root} (sysconfig stdlib); "
                        "tinylm trains on them")
    out = []
    for f in root.rglob("*.py"):
        rel = f.relative_to(root)
        if any(p in EXCLUDED_DIRS or p.startswith("config-") for p in rel.parts[:-1]):
            continue
        out.append(rel.as_posix())
    return tuple(sorted(out))


@dataclass(frozen=True)
class TextSplits:
    """The token streams of the three splits and the sha256 of the text they came from."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    sha256: str
    files: dict[str, int]

    def stream(self, split: str) -> np.ndarray:
        return {"train": self.train, "val": self.val, "test": self.test}[split]


@lru_cache(maxsize=1)
def load_text_splits() -> TextSplits:
    """Every file's bytes followed by EOS, concatenated per split in file order."""
    root = stdlib_root()
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    digest = hashlib.sha256()
    eos = np.array([EOS], dtype=np.int64)
    for rel in stdlib_files():
        data = (root / rel).read_bytes()
        digest.update(rel.encode() + b"\0" + data + b"\0")
        parts[split_of(rel)] += [np.frombuffer(data, dtype=np.uint8).astype(np.int64), eos]
    streams = {s: np.concatenate(p) if p else np.zeros(0, np.int64) for s, p in parts.items()}
    for s, tokens in streams.items():
        if len(tokens) < 4 * CONTEXT:
            raise UserError(f"the standard library at {root} gives too little {s} text "
                            f"({len(tokens)} bytes)")
    return TextSplits(streams["train"], streams["val"], streams["test"], digest.hexdigest(),
                      {s: len(p) // 2 for s, p in parts.items()})


def fixed_windows(stream: np.ndarray, count: int, context: int = CONTEXT) -> np.ndarray:
    """int64 [count, context]: windows whose starts are spread evenly over `stream`."""
    last = len(stream) - context
    starts = np.linspace(0, last, num=count).astype(np.int64)
    return np.stack([stream[s : s + context] for s in starts])


def random_windows(stream: np.ndarray, count: int, rng: np.random.Generator,
                   context: int = CONTEXT) -> np.ndarray:
    starts = rng.integers(0, len(stream) - context + 1, size=count)
    return np.stack([stream[s : s + context] for s in starts])


class TrainWindows:
    """An endless-per-epoch iterable of random training windows [B, T] (int64 tensors):
    `steps` batches per pass, drawn by a generator reseeded with `seed` + the pass number."""

    def __init__(self, stream: np.ndarray, batch_size: int, steps: int, seed: int,
                 context: int = CONTEXT) -> None:
        self.stream, self.batch_size, self.steps = stream, batch_size, steps
        self.seed, self.context = seed, context
        self.passes = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        import torch

        rng = np.random.default_rng([self.seed, self.passes])
        self.passes += 1
        for _ in range(self.steps):
            yield torch.from_numpy(random_windows(self.stream, self.batch_size, rng,
                                                  self.context))


def batched(windows: np.ndarray, batch_size: int) -> list[Any]:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(windows))
    return [t[i : i + batch_size] for i in range(0, len(t), batch_size)]


def text_loaders(batch_size: int = 16, seed: int = 0, context: int = CONTEXT,
                 steps_per_epoch: int = 64) -> tuple[Any, Any, Any]:
    """(train, val, test) of the stdlib text: random training windows, `VAL_WINDOWS` and
    `TEST_WINDOWS` fixed windows, all token-id tensors [B, context]."""
    splits = load_text_splits()
    train = TrainWindows(splits.train, batch_size, steps_per_epoch, seed, context)
    val = batched(fixed_windows(splits.val, VAL_WINDOWS, context), batch_size)
    test = batched(fixed_windows(splits.test, TEST_WINDOWS, context), batch_size)
    return train, val, test


def text_calibration(batches: int = 4, batch_size: int = 4) -> list[Any]:
    """Fixed calibration batches: the first windows of an evenly spread set over the training
    stream (independent of any loader's state)."""
    splits = load_text_splits()
    return batched(fixed_windows(splits.train, batches * batch_size), batch_size)


def token_batch(batch: Any, where: str = "--data") -> Any:
    """The int64 token-id tensor [B, T] of one batch: a tensor, the first item of a tuple /
    list, or a dict's `input_ids`."""
    import torch

    x = batch
    if isinstance(batch, dict):
        if "input_ids" not in batch:
            raise UserError(f"{where}: a dict batch without input_ids (found {list(batch)})")
        x = batch["input_ids"]
    elif isinstance(batch, tuple | list):
        if not batch:
            raise UserError(f"{where}: an empty batch")
        x = batch[0]
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserError(f"{where}: expected token-id batches, integer tensors [B, T], found "
                        f"{shape}")
    if x.shape[1] < 2:
        raise UserError(f"{where}: token batches need at least 2 tokens per row, found "
                        f"{tuple(x.shape)}")
    return x.long()
