"""Device profiles: shipped ones validate; every rejection rule names line and key path."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq.errors import ProfileError
from hwq.profile import list_profiles, load_profile, validate_file

ROOT = Path(__file__).resolve().parents[1]
BITFUSION = ROOT / "device_profiles" / "bitfusion.yaml"
BASE = BITFUSION.read_text()
T4 = (ROOT / "device_profiles" / "t4.yaml").read_text()
DATA = Path(__file__).resolve().parent / "data" / "profiles"


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
    assert p.sources, "every shipped profile cites its figures"
    assert all(isinstance(v, str) and v for v in p.sources.values())


def test_shipped_set():
    assert {"bitfusion", "stripes", "loom", "bismo", "unpu", "t4", "a100", "h100",
            "jetson-orin", "stm32h743", "stm32f746", "nrf52840", "gap8"} <= set(list_profiles())
    assert list_profiles() == sorted(list_profiles())
    kinds = {load_profile(n).kind for n in list_profiles()}
    assert {"bitfusion", "bit_serial", "gpu", "mcu"} <= kinds
    assert load_profile("h100").get("tensor_core.int4_ops_per_s", None) is None
    assert load_profile("h100").get("fallback.int4") == "int8"


def test_bitfusion_exact_constants():
    p = load_profile("bitfusion")
    assert p.kind == "bitfusion" and p.clock_hz == 500_000_000
    assert p.bits.weights == p.bits.activations == (1, 2, 3, 4, 5, 6, 7, 8)
    assert p.bits.search_default == (2, 4, 8)
    assert [p.get(f"array.{k}") for k in
            ("rows", "cols", "max_bits", "min_bits", "partial_sum_bits")] == [16, 32, 8, 2, 32]
    assert p.get("buffers.wbuf.read_pj_per_bit") == 0.02136565625
    assert p.get("buffers.wbuf.write_pj_per_bit") == 0.02891615625
    assert p.get("buffers.ibuf.read_pj_per_bit") == 0.059474375
    assert p.get("buffers.ibuf.write_pj_per_bit") == 0.1137040625
    assert p.get("buffers.obuf.read_pj_per_bit") == 0.0331553125
    assert p.get("buffers.obuf.write_pj_per_bit") == 0.0730840625
    assert p.get("offchip.bandwidth_bits_per_cycle") == 192
    assert p.get("offchip.energy_pj_per_bit") == 15.0
    assert p.get("core.energy_pj_per_cycle") == 235.104
    assert [p.get(f"buffers.{b}.size_bytes") for b in ("wbuf", "ibuf", "obuf")] == [
        65536, 32768, 16384]
    assert set(p.data) == {"schema_version", "name", "kind", "description", "clock_hz", "bits",
                           "array", "buffers", "offchip", "core", "sources"}


def test_profile_api():
    p = load_profile("bitfusion")
    assert p.bits["weights"] == p.bits.weights
    assert p.default_pairs() == [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)]
    canonical = json.dumps(json.loads(json.dumps(_plain(p.data))), sort_keys=True,
                           separators=(",", ":"))
    assert p.sha256 == hashlib.sha256(canonical.encode()).hexdigest()
    assert p.get("array.depth", 7) == 7
    with pytest.raises(KeyError):
        p.get("array.depth")
    assert p.resolve_path("t.csv") == BITFUSION.parent / "t.csv"
    assert load_profile(BITFUSION).sha256 == p.sha256


def _plain(value):
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def test_to_yaml_round_trips(tmp_path):
    for name in list_profiles():
        p = load_profile(name)
        again = load_profile(write(tmp_path, p.to_yaml(), f"{name}.yaml"))
        assert again.sha256 == p.sha256, name


# (rule, mutation, expected "KEY.PATH: expected ..." fragment, needle of the reported line)
RULES = [
    ("unknown key", lambda t: t + "colour: blue\n", "colour: expected one of the keys",
     "colour"),
    ("nested unknown key",
     lambda t: t.replace("partial_sum_bits: 32", "partial_sum_bits: 32, spare: 1"),
     "array.spare: expected one of the keys", "spare: 1"),
    ("duplicate key", lambda t: t + "core: {energy_pj_per_cycle: 1.0}\n",
     "core: expected each key once, found a duplicate (first at line 13)",
     "energy_pj_per_cycle: 1.0"),
    ("string for number", lambda t: t.replace("clock_hz: 500000000", "clock_hz: 500e6"),
     "clock_hz: expected a number, found string '500e6' (write 500000000 or 5.0e+8)", "500e6"),
    ("wrong type", lambda t: t.replace("cols: 32", "cols: [32]"),
     "array.cols: expected an integer, found a list", "cols: [32]"),
    ("zero size", lambda t: t.replace("size_bytes: 32768", "size_bytes: 0"),
     "buffers.ibuf.size_bytes: expected a number > 0, found 0", "size_bytes: 0"),
    ("negative size", lambda t: t.replace("size_bytes: 16384", "size_bytes: -16384"),
     "buffers.obuf.size_bytes: expected a number > 0, found -16384", "-16384"),
    ("zero clock", lambda t: t.replace("clock_hz: 500000000", "clock_hz: 0"),
     "clock_hz: expected a number > 0, found 0", "clock_hz"),
    ("zero bandwidth", lambda t: t.replace("bandwidth_bits_per_cycle: 192",
                                           "bandwidth_bits_per_cycle: 0"),
     "offchip.bandwidth_bits_per_cycle: expected a number > 0", "bandwidth_bits_per_cycle: 0"),
    ("negative energy", lambda t: t.replace("energy_pj_per_bit: 15.0", "energy_pj_per_bit: -1"),
     "offchip.energy_pj_per_bit: expected a number >= 0, found -1", "energy_pj_per_bit: -1"),
    ("unknown kind", lambda t: t.replace("kind: bitfusion", "kind: tpu"),
     "kind: expected one of bitfusion, bit_serial, gpu, mcu, lut, found string 'tpu'", "kind:"),
    ("schema version", lambda t: t.replace("schema_version: 1", "schema_version: 2"),
     "schema_version: expected one of 1, found 2", "schema_version"),
    ("bad width", lambda t: t.replace("search_default: [2, 4, 8]", "search_default: [2, 4, 9]"),
     "bits.search_default.2: expected one of 1, 2, 3, 4, 5, 6, 7, 8, 16, 32, found 9", "bits:"),
    ("empty bits", lambda t: t.replace("weights: [1, 2, 3, 4, 5, 6, 7, 8]", "weights: []"),
     "bits.weights: expected a non-empty list, found an empty list", "bits:"),
    ("too many efficiency keys",
     lambda t: T4.replace("launch: 1.0}", "launch: 1.0, kernel: 0.9}"),
     "efficiency: expected at most 3 keys, found 4", "efficiency"),
    ("int4 without tensor cores or fallback",
     lambda t: (ROOT / "device_profiles" / "h100.yaml").read_text().replace("int4: int8, ", ""),
     "fallback.int4: expected int8 or fp16", "fallback:"),
    ("default outside widths",
     lambda t: t.replace("activations: [1, 2, 3, 4, 5, 6, 7, 8]", "activations: [4, 8]"),
     "bits.search_default: expected widths listed in bits.activations, found [2]", "bits:"),
    ("missing key", lambda t: re.sub(r"  core\.energy.*\n", "", t.replace(
        "core: {energy_pj_per_cycle: 235.104}\n", "")),
     "core: expected a value, found nothing", "schema_version"),
    ("missing nested key", lambda t: t.replace(", partial_sum_bits: 32", ""),
     "array.partial_sum_bits: expected a value, found nothing", "array:"),
    ("bad sources key", lambda t: t + "  array.depth: datasheet\n",
     "sources.array.depth: expected the key path", "array.depth"),
    ("non-string source", lambda t: t + "  core: 12\n",
     "sources.core: expected a string, found 12", "  core: 12"),
    ("yaml syntax", lambda t: t.replace("cols: 32,", "cols: [32,"), "YAML syntax error", None),
    ("unknown extends", lambda t: "extends: nosuch\n" + t,
     "extends: expected a shipped profile name (a100, ", "extends"),
]


@pytest.mark.parametrize(("rule", "mutate", "fragment", "needle"), RULES,
                         ids=[r[0] for r in RULES])
def test_each_rejection_rule(tmp_path, rule, mutate, fragment, needle):
    text = mutate(BASE)
    path = write(tmp_path, text)
    problems = validate_file(path)
    assert len(problems) == 1, problems
    (problem,) = problems
    m = re.match(rf"{re.escape(str(path))}:(\d+): (.*)$", problem)
    assert m, problem
    assert fragment in m.group(2), problem
    line = int(m.group(1))
    if needle is not None:
        assert line == line_of(text, needle), problem
    else:
        assert line in (line_of(text, "cols: [32,"), line_of(text, "cols: [32,") + 1), problem
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert exc.value.problems == problems


def test_three_independent_mistakes_all_reported():
    path = DATA / "three_mistakes.yaml"
    text = path.read_text()
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    problems = exc.value.problems
    assert [p.split(": expected")[0] for p in problems] == [
        f"{path}:{line_of(text, 'clock_hz')}: clock_hz",
        f"{path}:{line_of(text, 'size_bytes: 0')}: buffers.ibuf.size_bytes",
        f"{path}:{line_of(text, 'leakage')}: core.leakage_pj_per_cycle",
    ]
    assert str(exc.value) == "\n".join(problems)


def test_extends_overrides_and_hash(tmp_path):
    base = load_profile("bitfusion")
    same = write(tmp_path, "extends: bitfusion\n", "same.yaml")
    assert load_profile(same).sha256 == base.sha256
    bigger = load_profile(DATA / "bigger_array.yaml")
    assert bigger.get("array.rows") == 32 and bigger.get("array.cols") == 32
    assert bigger.name == "bitfusion-32x32" and bigger.sha256 != base.sha256
    assert bigger.sources["array.rows"].startswith("what-if")
    assert bigger.sources["array"] == base.sources["array"]
    child = load_profile(DATA / "extends_child.yaml")  # relative path, two levels
    assert child.get("array.rows") == 32 and child.get("buffers.wbuf.size_bytes") == 131072
    assert child.get("buffers.wbuf.read_pj_per_bit") == 0.02136565625
    assert len({base.sha256, bigger.sha256, child.sha256}) == 3
    bad = write(tmp_path, "extends: bitfusion\narray: {rows: 0}\n", "bad.yaml")
    assert validate_file(bad) == [f"{bad}:2: array.rows: expected a number > 0, found 0"]


def test_cyclic_extends(tmp_path):
    (problem,) = validate_file(DATA / "cycle_a.yaml")
    assert re.search(r"cycle_b\.yaml:1: extends: expected no cycle, found "
                     r"cycle_a\.yaml -> cycle_b\.yaml -> cycle_a\.yaml", problem)
    selfref = write(tmp_path, "extends: self.yaml\n", "self.yaml")
    assert "expected no cycle" in validate_file(selfref)[0]


def test_profile_is_immutable():
    p = load_profile("bitfusion")
    with pytest.raises(TypeError):
        p.data["array"]["rows"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        p.sources["array"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        p.path = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.data["bits"]["weights"].append(3)  # tuples


def test_unknown_name_lists_shipped(tmp_path):
    with pytest.raises(ProfileError, match="bitfusion, gap8"):
        load_profile("nosuchdevice")
    assert validate_file(tmp_path / "missing.yaml")


def test_lut_kind(tmp_path):
    (tmp_path / "m.csv").write_text("op,w_bits,a_bits,latency_s\nconv,4,4,1e-3\nconv,8,8,2e-3\n")
    path = write(tmp_path, "schema_version: 1\nname: mine\nkind: lut\ntable: m.csv\n")
    p = load_profile(path)
    assert p.resolve_path(p.get("table")) == tmp_path / "m.csv"
    assert p.clock_hz is None and p.bits.search_default == (4, 8)
    gone = write(tmp_path, "schema_version: 1\nname: x\nkind: lut\ntable: gone.csv\n", "g.yaml")
    (problem,) = validate_file(gone)
    assert problem.startswith(f"{gone}:4: table: expected an existing file")


def test_import_stays_light():
    code = "import sys, hwq.profile; print(sorted({'torch', 'numba'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["wbuf", "ibuf", "obuf"]), st.integers(1, 2**40))
def test_positive_size_change_stays_valid(tmp_path_factory, buf, delta):
    base = load_profile("bitfusion")
    size = base.get(f"buffers.{buf}.size_bytes") + delta
    tmp = tmp_path_factory.mktemp("prop")
    text = re.sub(rf"({buf}: {{size_bytes: )\d+", rf"\g<1>{size}", BASE)
    path = write(tmp, text)
    assert validate_file(path) == []
    p = load_profile(path)
    assert p.get(f"buffers.{buf}.size_bytes") == size
    assert p.sha256 != base.sha256
