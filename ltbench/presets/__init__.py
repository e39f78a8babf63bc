"""Presets: whole study recipes shipped as TOML files in this package."""
from __future__ import annotations

import tomllib
from importlib import resources

from ltbench.errors import LtbenchError


def _files():
    return sorted((f for f in resources.files(__name__).iterdir() if f.name.endswith(".toml")),
                  key=lambda f: f.name)


def list_presets() -> list[tuple[str, str]]:
    out = []
    for f in _files():
        data = tomllib.loads(f.read_text())
        out.append((f.name[:-5], data.get("description", "")))
    return out


def load_preset(name: str) -> dict:
    for f in _files():
        if f.name[:-5] == name:
            data = tomllib.loads(f.read_text())
            data.pop("description", None)
            return data
    known = ", ".join(n for n, _ in list_presets())
    raise LtbenchError(f"unknown preset {name!r}; known presets: {known}")
