"""`hwq search` on the command line: the embedded default, the printed front, bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hwq.runs import Run

from .conftest import DEVICE, HAWQ18


def test_embedded_default_digits_accuracy_and_verification(tmp_path, hwq_cli):
    out = tmp_path / "default"
    code, stdout, err = hwq_cli(
        [
            "search",
            "--device",
            DEVICE,
            "--generations",
            "2",
            "--population",
            "10",
            "--verify-top",
            "1",
            "--verify-epochs",
            "1",
            "-o",
            str(out),
        ]
    )
    assert code == 0, err
    header = stdout.splitlines()[0].split()
    run = Run.open(out)
    from hwq.display import display_unit, table_header

    units = {c: table_header(c, display_unit(c, run.pareto[c])[1])
             for c in ("latency_s", "energy_pj", "weight_bytes")}
    for col in ("policy_id", "w_bits", "a_bits", "accuracy_%", *units.values(), "qat_accuracy_%"):
        assert col in header
    assert run.meta["model"] == "digits_resnet"
    assert run.meta["objectives"] == ["accuracy", "latency", "energy", "weight_memory"]
    front = run.pareto
    assert front["accuracy"].between(0, 1).all() and front["accuracy"].max() > 0.5
    ver = run.verify
    assert list(ver.columns) == [
        "run_id",
        "policy_id",
        "fp32_accuracy",
        "ptq_accuracy",
        "qat_accuracy",
        "epochs",
        "wall_s",
    ]
    assert len(ver) == 1 and ver["policy_id"][0] in set(front["policy_id"])
    assert ver["run_id"][0] == run.meta["run_id"] and ver["epochs"][0] == 1
    # the search-time accuracy is the PTQ accuracy of hwq.quant.ptq (cached per policy id)
    cand = run.candidates
    assert cand.groupby("policy_id")["accuracy"].nunique().max() == 1


def test_json_output(tmp_path, hwq_cli, r18_layers):
    code, stdout, err = hwq_cli(
        [
            "search",
            "--device",
            DEVICE,
            "--model",
            r18_layers,
            "--sensitivity",
            str(HAWQ18),
            "--objectives",
            "sensitivity,latency",
            "--bits",
            "4x4,8x8",
            "--pin",
            "first,last=8",
            "--tie",
            "same-input",
            "--generations",
            "2",
            "--population",
            "10",
            "--verify-top",
            "0",
            "--species",
            "direct",
            "-o",
            str(tmp_path / "j"),
            "--json",
        ]
    )
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["algorithm"] == "nemo" and doc["evaluations"] == 20
    assert {"policy_id", "w_bits", "a_bits", "sensitivity", "latency_s"} <= set(doc["front"][0])
    run = Run.open(tmp_path / "j")
    assert set(run.species["species"]) == {"direct-round", "direct-floor", "local"}
    assert run.config["search"]["tie"] == "same-input"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--objectives", "accuracy,speed"], "unknown objective 'speed'"),
        (["--bits", "16x16"], "16"),
        (["--max", "latency=fast"], "--max latency=fast"),
        (["--pin", "nosuch=8"], "nosuch"),
        (["--algorithm", "ilp"], "sensitivity"),
        (["--population", "3"], "at least one member per species"),
        (["--model", "resnet18"], "--sensitivity FILE"),
    ],
)
def test_bad_input_exits_2(tmp_path, hwq_cli, args, message):
    code, stdout, err = hwq_cli(["search", "--device", DEVICE, "-o", str(tmp_path / "x"), *args])
    assert code == 2, (stdout, err)
    assert message in err
    assert stdout == ""


def test_sensitivity_file_problems_exit_2(tmp_path, hwq_cli, r18_layers):
    base = [
        "search",
        "--device",
        DEVICE,
        "--model",
        r18_layers,
        "--objectives",
        "sensitivity,bops",
        "--bits",
        "4x4,8x8",
        "-o",
        str(tmp_path / "x"),
    ]
    extra = pd.read_csv(HAWQ18)
    extra.loc[len(extra)] = ["layer5.0.conv9", 1, 1, 0.1, 0.1, 0.2, ""]
    bad = tmp_path / "bad.csv"
    extra.to_csv(bad, index=False)
    code, _o, err = hwq_cli([*base, "--sensitivity", str(bad), "--pin", "first,last=8"])
    assert code == 2 and "layer5.0.conv9" in err
    code, _o, err = hwq_cli([*base, "--sensitivity", str(HAWQ18)])  # conv1, fc unpinned
    assert code == 2 and "conv1" in err and "pin" in err


def test_constraint_no_policy_meets(tmp_path, hwq_cli, r18_layers):
    # additive budgets below the cheapest policy fail before the search
    code, _o, err = hwq_cli(
        [
            "search",
            "--device",
            DEVICE,
            "--model",
            r18_layers,
            "--sensitivity",
            str(HAWQ18),
            "--objectives",
            "sensitivity,bops",
            "--bits",
            "4x4,8x8",
            "--pin",
            "first,last=8",
            "--max",
            "latency=1ns",
            "-o",
            str(tmp_path / "y"),
        ]
    )
    assert code == 2 and "no policy meets it; the closest" in err
    # a non-additive one (peak activation memory) is found out by the search
    code, _o, err = hwq_cli(
        [
            "search",
            "--device",
            DEVICE,
            "--model",
            r18_layers,
            "--sensitivity",
            str(HAWQ18),
            "--objectives",
            "sensitivity,bops",
            "--bits",
            "4x4,8x8",
            "--pin",
            "first,last=8",
            "--max",
            "activation_memory=1KiB",
            "--generations",
            "2",
            "--population",
            "10",
            "-o",
            str(tmp_path / "z"),
        ]
    )
    assert code == 2 and "no evaluated policy meets" in err and "the closest is" in err
    assert "activation_memory" in err
