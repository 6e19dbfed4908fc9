"""Decisions <-> per-layer pairs: layouts, pins, ties, round trips and errors."""

from __future__ import annotations

import numpy as np
import pytest

from hwq.errors import UserError
from hwq.graph import same_input_groups
from hwq.search.encoding import Encoding, parse_pin_specs

PRODUCT = [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)]


def test_product_layout_two_genes_per_layer(digits_graph):
    enc = Encoding(digits_graph, PRODUCT)
    n = len(digits_graph)
    assert enc.mode == "product" and enc.n_var == 2 * n
    assert list(enc.xu[:2]) == [2, 2]
    X = np.zeros((1, enc.n_var), dtype=int)
    X[0, 0], X[0, 1] = 2, 1  # first layer W8A4
    pairs = enc.decode(X)
    assert pairs.shape == (1, n, 2)
    assert tuple(pairs[0, 0]) == (8, 4) and tuple(pairs[0, 1]) == (2, 2)


def test_pairs_layout_sorted_by_cost(digits_graph):
    enc = Encoding(digits_graph, [(8, 8), (4, 4), (4, 8)])
    assert enc.mode == "pairs"
    assert enc.choices == [(4, 4), (4, 8), (8, 8)]
    assert enc.n_var == len(digits_graph)


def test_round_trip_random(digits_graph):
    enc = Encoding(digits_graph, PRODUCT, parse_pin_specs(["first,last=8"], digits_graph))
    rng = np.random.default_rng(0)
    X = rng.integers(enc.xl, enc.xu + 1, size=(50, enc.n_var))
    pairs = enc.decode(X)
    assert np.array_equal(enc.encode(pairs), X)
    assert np.array_equal(enc.decode(enc.encode(pairs)), pairs)


def test_pins_first_last(digits_graph):
    pins = parse_pin_specs(["first,last=8"], digits_graph)
    assert pins == {0: (8, 8), len(digits_graph) - 1: (8, 8)}
    enc = Encoding(digits_graph, PRODUCT, pins)
    assert enc.n_groups == len(digits_graph) - 2
    pairs = enc.decode(np.zeros((3, enc.n_var), dtype=int))
    assert (pairs[:, 0] == 8).all() and (pairs[:, -1] == 8).all()
    assert (pairs[:, 1:-1] == 2).all()
    assert parse_pin_specs([f"{digits_graph.names[2]}=4x8"], digits_graph) == {2: (4, 8)}


def test_tie_same_input_shares_bits(digits_graph):
    enc = Encoding(digits_graph, PRODUCT, tie="same-input")
    tied = [g for g in same_input_groups(digits_graph) if len(g) > 1]
    assert tied, "digits_resnet has a block conv and its downsampling conv on one tensor"
    assert enc.n_groups == len(digits_graph) - sum(len(g) - 1 for g in tied)
    rng = np.random.default_rng(1)
    pairs = enc.decode(rng.integers(enc.xl, enc.xu + 1, size=(20, enc.n_var)))
    for g in tied:
        assert (pairs[:, g] == pairs[:, g[:1]]).all()


@pytest.mark.parametrize(
    "spec, message",
    [
        (["nosuchlayer=8"], "nosuchlayer"),
        (["first=8", "first=4"], "pinned twice"),
        (["first=banana"], "BITS"),
        (["first=9"], "bits"),
    ],
)
def test_pin_errors_name_the_problem(digits_graph, spec, message):
    with pytest.raises(UserError, match=message):
        parse_pin_specs(spec, digits_graph)


def test_encode_rejects_off_pin_policy(digits_graph):
    enc = Encoding(digits_graph, PRODUCT, {0: (8, 8)})
    bad = np.full((1, len(digits_graph), 2), 4)
    with pytest.raises(UserError, match=digits_graph.names[0]):
        enc.encode(bad)
