"""Every Python package in the source tree is listed in pyproject.toml, so `pip install .` ships it."""
from __future__ import annotations

import pathlib
import tomllib

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_every_package_is_installed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    directories = config["package-dir"]
    on_disk = set()
    for name, directory in directories.items():
        for init in (REPO / directory).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / directory)
            on_disk.add(".".join([name, *relative.parts]))
    assert on_disk == listed
