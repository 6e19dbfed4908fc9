"""search/config.py is the one definition of the search options: the CLI and hwq.search() are
built from it and agree with it; values arrive in one stored form whichever face gave them."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import hwq
from hwq.errors import UserError
from hwq.search.config import SearchConfig, default_text, for_resume


def _defaults() -> dict[str, object]:
    out = {}
    for f in dataclasses.fields(SearchConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_cli_offers_every_option_with_the_configs_default_in_its_help() -> None:
    import click

    from hwq.cli.search_cmd import search

    params = {p.name: p for p in search.params}
    ctx = click.Context(search)
    for f in dataclasses.fields(SearchConfig):
        assert f.name in params, f.name
        p = params[f.name]
        given = p.get_default(ctx)
        unset = given is None or given == () or repr(given) == "Sentinel.UNSET"
        assert unset, f"{f.name}: the CLI must not restate the default"
        shown = default_text(f)
        if shown:
            assert p.help.endswith(f"[default: {shown}]"), f.name
    assert set(params) - {f.name for f in dataclasses.fields(SearchConfig)} == {
        "resume", "as_json"
    }


def test_python_signature_lists_every_option_with_the_configs_default() -> None:
    sig = inspect.signature(hwq.search)
    defaults = _defaults()
    for name, default in defaults.items():
        assert name in sig.parameters, name
        if name != "device":
            assert sig.parameters[name].default == default, name
    assert {"resume", "quality", "progress"} <= set(sig.parameters)


def test_cli_and_python_values_reach_one_stored_form() -> None:
    from_cli = SearchConfig.from_options(
        device="bitfusion", objectives="sensitivity,bops", max=("bops=10G",),
        pin=("first,last=8",), bits="4x4,8x8", model_args=("width=0.5",),
        input_shape="1,3,32,32", species="direct", generations="7",
    )
    from_python = SearchConfig.from_options(
        device="bitfusion", objectives=["sensitivity", "bops"], max={"bops": "10G"},
        pin="first,last=8", bits=[(4, 4), (8, 8)], model_args={"width": 0.5},
        input_shape=(1, 3, 32, 32), species=["direct"], generations=7,
    )
    assert from_cli == from_python
    assert from_cli.max == ["bops=10G"] and from_cli.input_shape == [1, 3, 32, 32]
    assert from_cli.generations == 7 and from_cli.model == "digits_resnet"


def test_unknown_option_is_a_user_error_naming_it() -> None:
    with pytest.raises(UserError, match="unknown option.*generation\\b"):
        SearchConfig.from_options(device="bitfusion", generation=3)


def test_validate_names_the_option() -> None:
    with pytest.raises(UserError, match="--population: expected a positive integer"):
        SearchConfig.from_options(device="bitfusion", population=0).validate()
    with pytest.raises(UserError, match="--device is required"):
        SearchConfig.from_options().validate()
    with pytest.raises(UserError, match="--no-local apply to --algorithm nemo only"):
        SearchConfig.from_options(device="x", algorithm="nsga2", fixed_sizes=True).validate()


def test_resume_keeps_the_stored_options_and_refuses_a_changed_one(tmp_path) -> None:
    import json

    import yaml

    stored = SearchConfig.from_options(device="bitfusion", generations=5, seed=3)
    (tmp_path / "meta.json").write_text(json.dumps({"status": "running"}))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"search": stored.to_dict()}))
    resumed = for_resume(str(tmp_path), {"output_dir": str(tmp_path), "workers": 2,
                                         "generations": 5})
    assert resumed.seed == 3 and resumed.workers == 2 and resumed.output_dir == str(tmp_path)
    with pytest.raises(UserError, match="--seed 4 differs from the run's 3"):
        for_resume(str(tmp_path), {"seed": 4})
    with pytest.raises(UserError, match="needs --output-dir"):
        for_resume(None, {})
