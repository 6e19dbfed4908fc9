"""`hwq measure` on the command line with real onnxruntime: a tiny model with --no-end-to-end
(fast), and the full run with whole networks and fitted network terms (slow)."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("onnxruntime")

from hwq.cli import cli, main  # noqa: E402
from hwq.profile import load_profile  # noqa: E402

MODEL = "tests.small_models:Residual"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_measure_no_end_to_end_writes_a_profile_that_validates_and_prices(tmp_path):
    out = tmp_path / "m"
    res = run("measure", MODEL, "--input-shape", "1,3,8,8", "--bits", "32x32,8x8,4x32",
              "--no-end-to-end", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert "9 new, 0 resumed, 3 skipped" in res.stdout  # the three convs at 4x32
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(skipped.op) == ["conv", "conv", "conv"] and set(skipped.w_bits) == {4}
    assert "no conv kernel at W4A32" in res.stderr
    table = pd.read_csv(out / "measured.csv")
    assert len(table) == 4 * 2 + 1  # 4 shapes at fp32 and int8, the fc also at 4x32
    assert not (out / "end_to_end.csv").exists()
    assert run("profile", "validate", str(out / "profile.yaml")).exit_code == 0
    prof = load_profile(out / "profile.yaml")
    assert prof.get("measurement.threads") == "1"
    assert "onnxruntime" in prof.get("measurement.runtime")
    res = run("cost", "--device", str(out / "profile.yaml"), "--model", MODEL,
              "--input-shape", "1,3,8,8", "--bits", "8,8", "--json")
    assert res.exit_code == 0, res.output


def test_measure_bad_input_exits_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["measure", MODEL, "--input-shape", "1,3,8,8", "--bits", "8y8", "-o",
              str(tmp_path / "m")])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["measure", MODEL, "--runtime", "tflite", "-o", str(tmp_path / "m")])
    assert exc.value.code == 2


@pytest.mark.slow
def test_measure_end_to_end_fits_network_terms(tmp_path):
    out = tmp_path / "m"
    res = run("measure", "digits_resnet", "--bits", "8x8,32x32", "-o", str(out))
    assert res.exit_code == 0, res.output
    e2e = pd.read_csv(out / "end_to_end.csv")
    assert {"uniform 8x8", "uniform 32x32", "alternating", "first-half-int8",
            "last-half-int8"} <= set(e2e.policy)
    assert set(e2e.exporter) == {"hwq", "quantize_static", "quantize_static_u8"}
    fitted = e2e[e2e.fits.fillna("") != ""]
    glue = fitted[fitted.fits.str.startswith("glue")]
    assert (abs(glue.predicted_s / glue.measured_s - 1) < 1e-9).all()  # fitted exactly
    prof = load_profile(out / "profile.yaml")
    assert set(prof.get("network.glue_s_per_element")) == {"8x8", "32x32"}
    assert "timed beside every group of layers" in prof.get("measurement.reference")
    res = run("search", "--device", str(out / "profile.yaml"), "--model", "digits_resnet",
              "--objectives", "accuracy,latency", "--generations", "2", "--population", "8",
              "-o", str(tmp_path / "run"))
    assert res.exit_code == 0, res.output
