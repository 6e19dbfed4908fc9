"""Policies: validation, JSON round trip, ids and arrays in layer order."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq.errors import UserError
from hwq.policy import Policy, policy_id_from_pairs
from hwq.tracing import trace
from hwq.units import parse_pair, parse_pairs, parse_size_bytes, parse_time_s
from tests.small_models import Residual

BITS = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 16, 32])


@pytest.fixture(scope="module")
def graph():
    return trace(Residual(), torch.zeros(1, 3, 8, 8))


def test_array_in_layer_order_and_id(graph):
    p = Policy(w_bits={"c2": 4}, a_bits={"fc": 2}, default=(8, 6))
    arr = p.to_array(graph)
    assert arr.tolist() == [[8, 6], [4, 6], [8, 6], [8, 2]]
    expected = json.dumps([[8, 6], [4, 6], [8, 6], [8, 2]], separators=(",", ":"))
    import hashlib

    assert p.id(graph) == hashlib.sha256(expected.encode()).hexdigest()[:12]
    assert Policy.from_array(graph, arr).id(graph) == p.id(graph)


def test_unknown_layer_and_bad_bits_are_named(graph):
    with pytest.raises(UserError, match="nope"):
        Policy(w_bits={"nope": 4}).to_array(graph)
    with pytest.raises(UserError, match="c1"):
        Policy(w_bits={"c1": 9})
    with pytest.raises(UserError, match=r"\(3, 2\)"):
        Policy.from_array(graph, np.zeros((3, 2), dtype=int))


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["c1", "c2", "c3", "fc"]), st.tuples(BITS, BITS)),
       st.tuples(BITS, BITS))
def test_json_round_trip(layers, default):
    p = Policy({k: v[0] for k, v in layers.items()}, {k: v[1] for k, v in layers.items()},
               default=default, device="bitfusion")
    back = Policy.from_json(p.to_json())
    assert back == p
    names = ["c1", "c2", "c3", "fc"]
    assert back.pairs(names) == p.pairs(names)
    assert policy_id_from_pairs(back.pairs(names)) == policy_id_from_pairs(p.pairs(names))


def test_from_json_errors_name_the_place():
    with pytest.raises(UserError, match="layers.conv1.w_bits"):
        Policy.from_json('{"layers": {"conv1": {"w_bits": 12, "a_bits": 8}}}')
    with pytest.raises(UserError, match="not valid JSON"):
        Policy.from_json("{")


def test_units():
    assert parse_pair("4,8") == (4, 8) and parse_pair("2x4") == (2, 4)
    assert parse_pairs("8x8,4x8,8x8") == [(8, 8), (4, 8)]
    assert parse_pairs("4,8") == [(4, 8)]
    assert parse_size_bytes("256KiB") == 262144 and parse_size_bytes("1MB") == 1e6
    assert parse_time_s("2ms") == pytest.approx(0.002)
    for bad in ("4", "9,8", "a,b", "4x8x2"):
        with pytest.raises(UserError):
            parse_pair(bad)
    with pytest.raises(UserError, match="size"):
        parse_size_bytes("12 parsecs")
