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
from hwq.yaml_lines import load_with_lines

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


SHIPPED = {name: (ROOT / "device_profiles" / f"{name}.yaml").read_text()
           for name in list_profiles()}

# (rule, base profile, mutation, expected "KEY.PATH: expected ..." fragment, needle of the line)
RULES = [
    ("unknown key", "bitfusion", lambda t: t + "colour: blue\n",
     "colour: expected one of the keys", "colour"),
    ("nested unknown key", "bitfusion",
     lambda t: t.replace("partial_sum_bits: 32", "partial_sum_bits: 32, spare: 1"),
     "array.spare: expected one of the keys", "spare: 1"),
    ("duplicate key", "bitfusion", lambda t: t + "core: {energy_pj_per_cycle: 1.0}\n",
     "core: expected each key once, found a duplicate (first at line 13)",
     "energy_pj_per_cycle: 1.0"),
    ("non-text key", "bitfusion", lambda t: t + "16: wide\n",
     "(top level): expected text keys, found the key 16", "16: wide"),
    ("string for number", "bitfusion",
     lambda t: t.replace("clock_hz: 500000000", "clock_hz: 500e6"),
     "clock_hz: expected a number, found string '500e6' (write 500000000 or 5.0e+8)", "500e6"),
    ("wrong type", "bitfusion", lambda t: t.replace("cols: 32", "cols: [32]"),
     "array.cols: expected an integer, found a list", "cols: [32]"),
    ("float for integer", "bitfusion", lambda t: t.replace("cols: 32", "cols: 32.0"),
     "array.cols: expected an integer, found 32.0 (write 32)", "cols: 32.0"),
    ("not finite", "bitfusion", lambda t: t.replace("clock_hz: 500000000", "clock_hz: .nan"),
     "clock_hz: expected a finite number, found nan", "clock_hz"),
    ("zero size", "bitfusion", lambda t: t.replace("size_bytes: 32768", "size_bytes: 0"),
     "buffers.ibuf.size_bytes: expected a number > 0, found 0", "size_bytes: 0"),
    ("negative size", "bitfusion",
     lambda t: t.replace("size_bytes: 16384", "size_bytes: -16384"),
     "buffers.obuf.size_bytes: expected a number > 0, found -16384", "-16384"),
    ("zero clock", "bitfusion", lambda t: t.replace("clock_hz: 500000000", "clock_hz: 0"),
     "clock_hz: expected a number > 0, found 0", "clock_hz"),
    ("zero bandwidth", "bitfusion", lambda t: t.replace("bandwidth_bits_per_cycle: 192",
                                                        "bandwidth_bits_per_cycle: 0"),
     "offchip.bandwidth_bits_per_cycle: expected a number > 0", "bandwidth_bits_per_cycle: 0"),
    ("zero dram energy", "bitfusion",
     lambda t: t.replace("energy_pj_per_bit: 15.0", "energy_pj_per_bit: 0"),
     "offchip.energy_pj_per_bit: expected a number > 0, found 0", "energy_pj_per_bit: 0"),
    ("negative core energy", "bitfusion",
     lambda t: t.replace("energy_pj_per_cycle: 235.104", "energy_pj_per_cycle: -1"),
     "core.energy_pj_per_cycle: expected a number > 0, found -1", "energy_pj_per_cycle: -1"),
    ("negative buffer energy", "bitfusion",
     lambda t: t.replace("read_pj_per_bit: 0.059474375", "read_pj_per_bit: -0.06"),
     "buffers.ibuf.read_pj_per_bit: expected a number >= 0, found -0.06", "-0.06"),
    ("zero cores", "gap8", lambda t: t.replace("cores: 8", "cores: 0"),
     "cores: expected a number > 0, found 0", "cores: 0"),
    ("zero lanes", "stripes", lambda t: t.replace("lanes: 4096", "lanes: 0"),
     "compute.lanes: expected a number > 0, found 0", "lanes: 0"),
    ("unknown kind", "bitfusion", lambda t: t.replace("kind: bitfusion", "kind: tpu"),
     "kind: expected one of bitfusion, bit_serial, gpu, mcu, lut, found string 'tpu'", "kind:"),
    ("schema version", "bitfusion",
     lambda t: t.replace("schema_version: 1", "schema_version: 2"),
     "schema_version: expected one of 1, found 2", "schema_version"),
    ("bad width", "bitfusion",
     lambda t: t.replace("search_default: [2, 4, 8]", "search_default: [2, 4, 9]"),
     "bits.search_default.2: expected one of 1, 2, 3, 4, 5, 6, 7, 8, 16, 32, found 9", "bits:"),
    ("empty bits", "bitfusion",
     lambda t: t.replace("weights: [1, 2, 3, 4, 5, 6, 7, 8]", "weights: []"),
     "bits.weights: expected a non-empty list, found an empty list", "bits:"),
    ("default outside widths", "bitfusion",
     lambda t: t.replace("activations: [1, 2, 3, 4, 5, 6, 7, 8]", "activations: [4, 8]"),
     "bits.search_default: expected widths listed in bits.activations, found [2]", "bits:"),
    ("width above max_bits", "bitfusion",
     lambda t: t.replace("weights: [1, 2, 3, 4, 5, 6, 7, 8]", "weights: [2, 4, 8, 16]"),
     "bits.weights: expected widths <= 8 (array.max_bits), found [16]", "bits:"),
    ("width above parallel_bits", "stripes",
     lambda t: t.replace("7, 8, 16], search", "7, 8, 16, 32], search"),
     "bits.activations: expected widths <= 16 (compute.parallel_bits), found [32]", "bits:"),
    ("mcu width above 8", "gap8",
     lambda t: t.replace("weights: [1, 2, 3, 4, 5, 6, 7, 8]", "weights: [2, 4, 8, 32]"),
     "bits.weights: expected widths <= 8 (mcu kernels", "bits:"),
    ("min above max bits", "bitfusion", lambda t: t.replace("min_bits: 2", "min_bits: 9"),
     "array.min_bits: expected at most array.max_bits (8), found 9", "array:"),
    ("efficiency keys", "t4",
     lambda t: re.sub(r"(overlap: [\d.]+)\}", r"\1, kernel: 0.9}", t),
     "efficiency.kernel: expected one of the keys compute, memory, overlap, found unknown key",
     "efficiency:"),
    ("efficiency above 1", "t4", lambda t: re.sub(r"compute: [\d.]+", "compute: 1.5", t),
     "efficiency.compute: expected a number <= 1, found 1.5", "efficiency:"),
    ("int4 without tensor cores or fallback", "h100",
     lambda t: t.replace("int4: int8, ", "").replace(
         "  fallback.int4: \"no INT4 tensor cores on Hopper: int4 computes as int8 "
         "(nunchaku-ai/nunchaku#381)\"\n", ""),
     "fallback.int4: expected int8 or fp16", "fallback:"),
    ("widths below 4 without fallback", "a100",
     lambda t: t.replace("fallback: {below_int4: int4}\n", "").replace(
         "  fallback.below_int4: \"widths 1-3 compute on the int4 tensor cores (policy)\"\n", "")
     .replace("weights: [4, 8, 16, 32]", "weights: [2, 4, 8, 16, 32]"),
     "fallback.below_int4: expected int4, int8 or fp16", "bits:"),
    ("fp32 without its peak", "t4",
     lambda t: re.sub(r"^ *cuda_core.*\n", "", t, flags=re.M),
     "cuda_core.fp32_ops_per_s: expected the FP32 peak (bits lists 32)", "bits:"),
    ("idle above max power", "t4", lambda t: t.replace("idle_w: 10.0", "idle_w: 100.0"),
     "power.idle_w: expected at most power.max_w (70.0), found 100.0", "power:"),
    ("serial law without lanes", "stripes",
     lambda t: re.sub(r"^  (compute\.)?lanes:.*\n", "", t, flags=re.M),
     "compute.lanes: expected the MACs per cycle at full precision", "compute:"),
    ("binary law without array", "bismo",
     lambda t: re.sub(r"  binary_array:.*\n", "", t).replace(
         "  compute.binary_array: \"EECS-NTNU/bismo README (make all: 2 x 64 x 2)\"\n", ""),
     "compute.binary_array: expected {dm, dk, dn}", "compute:"),
    ("bad law", "loom", lambda t: t.replace("law: serial_both", "law: serial_all"),
     "compute.law: expected one of serial_activations, serial_weights, serial_both, "
     "binary_matrix, found string 'serial_all'", "law: serial_all"),
    ("unpack overhead and w4a8 kernel", "stm32h743",
     lambda t: t.replace("  w8a8: {", "  w4a8: {conv: 7, depthwise: 9, pointwise: 6, fc: 8}\n"
                                      "  w8a8: {"),
     "int4_weight_unpack_overhead: expected either it or cycles_per_mac.w4a8, found both",
     "int4_weight_unpack_overhead:"),
    ("bad kernel name", "gap8", lambda t: t.replace("w2a2:", "int2:"),
     "cycles_per_mac.int2: expected a kernel name like w8a8 or w4a8 (w<1-8>a<1-8>), "
     "found 'int2'", "int2:"),
    ("missing key", "bitfusion", lambda t: re.sub(r"  core\.energy.*\n", "", t.replace(
        "core: {energy_pj_per_cycle: 235.104}\n", "")),
     "core: expected a value, found nothing", "schema_version"),
    ("missing nested key", "bitfusion", lambda t: t.replace(", partial_sum_bits: 32", ""),
     "array.partial_sum_bits: expected a value, found nothing", "array:"),
    ("bad sources key", "bitfusion", lambda t: t + "  array.depth: datasheet\n",
     "sources.array.depth: expected the key path", "array.depth"),
    ("non-string source", "bitfusion", lambda t: t + "  core: 12\n",
     "sources.core: expected a string, found 12", "  core: 12"),
    ("empty source", "bitfusion", lambda t: t + "  core: ''\n",
     "sources.core: expected a non-empty text, found string ''", "  core: ''"),
    ("yaml syntax", "bitfusion", lambda t: t.replace("cols: 32,", "cols: [32,"),
     "YAML syntax error", None),
    ("unknown extends", "bitfusion", lambda t: "extends: nosuch\n" + t,
     "extends: expected a shipped profile name (a100, ", "extends"),
]


@pytest.mark.parametrize(("rule", "base", "mutate", "fragment", "needle"), RULES,
                         ids=[r[0] for r in RULES])
def test_each_rejection_rule(tmp_path, rule, base, mutate, fragment, needle):
    text = mutate(SHIPPED[base])
    assert text != SHIPPED[base]
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


def test_zero_buffer_energy_is_allowed(tmp_path):
    text = BASE.replace("write_pj_per_bit: 0.1137040625", "write_pj_per_bit: 0")
    assert validate_file(write(tmp_path, text)) == []


def test_unknown_kind_still_checks_the_common_keys(tmp_path):
    text = BASE.replace("kind: bitfusion", "kind: tpu").replace("clock_hz: 500000000",
                                                                "clock_hz: 500e6")
    path = write(tmp_path, text)
    assert [p.split(": expected")[0] for p in validate_file(path)] == [
        f"{path}:{line_of(text, 'kind:')}: kind", f"{path}:{line_of(text, 'clock_hz')}: clock_hz"]


def test_unknown_kind_still_reports_unknown_top_level_keys(tmp_path):
    # three mistakes: the kind, a common key's value, a key no kind declares; the bitfusion
    # keys (array, buffers, ...) are some kind's keys, so they are not reported as unknown
    text = (BASE.replace("kind: bitfusion", "kind: tpu")
            .replace("clock_hz: 500000000", "clock_hz: 0") + "wibble: 3\n")
    path = write(tmp_path, text)
    problems = validate_file(path)
    assert [p.split(": expected")[0] for p in problems] == [
        f"{path}:{line_of(text, 'kind:')}: kind", f"{path}:{line_of(text, 'clock_hz')}: clock_hz",
        f"{path}:{line_of(text, 'wibble')}: wibble"]
    assert problems[-1].endswith("found unknown key 'wibble'")
    assert "bitfusion, bit_serial, gpu, mcu, lut" in problems[-1]


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


def _leaves(node, path=()):
    if hasattr(node, "items"):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path, node


@pytest.mark.parametrize("name", list_profiles())
def test_shipped_figures_cite_a_source_and_unknowns_name_their_default(name):
    p = load_profile(name)
    cited = {tuple(k.split(".")) for k in p.sources}
    for path, value in _leaves(p.data):
        provenance = ("schema_version", "bits", "sources", "calibration")
        if path[0] in provenance or isinstance(value, str):
            continue
        assert any(path[:n] in cited for n in range(1, len(path) + 1)), (name, path)
    for key, source in p.sources.items():
        if not source.startswith("unknown"):
            continue
        parts = tuple(key.split("."))
        text, lines = _file_setting(p.path, parts)  # the file of the extends chain that sets it
        marked = [text[lines[parts[:n]] - 1] for n in range(1, len(parts) + 1)
                  if parts[:n] in lines]
        assert any("#" in line for line in marked), (name, key, "needs a YAML comment")


def _file_setting(path, parts):
    """(lines of text, key path -> line) of the file in `path`'s extends chain that sets the key
    path `parts` (the profile itself first, then its bases)."""
    while True:
        raw = path.read_text()
        data, lines, _ = load_with_lines(raw, str(path))
        if parts in lines or "extends" not in data:
            return raw.splitlines(), lines
        path = ROOT / "device_profiles" / f"{data['extends']}.yaml"


def test_profiles_hash_and_compare_by_content():
    a, b = load_profile("bitfusion"), load_profile("bitfusion")
    assert a == b and hash(a) == hash(b) and len({a, b, load_profile("t4")}) == 2


def test_extends_from_another_directory_keeps_the_table(tmp_path):
    base_dir, child_dir = tmp_path / "base", tmp_path / "elsewhere" / "deeper"
    base_dir.mkdir()
    child_dir.mkdir(parents=True)
    (base_dir / "m.csv").write_text("op,w_bits,a_bits,latency_s\nconv,8,8,2e-3\n")
    write(base_dir, "schema_version: 1\nname: base\nkind: lut\ntable: m.csv\n", "base.yaml")
    child = write(child_dir, "extends: ../../base/base.yaml\nname: child\n", "child.yaml")
    assert validate_file(child) == []
    p = load_profile(child)
    assert p.get("table") == "../../base/m.csv"
    assert p.resolve_path(p.get("table")).resolve() == (base_dir / "m.csv").resolve()


# the size keys of every shipped profile (any key ending _bytes)
SIZE_KEYS = [(name, ".".join(path)) for name in list_profiles()
             for path, _ in _leaves(load_profile(name).data)
             if path[0] != "sources" and path[-1].endswith("_bytes")]


def _nested(key_path: str, value: int) -> str:
    """YAML that sets one dotted key (deep merge keeps the siblings), e.g. `a:\n  b: 1`."""
    parts = key_path.split(".")
    return "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(parts[:-1])) + (
        f"{'  ' * (len(parts) - 1)}{parts[-1]}: {value}\n")


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SIZE_KEYS), st.integers(1, 2**40))
def test_positive_size_change_stays_valid(tmp_path_factory, size_key, delta):
    name, key = size_key
    base = load_profile(name)
    size = base.get(key) + delta
    path = write(tmp_path_factory.mktemp("prop"), f"extends: {name}\n" + _nested(key, size))
    assert validate_file(path) == []
    p = load_profile(path)
    assert p.get(key) == size
    assert p.sha256 != base.sha256
    assert {k: v for k, v in _leaves(p.data) if ".".join(k) != key} == {
        k: v for k, v in _leaves(base.data) if ".".join(k) != key}


def test_extends_null_removes_a_key_and_its_sources(tmp_path):
    text = ("extends: a100\nname: a100-no-int4\ntensor_core: {int4_ops_per_s: ~}\n"
            "fallback: {int4: int8}\n")
    p = load_profile(write(tmp_path, text))
    assert p.get("tensor_core.int4_ops_per_s", None) is None
    assert p.get("tensor_core.int8_ops_per_s") == 624.0e12
    assert "tensor_core" in p.sources  # the section's source stays; nothing cites the gone key
    bare = write(tmp_path, "extends: a100\ntensor_core: {int4_ops_per_s: ~}\n", "bare.yaml")
    (problem,) = validate_file(bare)
    assert "fallback.int4: expected int8 or fp16" in problem
