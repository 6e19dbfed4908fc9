"""One source of truth for the widths a device accepts (`hwq.allowed_bits`): cost tables,
`hwq.evaluate`, `hwq cost`, `hwq table`, searches and `hwq finetune` refuse the same widths,
naming the layer and the profile; `hwq cost --policy` refuses another model's policy."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hwq
from hwq.allowed_bits import allowed_masks, check_layers, check_pairs
from hwq.errors import UserError
from hwq.model_source import load_graph
from hwq.policy import Policy


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from hwq.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_masks_are_the_profile_widths_plus_float():
    t4 = hwq.load_profile("t4")  # bits: weights/activations [4, 8, 16, 32]
    w, a = allowed_masks(t4)
    assert np.flatnonzero(w).tolist() == [4, 8, 16, 32]
    assert np.flatnonzero(a).tolist() == [4, 8, 16, 32]
    bitfusion = hwq.load_profile("bitfusion")
    assert np.flatnonzero(allowed_masks(bitfusion)[0]).tolist() == sorted(
        {*bitfusion.bits.weights, 16, 32}
    )


def test_cost_table_refuses_a_width_the_profile_lacks(tmp_cache):
    g = load_graph("digits_resnet")
    with pytest.raises(UserError, match=r"3x3: w_bits=3 is not supported by device t4 .*4, 8"):
        hwq.cost_table(g, hwq.load_profile("t4"), [(4, 4), (3, 3)])
    with pytest.raises(UserError, match=r"4x3: a_bits=3 is not supported by device t4"):
        check_pairs(hwq.load_profile("t4"), [(4, 3)])
    hwq.cost_table(g, hwq.load_profile("t4"), [(4, 8), (16, 16)])  # accepted widths price


def test_evaluate_names_the_layer(tmp_cache):
    g = load_graph("digits_resnet")
    table = hwq.cost_table(g, hwq.load_profile("t4"), [(4, 4), (8, 8)])
    arr = np.full((2, len(g), 2), 8, dtype=np.int64)
    arr[1, 2] = (8, 2)
    with pytest.raises(UserError, match=rf"policy 1: layer {g.names[2]}: a_bits=2 is not "
                                        r"supported by device t4"):
        hwq.evaluate(table, arr)
    with pytest.raises(UserError, match=rf"layer {g.names[0]}: w_bits=5"):
        check_layers(table.profile, g.names, np.array([[5, 8]] + [[8, 8]] * (len(g) - 1)))


def test_cost_and_table_cli_exit_2(capsys, tmp_cache):
    code, out, err = _cli(capsys, "cost", "-d", "t4", "-m", "digits_resnet", "--bits", "3,3")
    assert code == 2 and out == ""
    assert "layer conv1: w_bits=3 is not supported by device t4" in err
    assert "Traceback" not in err
    code, out, err = _cli(capsys, "table", "-d", "t4", "-m", "digits_resnet", "--bits", "3x3")
    assert code == 2 and out == ""
    assert "--bits 3x3: w_bits=3 is not supported by device t4" in err


def test_search_and_finetune_refuse_the_same_width(capsys, tmp_cache, tmp_path):
    with pytest.raises(UserError, match="w_bits=3 is not supported by device t4"):
        hwq.search(device="t4", objectives="bops,latency", bits="3x3,4x4",
                   output_dir=str(tmp_path / "run"), verify_top=0)
    assert not (tmp_path / "run").exists()
    code, out, err = _cli(capsys, "finetune", "-d", "t4", "--bits", "3,3")
    assert code == 2 and "w_bits=3 is not supported by device t4" in err
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps(Policy(w_bits={"fc": 8}, a_bits={"fc": 2}).to_dict()))
    code, out, err = _cli(capsys, "finetune", "-d", "t4", "--policy", str(policy))
    assert code == 2 and f"--policy {policy}: layer fc: a_bits=2 is not supported" in err


def test_cost_policy_of_another_model_needs_force(capsys, tmp_cache, tmp_path):
    other = load_graph("resnet18")
    g = load_graph("digits_resnet")
    policy = Policy(default=(8, 8), graph_hash=other.graph_hash)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(policy.to_dict()))
    code, out, err = _cli(capsys, "cost", "-d", "bitfusion", "-m", "digits_resnet",
                          "--policy", str(path))
    assert code == 2 and out == ""
    assert f"--policy {path}: graph_hash {other.graph_hash} is not the graph_hash" in err
    assert g.graph_hash in err and "--force" in err
    code, out, err = _cli(capsys, "cost", "-d", "bitfusion", "-m", "digits_resnet",
                          "--policy", str(path), "--force", "--json")
    assert code == 0
    assert json.loads(out)["totals"]["bops"] == 64 * json.loads(out)["totals"]["macs"]
    # the model's own policy needs no --force
    path.write_text(json.dumps(Policy(default=(8, 8), graph_hash=g.graph_hash).to_dict()))
    assert _cli(capsys, "cost", "-d", "bitfusion", "-m", "digits_resnet",
                "--policy", str(path))[0] == 0
