"""The kind registry: shipped kinds register themselves, lookups name the registered kinds, and
reading a kind for its schema stays light (no Numba, no torch)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hwq.cost_models import find_kind, kind, kinds
from hwq.cost_models.kind import SHIPPED_MODULES
from hwq.errors import UserError


def test_shipped_kinds_register_in_order():
    assert kinds()[:len(SHIPPED_MODULES)] == ("bitfusion", "bit_serial", "gpu", "mcu", "lut")
    assert all(kind(name).name == name for name in kinds())


def test_unknown_kind_lists_the_registered_ones():
    assert find_kind("nosuchkind") is None and find_kind(None) is None
    with pytest.raises(UserError, match="expected one of bitfusion, bit_serial, gpu, mcu, lut"):
        kind("nosuchkind")


def test_parameter_vectors_are_named():
    for name in ("bitfusion", "bit_serial", "gpu"):
        k = kind(name)
        assert k.params is not None and len(set(k.param_names)) == len(k.param_names) > 0


def test_validating_and_reading_profiles_imports_no_numba():
    code = (
        "import sys\n"
        "from hwq.profile import list_profiles, load_profile, validate_file\n"
        "for n in list_profiles():\n"
        "    p = load_profile(n)\n"
        "    assert validate_file(p.path) == [] and p.default_pairs()\n"
        "print(sorted({'torch', 'numba'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
