"""Sensitivity files without torch: the long table (errors name file, line and layer), the
HAWQ-V3 format, and the published HAWQ-V3 tables against the zoo models."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hwq.errors import UserError
from hwq.sensitivity_files import PUBLISHED_DIR, SensitivityTable

# the published tables as the package ships them
REFERENCE = PUBLISHED_DIR


def test_reading_a_sensitivity_file_imports_no_torch(hawq_csv):
    code = (
        "import sys; from hwq.sensitivity_files import SensitivityTable; "
        f"SensitivityTable.read({str(hawq_csv)!r}).proxy([(8, 8)] * 2, ['a', 'b']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_long_table_errors_name_file_line_and_layer(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("layer,w_bits,a_bits,sensitivity\nconv1,4,4,0.1\nfc,9,4,0.2\nfc,4,4,x\n")
    with pytest.raises(UserError) as err:
        SensitivityTable.read(bad)
    msg = str(err.value)
    assert f"{bad}:3: layer fc: w_bits" in msg and f"{bad}:4: layer fc: sensitivity" in msg
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="expected columns layer,w_bits,a_bits,sensitivity"):
        SensitivityTable.read(other)
    with pytest.raises(UserError, match="not found"):
        SensitivityTable.read(tmp_path / "missing.csv")


def test_hawq_v3_format(hawq_csv):
    table = SensitivityTable.read(hawq_csv)
    assert table.tie_groups == {"a": "t1", "b": "t1"}
    names = ["stem", "a", "b", "head"]
    pol = [(8, 8), (4, 8), (8, 4), (8, 8)]
    assert table.proxy(pol, names, pinned=["stem", "head"]) == pytest.approx(
        0.5 * 2.0 + 0.25 * 0.02
    )
    with pytest.raises(UserError, match="stem, head"):
        table.proxy(pol, names)
    with pytest.raises(UserError, match="layer a at w_bits=2"):
        table.proxy([(8, 8), (2, 8), (8, 8), (8, 8)], names, pinned=["stem", "head"])


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_published_hawq_v3_tables_against_zoo_models(arch):
    from hwq.models import load_model
    from hwq.quant.apply import quantizable_layers

    path = REFERENCE / f"hawq_v3_sensitivity_{arch}.csv"
    table = SensitivityTable.read(path)
    ref = pd.read_csv(path)
    names = quantizable_layers(load_model(arch))
    pinned = [names[0], names[-1]]  # the first conv and the fc stay at 8 bits in HAWQ-V3
    arr = np.array([[(4, 8)] * len(names), [(8, 8)] * len(names)])
    got = table.proxy_many(arr, names, pinned=pinned)
    want4 = float((ref.hutchinson_trace_per_param * ref.delta_w4_sq).sum())
    want8 = float((ref.hutchinson_trace_per_param * ref.delta_w8_sq).sum())
    np.testing.assert_allclose(got, [want4, want8], rtol=1e-12)


def test_published_tables_are_named_hawq_v3_and_ship_with_the_package():
    table = SensitivityTable.read("hawq-v3:resnet18")
    by_path = SensitivityTable.read(PUBLISHED_DIR / "hawq_v3_sensitivity_resnet18.csv")
    assert table.frame.equals(by_path.frame) and len(table.layers) == 19
    assert len(SensitivityTable.read("hawq-v3:resnet50").layers) > len(table.layers)
    with pytest.raises(UserError, match="hawq-v3:resnet18, hawq-v3:resnet50"):
        SensitivityTable.read("hawq-v3:vgg16")
    import tomllib

    root = PUBLISHED_DIR.parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "sensitivity_tables/*.csv" in data["package-data"]["hwq"]


# -- matmul rows a table omits (issue 12) ---------------------------------------------------------
TOKEN_LAYERS = ["emb", "q", "k", "v", "attn.matmul0", "attn.matmul1", "o", "head"]
PRODUCT = [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)]


def _token_graph():
    """An embedding, an attention block of 2 heads over 4 tokens (scores and context are matmul
    rows) and an LM head."""
    from hwq.graph import LayerGraph
    from tests.token_graphs import token_frame

    df = token_frame()
    return LayerGraph.from_frame(df)


def _long_file(path, layers, pairs=PRODUCT):
    """Sensitivity (index of the layer + 1) / (w * a) for every layer and pair."""
    rows = [(n, w, a, (TOKEN_LAYERS.index(n) + 1) / (w * a)) for n in layers for w, a in pairs]
    pd.DataFrame(rows, columns=["layer", "w_bits", "a_bits", "sensitivity"]).to_csv(
        path, index=False)
    return path


def test_matmul_rows_a_file_omits_are_pinned_to_the_widest_pair(tmp_path, caplog):
    from hwq.search.encoding import Encoding
    from hwq.search.quality_sources import sensitivity_from_table

    weights = [n for n in TOKEN_LAYERS if "matmul" not in n]
    table = SensitivityTable.read(_long_file(tmp_path / "s.csv", weights))
    enc = Encoding(_token_graph(), PRODUCT)
    with caplog.at_level("WARNING", logger="hwq.search"):
        quality = sensitivity_from_table(table, enc, PRODUCT, "s.csv")
    said = [r.getMessage() for r in caplog.records if "matmul" in r.getMessage()]
    assert said == ["--sensitivity s.csv: 2 matmul row(s) without a sensitivity (attn.matmul0, "
                    "attn.matmul1) pinned to the widest allowed pair W8A8"]
    assert quality.pins == {4: (8, 8), 5: (8, 8)}
    pinned = enc.with_pins(quality.pins)
    assert pinned.n_groups == 6 and [g[0] for g in pinned.groups] == [0, 1, 2, 3, 6, 7]
    # the pinned rows add nothing; every other layer its (index + 1) / (w a)
    pairs = pinned.decode(np.zeros((1, pinned.n_var), dtype=int))  # W2A2 where free
    assert [tuple(p) for p in pairs[0, 4:6]] == [(8, 8), (8, 8)]
    got = quality.evaluate(pairs, ["p"])[0][0]
    assert got == pytest.approx(sum((i + 1) / 4 for i in (0, 1, 2, 3, 6, 7)))


def test_matmul_rows_a_file_lists_are_decisions(tmp_path, caplog):
    from hwq.search.encoding import Encoding
    from hwq.search.quality_sources import sensitivity_from_table

    listed = [n for n in TOKEN_LAYERS if n != "attn.matmul1"]
    table = SensitivityTable.read(_long_file(tmp_path / "s.csv", listed))
    pairs = [(4, 4), (8, 4), (4, 8)]  # a pair list: the widest is W8A4 (most bits, then w)
    enc = Encoding(_token_graph(), pairs)
    with caplog.at_level("WARNING", logger="hwq.search"):
        quality = sensitivity_from_table(table, enc, pairs, "s.csv")
    assert quality.pins == {5: (8, 4)}
    assert sum("1 matmul row(s) without a sensitivity (attn.matmul1)" in r.getMessage()
               for r in caplog.records) == 1
    k = pairs.index((4, 8))
    assert quality.matrix[4, k] == 5 / 32  # attn.matmul0 scored like any layer
    assert quality.matrix[5].tolist() == [0.0, 0.0, 0.0]


def test_other_layers_a_file_omits_are_still_errors(tmp_path):
    from hwq.search.encoding import Encoding
    from hwq.search.quality_sources import sensitivity_from_table

    table = SensitivityTable.read(_long_file(tmp_path / "s.csv", TOKEN_LAYERS[:-1]))
    with pytest.raises(UserError, match="no sensitivity for layer.s. head; a layer missing"):
        sensitivity_from_table(table, Encoding(_token_graph(), PRODUCT), PRODUCT, "s.csv")


def test_search_preparation_pins_the_matmul_rows(tmp_path, caplog):
    from hwq.search.config import SearchConfig
    from hwq.search.prepare import prepare

    layers = tmp_path / "tokens.csv"
    _token_graph().save(layers)
    weights = [n for n in TOKEN_LAYERS if "matmul" not in n]
    sens = _long_file(tmp_path / "s.csv", weights)
    with caplog.at_level("WARNING", logger="hwq.search"):
        prep = prepare(SearchConfig(model=str(layers), device="bitfusion", sensitivity=str(sens),
                                    objectives=["sensitivity", "bops"], pin=["first,last=8"],
                                    verify_top=0))
    assert prep.problem.encoding is prep.encoding
    assert prep.encoding.describe()["pins"] == {
        "emb": "8x8", "attn.matmul0": "8x8", "attn.matmul1": "8x8", "head": "8x8"}
    assert prep.encoding.n_groups == 4  # q, k, v, o
    assert sum("2 matmul row(s)" in r.getMessage() for r in caplog.records) == 1
