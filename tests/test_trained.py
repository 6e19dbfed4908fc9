"""The trained model behind a name: the zoo says which models come trained, asked without torch."""

from __future__ import annotations

import subprocess
import sys

from hwq.models import trained_source
from hwq.trained import has_trained_model, trained_model_kwargs


def test_the_zoo_marks_the_models_that_come_trained():
    assert trained_source("digits_resnet") is not None
    assert trained_source("resnet18") is None
    assert trained_source("pkg.mod:factory") is None
    assert trained_source("layers.parquet") is None


def test_has_trained_model():
    assert has_trained_model("digits_resnet", None, None)
    assert not has_trained_model("digits_resnet", None, "pkg.mod:data")
    assert not has_trained_model("resnet18", None, None)
    assert not has_trained_model("resnet18", "w.pt", None)
    assert has_trained_model("resnet18", "w.pt", "pkg.mod:data")


def test_trained_model_kwargs_pin_the_trained_seed():
    kw = trained_model_kwargs("digits_resnet", None, None, None)
    assert kw == {
        "model": "digits_resnet",
        "weights": None,
        "data": None,
        "model_args": {"seed": 0},
        "seed": 0,
    }
    assert trained_model_kwargs("resnet18", "w.pt", "d:f", {"a": 1})["model_args"] == {"a": 1}


def test_asking_whether_a_model_comes_trained_imports_no_torch():
    code = (
        "import sys; from hwq.trained import has_trained_model; "
        "has_trained_model('digits_resnet', None, None); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
