"""Fixtures of the search tests: layer files of the zoo models (traced once per session), the
published HAWQ-V3 sensitivity tables (shipped in hwq/sensitivity_tables), and a CLI runner."""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

from hwq.sensitivity_files import PUBLISHED

HAWQ18 = PUBLISHED["resnet18"]  # shipped with the package (hwq/sensitivity_tables)
HAWQ50 = PUBLISHED["resnet50"]
DEVICE = os.environ.get("HWQ_TEST_DEVICE", "bitfusion")


@pytest.fixture(scope="session")
def r18_layers(tmp_path_factory: pytest.TempPathFactory) -> str:
    from hwq.model_source import load_graph

    path = tmp_path_factory.mktemp("layers") / "resnet18.parquet"
    load_graph("resnet18").to_parquet(path)
    return str(path)


@pytest.fixture(scope="session")
def digits_graph():
    from hwq.model_source import load_graph

    return load_graph("digits_resnet")


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Run `hwq ARGS` in-process: (exit code, stdout, stderr)."""
    import hwq.cli as cli_mod
    from hwq.cli.search_cmd import search

    if "search" not in cli_mod.cli.commands:
        cli_mod.cli.add_command(search)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            cli_mod.main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    sys.stdout.flush()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def hwq_cli():
    return run_cli
