"""The wheel holds every package: each folder with an __init__.py is listed in pyproject.toml
under the import name DESIGN.md §1 gives it, and no top-level `search` or `cost_models` installs."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = tool["package-dir"]
    listed = set(tool["packages"])
    folder_to_name = {folder: name for name, folder in package_dir.items()}
    found = set()
    for top in package_dir.values():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            parts = rel.parts
            found.add(".".join([folder_to_name[parts[0]], *parts[1:]]))
    assert found <= listed, f"not in pyproject packages: {sorted(found - listed)}"
    assert not {"search", "cost_models"} & listed
    assert "*.yaml" in tool["package-data"]["hwq.device_profiles"]
