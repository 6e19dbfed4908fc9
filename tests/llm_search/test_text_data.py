"""The bundled text: byte tokens, the split by file-name hash, fixed windows, token batches."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from hwq.errors import UserError
from hwq.text_data import (
    BOS,
    EOS,
    TEST_WINDOWS,
    VAL_WINDOWS,
    VOCAB_SIZE,
    ByteTokenizer,
    fixed_windows,
    load_text_splits,
    split_of,
    stdlib_files,
    text_calibration,
    text_loaders,
    token_batch,
)


def test_byte_tokenizer_round_trips_utf8():
    tok = ByteTokenizer()
    ids = tok.encode("déf x", bos=True, eos=True)
    assert ids == [BOS, 100, 0xC3, 0xA9, 102, 32, 120, EOS]  # é is two UTF-8 bytes
    assert tok.decode(ids) == "déf x"
    assert VOCAB_SIZE == 258


def test_split_is_fixed_by_the_file_name():
    # sha256(name)[0] % 10: 0 test, 1 val, else train -- pinned, so the split never moves
    assert [split_of(n) for n in ("os.py", "typing.py", "email/utils.py", "re/_parser.py",
                                   "ast.py")] == ["train", "train", "val", "val", "test"]
    assert hashlib.sha256(b"ast.py").digest()[0] % 10 == 0


def test_every_file_is_in_one_split_and_every_split_has_text():
    files = stdlib_files()
    assert files == tuple(sorted(files)) and len(set(files)) == len(files)
    assert not any(part in ("test", "tests", "site-packages") for f in files
                   for part in f.split("/")[:-1])
    splits = load_text_splits()
    assert sum(splits.files.values()) == len(files)
    assert splits.files["train"] > splits.files["val"] > 0 and splits.files["test"] > 0
    # each file's bytes then one EOS: EOS count = files in the split
    for name in ("train", "val", "test"):
        stream = splits.stream(name)
        assert stream.dtype == np.int64 and int((stream == EOS).sum()) == splits.files[name]
        assert stream.max() <= EOS and stream.min() >= 0


def test_fixed_windows_start_evenly_over_the_stream():
    stream = np.arange(1000, dtype=np.int64)
    w = fixed_windows(stream, 4, context=10)
    assert w.shape == (4, 10)
    # starts linspace(0, 990, 4) = 0, 330, 660, 990
    assert w[:, 0].tolist() == [0, 330, 660, 990]
    assert (np.diff(w, axis=1) == 1).all()


def test_loaders_yield_token_batches_and_training_windows_are_seeded():
    train, val, test = text_loaders(batch_size=4)
    assert all(b.shape == (4, 128) and b.dtype == torch.int64 for b in val)
    assert sum(len(b) for b in val) == VAL_WINDOWS and sum(len(b) for b in test) == TEST_WINDOWS
    a = next(iter(text_loaders(batch_size=4, seed=3)[0]))
    b = next(iter(text_loaders(batch_size=4, seed=3)[0]))
    c = next(iter(text_loaders(batch_size=4, seed=4)[0]))
    assert torch.equal(a, b) and not torch.equal(a, c)
    first, second = next(iter(train)), next(iter(train))  # a new pass draws new windows
    assert not torch.equal(first, second)
    calib = text_calibration(2)
    assert [tuple(x.shape) for x in calib] == [(4, 128), (4, 128)]


def test_token_batch_accepts_tensors_tuples_and_input_ids():
    x = torch.ones(2, 5, dtype=torch.int32)
    assert token_batch(x).dtype == torch.int64
    assert torch.equal(token_batch((x, "labels")), x.long())
    assert torch.equal(token_batch({"input_ids": x}), x.long())
    with pytest.raises(UserError, match="token-id batches"):
        token_batch(torch.zeros(2, 5))
    with pytest.raises(UserError, match="token-id batches"):
        token_batch(torch.zeros(5, dtype=torch.int64))
    with pytest.raises(UserError, match="input_ids"):
        token_batch({"ids": x})
