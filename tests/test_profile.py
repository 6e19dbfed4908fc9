"""Device profiles: shipped ones validate; every rejection rule names line and key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq.errors import ProfileError
from hwq.profile import list_profiles, load_profile, validate_file

BITFUSION = (Path(__file__).resolve().parents[1] / "device_profiles" / "bitfusion.yaml")
BASE = BITFUSION.read_text()


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("name", list_profiles())
def test_shipped_profiles_validate(name):
    p = load_profile(name)
    assert p.name == name and validate_file(p.path) == []
    assert set(p.bits.search_default) <= set(p.bits.weights) & set(p.bits.activations)


def test_shipped_kinds_cover_the_design():
    kinds = {load_profile(n).kind for n in list_profiles()}
    assert {"bitfusion", "bit_serial", "gpu", "mcu"} <= kinds


def test_bitfusion_exact_constants():
    p = load_profile("bitfusion")
    assert p.clock_hz == 500_000_000
    assert (p.get("array.rows"), p.get("array.cols")) == (16, 32)
    assert (p.get("array.max_bits"), p.get("array.min_bits")) == (8, 2)
    assert p.get("buffers.wbuf.read_pj_per_bit") == 0.02136565625
    assert p.get("buffers.wbuf.write_pj_per_bit") == 0.02891615625
    assert p.get("buffers.ibuf.read_pj_per_bit") == 0.059474375
    assert p.get("buffers.ibuf.write_pj_per_bit") == 0.1137040625
    assert p.get("buffers.obuf.read_pj_per_bit") == 0.0331553125
    assert p.get("buffers.obuf.write_pj_per_bit") == 0.0730840625
    assert p.get("offchip.energy_pj_per_bit") == 15.0
    assert p.get("core.energy_pj_per_cycle") == 235.104
    assert [p.get(f"buffers.{b}.size_bytes") for b in ("wbuf", "ibuf", "obuf")] == [
        65536, 32768, 16384]
    assert len(p.default_pairs()) == 9


RULES = [
    ("unknown key", lambda t: t + "colour: blue\n", r":(\d+): colour: .*unknown key 'colour'"),
    ("nested unknown key", lambda t: t.replace("partial_sum_bits: 32",
                                               "partial_sum_bits: 32, spare: 1"),
     r":(\d+): array.spare: .*unknown key"),
    ("duplicate key", lambda t: t + "core: {energy_pj_per_cycle: 1.0}\n",
     r":(\d+): core: expected each key once"),
    ("string for number", lambda t: t.replace("clock_hz: 500000000", "clock_hz: 500e6"),
     r":(\d+): clock_hz: expected a number, found string '500e6'"),
    ("zero size", lambda t: t.replace("size_bytes: 32768", "size_bytes: 0"),
     r":(\d+): buffers.ibuf.size_bytes: expected a number > 0, found 0"),
    ("negative size", lambda t: t.replace("size_bytes: 16384", "size_bytes: -16384"),
     r":(\d+): buffers.obuf.size_bytes: expected a number > 0, found -16384"),
    ("unknown kind", lambda t: t.replace("kind: bitfusion", "kind: tpu"),
     r":(\d+): kind: expected one of bitfusion, .*found string 'tpu'"),
    ("bad bits", lambda t: t.replace("search_default: [2, 4, 8]", "search_default: [2, 4, 9]"),
     r":(\d+): bits.search_default.2: expected one of"),
    ("missing key", lambda t: re.sub(r"  core\.energy.*\n", "", t.replace(
        "core: {energy_pj_per_cycle: 235.104}\n", "")),
     r":\d+: core: expected a value, found nothing"),
    ("bad sources key", lambda t: t + "  array.depth: datasheet\n",
     r":(\d+): sources.array.depth: expected the key path"),
]


@pytest.mark.parametrize(("rule", "mutate", "pattern"), RULES, ids=[r[0] for r in RULES])
def test_each_rejection_rule(tmp_path, rule, mutate, pattern):
    text = mutate(BASE)
    path = write(tmp_path, text)
    problems = validate_file(path)
    assert len(problems) == 1, problems
    m = re.search(pattern, problems[0])
    assert m, problems[0]
    assert problems[0].startswith(str(path))
    if m.groups():
        line = int(m.group(1))
        assert 1 <= line <= len(text.splitlines())
        if rule in ("unknown key", "duplicate key"):
            assert line == len(text.splitlines())
    with pytest.raises(ProfileError):
        load_profile(path)


def test_three_independent_mistakes_all_reported(tmp_path):
    text = (BASE.replace("clock_hz: 500000000", "clock_hz: 500e6")
            .replace("rows: 16", "rows: -16")
            .replace("core: {energy_pj_per_cycle: 235.104}",
                     "core: {energy_pj_per_cycle: 235.104, leak: 1}"))
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    problems = exc.value.problems
    assert len(problems) == 3
    expected = {f"{path}:{line_of(text, 'clock_hz')}: clock_hz",
                f"{path}:{line_of(text, 'rows: -16')}: array.rows",
                f"{path}:{line_of(text, 'leak')}: core.leak"}
    assert {p.split(": expected")[0] for p in problems} == expected


def test_extends_overrides_and_hash(tmp_path):
    base = load_profile("bitfusion")
    same = write(tmp_path, "extends: bitfusion\n", "same.yaml")
    assert load_profile(same).sha256 == base.sha256
    bigger = write(tmp_path, "extends: bitfusion\nname: big\narray: {rows: 32}\n", "big.yaml")
    p = load_profile(bigger)
    assert p.get("array.rows") == 32 and p.get("array.cols") == 32 and p.name == "big"
    assert p.sha256 != base.sha256
    bad = write(tmp_path, "extends: bitfusion\narray: {rows: 0}\n", "bad.yaml")
    (problem,) = validate_file(bad)
    assert problem.startswith(f"{bad}:2: array.rows")


def test_cyclic_extends(tmp_path):
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    problems = validate_file(tmp_path / "a.yaml")
    assert any("cycle" in p for p in problems)


def test_profile_is_immutable():
    p = load_profile("bitfusion")
    with pytest.raises(TypeError):
        p.data["array"]["rows"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        p.path = None  # type: ignore[misc]


def test_unknown_name_lists_shipped():
    with pytest.raises(ProfileError, match="bitfusion"):
        load_profile("nosuchdevice")


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["wbuf", "ibuf", "obuf"]), st.integers(1, 2**24))
def test_positive_size_change_stays_valid(tmp_path_factory, buf, size):
    tmp = tmp_path_factory.mktemp("prop")
    path = write(tmp, f"extends: bitfusion\nbuffers: {{{buf}: {{size_bytes: {size}}}}}\n")
    p = load_profile(path)
    assert p.get(f"buffers.{buf}.size_bytes") == size
    assert (p.sha256 == load_profile("bitfusion").sha256) == (
        size == load_profile("bitfusion").get(f"buffers.{buf}.size_bytes"))
