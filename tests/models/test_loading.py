"""--model-arg / --input-shape parsing and state dict loading."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hwq.errors import UserError
from hwq.models.cifar_resnet import resnet20
from hwq.models.loading import load_weights, parse_input_shape, parse_model_args, parse_value

# -- parse_model_args ------------------------------------------------------------------------------
keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


def test_model_args_examples() -> None:
    assert parse_model_args([]) == {}
    assert parse_model_args(
        ["width=0.35", "num_classes=10", "pretrained=False", "act=relu", " eps = 1e-5 ", "x=a=b"]
    ) == {
        "width": 0.35,
        "num_classes": 10,
        "pretrained": False,
        "act": "relu",
        "eps": 1e-5,
        "x": "a=b",
    }
    assert parse_model_args(["flag=TRUE", "n=-3", "s=", "f=.5", "g=nan"]) == {
        "flag": True,
        "n": -3,
        "s": "",
        "f": 0.5,
        "g": "nan",
    }


@pytest.mark.parametrize(
    "pairs, words",
    [
        (["width"], ["K=V", "'width'"]),
        (["width=1", "depth"], ["'depth'"]),
        (["=3"], ["not a valid argument name"]),
        (["num classes=3"], ["'num classes'"]),
        (["w=1", "w=2"], ["'w'", "more than once"]),
    ],
)
def test_model_args_errors(pairs: list[str], words: list[str]) -> None:
    with pytest.raises(UserError) as info:
        parse_model_args(pairs)
    for word in words:
        assert word in str(info.value)


@given(keys, st.integers(min_value=-(10**30), max_value=10**30))
def test_int_values_round_trip(key: str, value: int) -> None:
    parsed = parse_model_args([f"{key}={value}"])[key]
    assert type(parsed) is int and parsed == value


@given(keys, st.floats(allow_nan=False, allow_infinity=False))
def test_float_values_round_trip(key: str, value: float) -> None:
    text = repr(value)
    parsed = parse_model_args([f"{key}={text}"])[key]
    if "." in text or "e" in text:
        assert type(parsed) is float and parsed == value
    else:
        assert parsed == value


@given(keys, st.booleans(), st.sampled_from([str.lower, str.upper, str.title]))
def test_bool_values(key: str, value: bool, case) -> None:  # type: ignore[no-untyped-def]
    assert parse_model_args([f"{key}={case(str(value))}"])[key] is value


@given(keys, st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20))
def test_other_values_stay_strings(key: str, text: str) -> None:
    text = text.strip()
    parsed = parse_model_args([f"{key}={text}"])[key]
    if isinstance(parsed, str):
        assert parsed == text
    elif isinstance(parsed, bool):
        assert text.lower() in ("true", "false")
    else:
        assert text.isascii() and math.isfinite(parsed) and parsed == float(text)


def test_parse_value_does_not_take_unicode_digits() -> None:
    assert parse_value("٣") == "٣"
    assert parse_value("inf") == "inf"
    assert parse_value("1_000") == "1_000"


# -- parse_input_shape -----------------------------------------------------------------------------
@given(
    st.lists(st.integers(min_value=1, max_value=10**6), min_size=2, max_size=6),
    st.sampled_from([",", ", ", " , "]),
)
def test_input_shape_round_trip(shape: list[int], sep: str) -> None:
    assert parse_input_shape(sep.join(map(str, shape))) == tuple(shape)


@given(st.lists(st.integers(min_value=-5, max_value=5), min_size=1, max_size=6))
def test_input_shape_rejects_bad_sizes(shape: list[int]) -> None:
    text = ",".join(map(str, shape))
    if len(shape) >= 2 and all(s > 0 for s in shape):
        assert parse_input_shape(text) == tuple(shape)
    else:
        with pytest.raises(UserError, match="--input-shape"):
            parse_input_shape(text)


@pytest.mark.parametrize(
    "text", ["", "1", "64", "1,3,32.0,32", "1,3,,32", "1x3x32x32", "a,b", "1,٣,2"]
)
def test_input_shape_errors(text: str) -> None:
    with pytest.raises(UserError, match="--input-shape"):
        parse_input_shape(text)


def test_input_shape_forms() -> None:
    assert parse_input_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_input_shape("8,16,100") == (8, 16, 100)
    assert parse_input_shape("4,64") == (4, 64)
    assert parse_input_shape("1,3,8,32,32") == (1, 3, 8, 32, 32)  # video / volumes: any rank


# -- load_weights ----------------------------------------------------------------------------------
@pytest.fixture
def source() -> torch.nn.Module:
    torch.manual_seed(0)
    model = resnet20()
    for p in model.parameters():  # make every tensor distinguishable from a fresh init
        p.data.add_(1.0)
    return model


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k])


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix"])
def test_load_weights(source: torch.nn.Module, tmp_path: Path, wrap: str) -> None:
    state = source.state_dict()
    obj: object = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer": {"lr": 0.1}},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "w.pt"
    torch.save(obj, path)
    target = resnet20()
    assert load_weights(target, path) is target
    _assert_same(source, target)


def test_load_weights_lists_missing_and_unexpected(source: torch.nn.Module, tmp_path: Path) -> None:
    state = source.state_dict()
    dropped = [k for k in state if k.startswith("layer3.")]
    for k in dropped:
        del state[k]
    state["extra.a"] = torch.zeros(1)
    state["extra.b"] = torch.zeros(1)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(UserError) as info:
        load_weights(resnet20(), path)
    message = str(info.value)
    assert "\n" not in message
    assert f"missing keys ({len(dropped)})" in message
    assert all(k in message for k in dropped[:5])
    assert dropped[5] not in message and f"+{len(dropped) - 5} more" in message
    assert "unexpected keys (2): extra.a, extra.b" in message


def test_load_weights_shape_mismatch(source: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    with pytest.raises(UserError, match=r"shape mismatches \(2\): fc.weight \(10, 64\)"):
        load_weights(resnet20(num_classes=7), path)


class _NotATensor:
    pass


def test_load_weights_bad_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_weights(resnet20(), tmp_path / "absent.pt")
    pickled = tmp_path / "pickled.pt"
    with open(pickled, "wb") as f:
        pickle.dump({"w": _NotATensor()}, f, protocol=2)
    with pytest.raises(UserError, match="weights-only.*Unsupported global.*_NotATensor"):
        load_weights(resnet20(), pickled)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pt"):
        load_weights(resnet20(), garbage)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(UserError, match="expected a state dict.*Tensor"):
        load_weights(resnet20(), tensor)
