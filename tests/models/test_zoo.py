"""The model zoo: torchvision-compatible architectures, the registry and load_model."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import hwq.models as zoo
from hwq.errors import UserError
from hwq.models.cifar_resnet import resnet20
from hwq.models.mobilenet import make_divisible, mobilenet_v2
from hwq.models.resnet import resnet18, resnet50, resnext101_32x8d

FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnext101_32x8d": resnext101_32x8d,
    "mobilenet_v2": mobilenet_v2,
    "resnet20": resnet20,
}
_BUILT: dict[str, nn.Module] = {}


def built(name: str) -> nn.Module:
    """One instance per architecture for the whole module (ResNeXt-101 takes a second to build)."""
    if name not in _BUILT:
        _BUILT[name] = FACTORIES[name]().eval()
    return _BUILT[name]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- architectures ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet18", 11_689_512),
        ("resnet50", 25_557_032),
        ("resnext101_32x8d", 88_791_336),
        ("mobilenet_v2", 3_504_872),
        ("resnet20", 272_474),  # option-B shortcuts; option A is 269,722
    ],
)
def test_parameter_counts_match_torchvision(name: str, expected: int) -> None:
    assert n_params(built(name)) == expected


def test_resnet20_option_a_shortcut() -> None:
    model = resnet20(shortcut="A").eval()
    assert n_params(model) == 269_722
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_forward_at_natural_input(name: str) -> None:
    shape = zoo.natural_input_shape(name)
    with torch.no_grad():
        out = built(name)(torch.randn(shape))
    classes = 10 if name == "resnet20" else 1000
    assert out.shape == (1, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name, keys",
    [
        (
            "resnet18",
            [
                "conv1.weight",
                "bn1.running_mean",
                "layer1.0.conv1.weight",
                "layer1.1.bn2.num_batches_tracked",
                "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.running_var",
                "layer4.1.conv2.weight",
                "fc.weight",
                "fc.bias",
            ],
        ),
        (
            "resnet50",
            ["layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.bias"],
        ),
        ("resnext101_32x8d", ["layer3.22.conv2.weight", "layer4.0.downsample.1.weight"]),
        (
            "mobilenet_v2",
            [
                "features.0.0.weight",
                "features.0.1.running_mean",
                "features.1.conv.0.0.weight",
                "features.1.conv.1.weight",
                "features.1.conv.2.bias",
                "features.2.conv.0.0.weight",
                "features.2.conv.1.0.weight",
                "features.2.conv.2.weight",
                "features.2.conv.3.running_var",
                "features.17.conv.3.weight",
                "features.18.0.weight",
                "features.18.1.bias",
                "classifier.1.weight",
                "classifier.1.bias",
            ],
        ),
        ("resnet20", ["conv1.weight", "layer2.0.downsample.0.weight", "layer3.2.conv2.weight"]),
    ],
)
def test_torchvision_state_dict_keys(name: str, keys: list[str]) -> None:
    state = built(name).state_dict()
    assert set(keys) <= set(state)


def test_torchvision_shapes() -> None:
    r = built("resnext101_32x8d").state_dict()
    assert r["layer1.0.conv2.weight"].shape == (256, 8, 3, 3)  # groups 32, width 8 * 32
    m = built("mobilenet_v2").state_dict()
    assert m["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)  # depthwise
    assert m["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert m["classifier.1.weight"].shape == (1000, 1280)
    assert len([k for k in m if k.startswith("features.") and k.endswith(".0.weight")]) > 0
    assert max(int(k.split(".")[1]) for k in m if k.startswith("features.")) == 18


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "resnet20"])
def test_state_dict_round_trip(name: str) -> None:
    source = built(name)
    target = FACTORIES[name]().eval()
    target.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(zoo.natural_input_shape(name))
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))


def test_mobilenet_width() -> None:
    small = mobilenet_v2(width=0.35).eval()
    assert n_params(small) < n_params(built("mobilenet_v2"))
    assert small.features[0][0].out_channels == 16  # make_divisible(32 * 0.35, 8)
    assert small.classifier[1].in_features == 1280  # last channel is never narrowed
    with torch.no_grad():
        assert small(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    wide = mobilenet_v2(width=1.4, num_classes=10)
    assert wide.classifier[1].in_features == make_divisible(1280 * 1.4, 8) == 1792


def test_make_divisible() -> None:
    assert make_divisible(32 * 0.35, 8) == 16
    assert make_divisible(16 * 0.35, 8) == 8
    assert make_divisible(24 * 0.75, 8) == 24  # 18 rounds to 16 < 0.9 * 18, so one more step
    assert make_divisible(96 * 1.0, 8) == 96


# -- registry --------------------------------------------------------------------------------------
def test_zoo_names_and_shapes() -> None:
    names = zoo.zoo_names()
    assert set(FACTORIES) <= set(names)
    assert names == sorted(names)
    for name in ("resnet18", "resnet50", "resnext101_32x8d", "mobilenet_v2"):
        assert zoo.natural_input_shape(name) == (1, 3, 224, 224)
    assert zoo.natural_input_shape("resnet20") == (1, 3, 32, 32)
    entry = zoo.zoo_entry("resnet18")
    factory, shape, description = entry  # a plain (factory, shape, description) tuple
    assert callable(factory) and shape == (1, 3, 224, 224) and description


def test_import_is_cheap() -> None:
    code = "import sys, hwq.models; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_model_by_name_is_eval_and_takes_kwargs() -> None:
    model = zoo.load_model("resnet20", num_classes=7)
    assert not model.training
    assert model.fc.out_features == 7
    small = zoo.load_model("mobilenet_v2", width=0.5)
    assert n_params(small) < 3_504_872


def test_load_model_by_path() -> None:
    model = zoo.load_model("hwq.models.resnet:resnet18")
    assert n_params(model) == 11_689_512
    model = zoo.load_model("hwq.models.resnet:resnet18", num_classes=10)
    assert model.fc.out_features == 10
    model = zoo.load_model("hwq.models.mobilenet:MobileNetV2", width=0.35)
    assert isinstance(model, nn.Module)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, zoo.ZooEntry]:
    """The registry, restored after the test."""
    monkeypatch.setattr(zoo, "_REGISTRY", dict(zoo._REGISTRY))
    return zoo._REGISTRY


def test_register(registry: dict[str, zoo.ZooEntry]) -> None:
    def tiny(hidden: int = 4) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden))

    zoo.register("tiny_mlp", tiny, (1, 1, 8, 8), "a tiny MLP")
    assert "tiny_mlp" in zoo.zoo_names()
    assert zoo.natural_input_shape("tiny_mlp") == (1, 1, 8, 8)
    assert zoo.load_model("tiny_mlp", hidden=3)[1].out_features == 3
    zoo.register("tiny_mlp", tiny, (1, 1, 8, 8), "same factory again is fine")
    with pytest.raises(ValueError, match="already registered"):
        zoo.register("tiny_mlp", lambda: tiny(), (1, 1, 8, 8), "another")
    zoo.register("tiny_mlp", lambda: tiny(2), (1, 64), "replaced", replace=True)
    assert zoo.natural_input_shape("tiny_mlp") == (1, 64)
    with pytest.raises(ValueError):
        zoo.register("a:b", tiny, (1, 64), "colon")
    with pytest.raises(ValueError):
        zoo.register("bad_shape", tiny, (1, 0), "zero")
    with pytest.raises(TypeError):
        zoo.register("not_callable", 3, (1, 64), "int")  # type: ignore[arg-type]


def _write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def test_plugin_module_registers_itself(
    registry: dict[str, zoo.ZooEntry], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(
        tmp_path,
        "hwq_test_plugin_ok",
        """
        from torch import nn
        from hwq.models import register
        register("plugged", lambda: nn.Linear(4, 2), (1, 4), "from a plugin")
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(zoo, "PLUGIN_MODULES", ("hwq_test_plugin_missing", "hwq_test_plugin_ok"))
    monkeypatch.setattr(zoo, "_plugins_loaded", False)
    monkeypatch.delitem(sys.modules, "hwq_test_plugin_ok", raising=False)
    assert "plugged" in zoo.zoo_names()  # the missing plugin module is skipped
    assert isinstance(zoo.load_model("plugged"), nn.Linear)


def test_plugin_with_a_missing_dependency_is_not_hidden(
    registry: dict[str, zoo.ZooEntry], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(tmp_path, "hwq_test_plugin_dep", "import hwq_test_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(zoo, "PLUGIN_MODULES", ("hwq_test_plugin_dep",))
    monkeypatch.setattr(zoo, "_plugins_loaded", False)
    with pytest.raises(ModuleNotFoundError, match="hwq_test_no_such_dependency"):
        zoo.zoo_names()


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, kwargs, words",
    [
        ("resnet1800", {}, ["unknown model", "resnet1800", "resnet18", "mobilenet_v2"]),
        ("hwq.models.resnet.resnet18", {}, ["unknown model", "package.module:factory"]),
        ("hwq_no_such_package.models:net", {}, ["cannot import", "hwq_no_such_package"]),
        ("hwq.models.resnet:resnet1800", {}, ["no attribute", "resnet1800"]),
        (":resnet18", {}, ["package.module:factory"]),
        ("hwq.models.resnet:", {}, ["package.module:factory"]),
        ("resnet18", {"widht": 0.5}, ["unknown model argument", "widht", "num_classes"]),
        ("hwq.models.resnet:resnet18", {"depth": 3}, ["depth"]),
        ("mobilenet_v2", {"width": "wide"}, ["mobilenet_v2", "width='wide'", "failed"]),
        ("hwq.models.resnet:torch", {}, ["not a callable"]),
        ("hwq.models:zoo_names", {}, ["returned a list", "not a torch.nn.Module"]),
    ],
)
def test_load_model_errors(target: str, kwargs: dict[str, object], words: list[str]) -> None:
    with pytest.raises(UserError) as info:
        zoo.load_model(target, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_natural_input_shape_errors() -> None:
    with pytest.raises(UserError, match="zoo models"):
        zoo.natural_input_shape("nope")
    with pytest.raises(UserError, match="N,C,H,W"):
        zoo.natural_input_shape("hwq.models.resnet:resnet18")


def test_user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_module(
        tmp_path,
        "hwq_test_user_models",
        """
        from torch import nn
        instance = nn.Linear(3, 2)
        def net(hidden=5):
            return nn.Sequential(nn.Linear(3, hidden), nn.ReLU())
        def raises_type_error(hidden=5):
            raise TypeError("boom")
        """,
    )
    _write_module(tmp_path, "hwq_test_broken_module", "raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert zoo.load_model("hwq_test_user_models:net", hidden=4)[0].out_features == 4
    assert isinstance(zoo.load_model("hwq_test_user_models:instance"), nn.Linear)
    with pytest.raises(UserError, match="instance.*no model arguments"):
        zoo.load_model("hwq_test_user_models:instance", hidden=1)
    with pytest.raises(UserError, match="hwq_test_broken_module.*RuntimeError.*broken at import"):
        zoo.load_model("hwq_test_broken_module:net")
    # any exception of a user's factory is a UserError naming the factory (exit 2)
    with pytest.raises(UserError, match=r"model factory hwq_test_user_models:raises_type_error\(\) "
                                        r"failed: TypeError: boom"):
        zoo.load_model("hwq_test_user_models:raises_type_error")
    with pytest.raises(UserError, match="hidden=1.*boom"):
        zoo.load_model("hwq_test_user_models:raises_type_error", hidden=1)
    # a .py file path
    file = tmp_path / "hwq_test_user_models.py"
    assert zoo.load_model(f"{file}:net")[0].out_features == 5
    with pytest.raises(UserError, match="no such file"):
        zoo.load_model(f"{tmp_path / 'absent.py'}:net")


def test_module_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_module(
        tmp_path, "hwq_test_cwd_model", "from torch import nn\nnet = lambda: nn.Linear(2, 2)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "hwq_test_cwd_model", raising=False)
    assert isinstance(zoo.load_model("hwq_test_cwd_model:net"), nn.Linear)


def test_register_a_model_that_comes_trained(
    registry: dict[str, zoo.ZooEntry], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zoo, "_TRAINED", dict(zoo._TRAINED))
    trained = zoo.Trained(lambda seed: (nn.Linear(4, 2), {}), lambda seed=0: ([], [], []), list)
    zoo.register("tiny_trained", lambda: nn.Linear(4, 2), (1, 4), "trained", trained=trained)
    assert zoo.trained_source("tiny_trained") is trained
    zoo.register("tiny_trained", lambda: nn.Linear(4, 2), (1, 4), "untrained now", replace=True)
    assert zoo.trained_source("tiny_trained") is None
    assert zoo.trained_source("resnet18") is None
