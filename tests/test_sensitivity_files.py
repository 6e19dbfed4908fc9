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
