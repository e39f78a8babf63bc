"""Presets: whole study recipes as TOML files — shipped in this package, or your own config file.

A config file has the keys of a preset (``methods``, ``datasets``, ``ratios``, ``seeds``, any
:class:`~ltbench.config.JobConfig` field such as ``epochs`` or ``eval_attacks``, ``out``,
``method_params`` / ``model_params`` tables, ``methods_dir`` (the folder or folders of plugin
methods, as ``--methods-dir``, relative to where ``ltbench run`` starts), and a ``per_method``
table of fields for one method,
e.g. ``"frl" = {init_from = "results/x/pgd-at__{dataset}__r{ratio:g}__s{seed}", lr = 0.001}``) and
may start from a shipped preset with
``preset = "NAME"``, whose keys it then overrides. ``ltbench run --config FILE`` (or
``--preset FILE.toml``) reads it; flags override it.
"""
from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

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


def is_file_name(name: str) -> bool:
    """True when ``--preset`` names a file rather than a shipped preset."""
    return name.endswith(".toml") or "/" in name or Path(name).is_file()


def file_keys() -> set[str]:
    """The keys a preset or config file may hold."""
    import dataclasses

    from ltbench.config import JobConfig

    return ({"methods", "datasets", "ratios", "seeds", "out", "description", "preset", "per_method", "methods_dir"}
            | {f.name for f in dataclasses.fields(JobConfig)} - {"method", "dataset", "ratio", "seed", "label"})


def load_config(path: str | Path) -> dict:
    """A study described in a TOML file (see the module docstring); one-line errors for a missing
    file, bad TOML or an unknown key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise LtbenchError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LtbenchError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LtbenchError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - file_keys())
    if unknown:
        raise LtbenchError(f"config file {path}: unknown key(s) {', '.join(unknown)}; a config file has the keys "
                           f"of a preset (see `ltbench list presets` and ltbench/presets/*.toml)")
    data.pop("description", None)
    dirs = data.get("methods_dir", [])
    if isinstance(dirs, str):
        dirs = [dirs]
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise LtbenchError(f"config file {path}: methods_dir must be a folder or a list of folders, got {dirs!r}")
    if dirs:
        data["methods_dir"] = [str(Path(d).expanduser()) for d in dirs]
    base = data.pop("preset", None)
    if base is not None:
        if not isinstance(base, str) or is_file_name(base):
            raise LtbenchError(f"config file {path}: preset must name a shipped preset, got {base!r}")
        data = {**load_preset(base), **data}
    return data


def load_spec(name: str) -> dict:
    """``--preset NAME`` (a shipped preset) or ``--preset FILE`` / ``--config FILE`` (a TOML file)."""
    return load_config(name) if is_file_name(name) else load_preset(name)
