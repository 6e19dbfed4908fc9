"""The lut kind's network terms, against hand formulas: glue per output element in each layer's
latency, the boundary term in hwq.evaluate where a layer's producer runs at another pair, and the
fit that sets them from whole-network times."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from hwq.graph import LayerGraph
from hwq.measure.fit import fit_boundary, fit_glue
from hwq.policy_eval import evaluate
from hwq.profile import load_profile
from hwq.tables import cost_table

# three 1x1 convs in a chain a -> b -> c at batch 1: out elems 8*4*4 = 128, 16*4*4 = 256, 128
ROWS = [
    ("a", 4, 8, ""),
    ("b", 8, 16, "a"),
    ("c", 16, 8, "b"),
]
LAT = {(32, 32): [1e-3, 2e-3, 3e-3], (8, 8): [0.5e-3, 1e-3, 1.5e-3]}


def _graph() -> LayerGraph:
    rows = [dict(name=n, op="conv", batch=1, in_channels=i, out_channels=o, in_h=4, in_w=4,
                 out_h=4, out_w=4, kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, pad_h=0,
                 pad_w=0, groups=1, inputs=src) for n, i, o, src in ROWS]
    return LayerGraph.from_frame(pd.DataFrame(rows))


def _profile(tmp_path, network: str = ""):
    recs = []
    for (w, a), lats in LAT.items():
        for (_, i, o, _src), lat in zip(ROWS, lats):
            recs.append(dict(op="conv", in_channels=i, out_channels=o, in_h=4, in_w=4,
                             kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, groups=1, batch=1,
                             w_bits=w, a_bits=a, latency_s=lat))
    pd.DataFrame(recs).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "p.yaml").write_text(textwrap.dedent("""\
        schema_version: 1
        name: toy-measured
        kind: lut
        table: t.csv
        """) + network)
    return load_profile(tmp_path / "p.yaml")


NETWORK = """\
network:
  glue_s_per_element: {32x32: 1.0e-6, 8x8: -1.0e-7}
  boundary_s_per_element: 2.0e-6
  run_s: 5.0e-5
"""


def test_glue_adds_per_output_element_and_boundary_per_changed_input(tmp_path):
    g = _graph()
    assert list(g.column("out_elems")) == [128, 256, 128]
    assert list(g.column("in_elems")) == [64, 128, 256]
    t = cost_table(g, _profile(tmp_path, NETWORK), [(32, 32), (8, 8)])
    assert np.allclose(t.details["glue_s"][:, 0], [128e-6, 256e-6, 128e-6], rtol=0, atol=1e-18)
    assert np.allclose(t.values["latency_s"][:, 1],
                       [0.5e-3 - 128e-7, 1e-3 - 256e-7, 1.5e-3 - 128e-7], rtol=0, atol=1e-18)
    pol = np.array([[[32, 32], [32, 32], [32, 32]],   # uniform: no boundary
                    [[32, 32], [8, 8], [32, 32]],     # a->b and b->c change: b's and c's inputs
                    [[8, 8], [8, 8], [32, 32]]])      # b->c changes: c's input
    lat = evaluate(t, pol)["latency_s"].to_numpy()
    fp = 6e-3 + 512e-6 + 5e-5  # layers, glue, one run
    assert lat[0] == pytest.approx(fp, rel=1e-12)
    mixed1 = 1e-3 + 128e-6 + 1e-3 - 256e-7 + 3e-3 + 128e-6 + 2e-6 * (128 + 256) + 5e-5
    assert lat[1] == pytest.approx(mixed1, rel=1e-12)
    mixed2 = 0.5e-3 - 128e-7 + 1e-3 - 256e-7 + 3e-3 + 128e-6 + 2e-6 * 256 + 5e-5
    assert lat[2] == pytest.approx(mixed2, rel=1e-12)


def test_a_profile_without_network_terms_sums_its_layers(tmp_path):
    t = cost_table(_graph(), _profile(tmp_path), [(32, 32), (8, 8)])
    pol = np.array([[[32, 32], [8, 8], [32, 32]]])
    assert evaluate(t, pol)["latency_s"].iloc[0] == pytest.approx(1e-3 + 1e-3 + 3e-3, rel=1e-12)
    assert not t.details["glue_s"].any()


def test_fit_reproduces_the_networks_it_is_fitted_on(tmp_path):
    g = _graph()
    lat = np.array([LAT[(32, 32)], LAT[(8, 8)]]).T  # [L, K]
    pairs = [(32, 32), (8, 8)]
    glue = fit_glue(g, lat, pairs, {(32, 32): 7e-3, (8, 8): 2.5e-3})
    assert glue == {"32x32": pytest.approx(1e-3 / 512), "8x8": pytest.approx(-0.5e-3 / 512)}
    with_run = fit_glue(g, lat, pairs, {(32, 32): 7e-3}, run_s=1e-4)
    assert with_run == {"32x32": pytest.approx(0.9e-3 / 512)}
    alt = np.array([[32, 32], [8, 8], [32, 32]])
    rest = 1e-3 + 1e-3 + 3e-3 + (128 + 128) * glue["32x32"] + 256 * glue["8x8"]
    b = fit_boundary(g, lat, pairs, glue, alt, rest + 384 * 3e-6)
    assert b == pytest.approx(3e-6)
    assert fit_boundary(g, lat, pairs, glue, alt, rest - 1e-3) == 0.0  # never negative
    assert fit_boundary(g, lat, pairs, glue, np.full((3, 2), 8), 1.0) is None  # no boundary


def test_network_terms_are_validated(tmp_path):
    from hwq.errors import UserError

    with pytest.raises(UserError, match="network"):
        _profile(tmp_path, "network:\n  glue_s_per_element: {eight: 1.0}\n")
    with pytest.raises(UserError, match="boundary_s_per_element"):
        _profile(tmp_path, "network:\n  boundary_s_per_element: -1.0\n")
