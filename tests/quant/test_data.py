"""Bundled digits: fixed 60/20/20 split, normalisation, loaders, and the user data hook."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from hwq.data import digits_calibration, digits_loaders, load_data, load_digits_splits
from hwq.errors import UserError


def test_split_sizes_disjoint_and_fixed(digits):
    n = len(digits.train) + len(digits.val) + len(digits.test)
    assert n == 1797
    assert abs(len(digits.train) / n - 0.6) < 0.01
    assert abs(len(digits.val) / n - 0.2) < 0.01
    assert abs(len(digits.test) / n - 0.2) < 0.01
    assert digits.train.x.shape[1:] == (1, 8, 8) and digits.train.x.dtype == torch.float32
    assert digits.train.y.dtype == torch.int64
    again = load_digits_splits()
    assert torch.equal(again.test.x, digits.test.x) and torch.equal(again.val.y, digits.val.y)
    # every class in every split (stratified)
    for split in (digits.train, digits.val, digits.test):
        assert split.y.unique().numel() == 10
    # normalised with training statistics
    assert abs(float(digits.train.x.mean())) < 1e-4
    assert abs(float(digits.train.x.std()) - 1.0) < 1e-2


def test_splits_do_not_share_images():
    from hwq.data import split_indices

    tr, va, te = (set(map(int, s)) for s in split_indices())
    assert not (tr & va) and not (tr & te) and not (va & te)


def test_loaders_and_calibration_batches_are_deterministic():
    a = [y for _, y in digits_loaders(32, seed=3)[0]]
    b = [y for _, y in digits_loaders(32, seed=3)[0]]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c1, c2 = digits_calibration(2, 16), digits_calibration(2, 16)
    assert len(c1) == 2 and torch.equal(c1[1][0], c2[1][0])


def test_user_data_factory(tmp_path, monkeypatch):
    (tmp_path / "my_data_mod.py").write_text(
        textwrap.dedent(
            """
            import torch
            def loaders(n=4):
                batch = [(torch.zeros(n, 1, 8, 8), torch.zeros(n, dtype=torch.long))]
                return batch, batch, batch
            def broken():
                return 1
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    train, val, test = load_data("my_data_mod:loaders", n=2)
    assert train[0][0].shape == (2, 1, 8, 8)
    with pytest.raises(UserError, match="train, val, test"):
        load_data("my_data_mod:broken")
    with pytest.raises(UserError, match="no callable 'nothing'"):
        load_data("my_data_mod:nothing")
    with pytest.raises(UserError, match="cannot import"):
        load_data("no_such_module_hwq:f")
    with pytest.raises(UserError, match="package.module:factory"):
        load_data("just_a_name")
    sys.modules.pop("my_data_mod", None)
