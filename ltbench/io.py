"""Atomic file writes: a reader sees the old file or the new one, never half of either.

And the reading side of reliability: a file that cannot be read as what it claims is never taken
as valid. :func:`read_json_object` and :func:`read_jsonl_records` return ``None`` / skip what does
not parse, and :func:`quarantine` moves a damaged file aside (``NAME.corrupt-TIME``) so that it is
kept for inspection but no longer read.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ltbench.errors import LtbenchError

TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Write through ``write(fileobj)`` to a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # e.g. a full disk: say which file could not be written
            raise _naming(exc, path) from None
        raise
    return path


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name, so its message says which file failed."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def remove_stale_temps(folder: str | Path, name: str = "*") -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` of ``folder/NAME`` left behind
    (``.NAME.*.tmp``; every file's by default).

    Call only while holding the lock that keeps other writers of those files out."""
    removed = []
    for tmp in Path(folder).glob(f".{name}.*{TEMP_SUFFIX}"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def quarantine(path: str | Path) -> Path:
    """Move a damaged file aside as ``NAME.corrupt-YYYYmmddTHHMMSSZ`` (kept, never read again)."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    return target


def read_json_object(path: str | Path) -> Optional[dict]:
    """The JSON object in ``path``; ``None`` when it is missing, unreadable, not JSON, or not an object."""
    try:
        obj = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):  # ValueError covers JSON and Unicode decoding errors
        return None
    return obj if isinstance(obj, dict) else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, lambda f: (json.dump(obj, f, indent=2, sort_keys=False), f.write("\n")))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def append_jsonl(path: str | Path, record: dict) -> None:
    """Rewrite the whole JSONL file with one more line (atomic; files are small)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    write_text(path, old + json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """Every line of a JSONL file, parsed (raises on a line that does not parse)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_jsonl_records(path: str | Path) -> list[dict]:
    """The lines of a JSONL file that are JSON objects; lines that are not (a damaged file) are skipped."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return []
    records = []
    for line in raw.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            records.append(obj)
    return records


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers, never code. A file that
    does not load is one short :class:`LtbenchError` line: a pickled object is named (torch's advice to
    load it with ``weights_only=False`` is left out: ltbench never runs code from a file)."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated, not a zip, an object that needs code
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found:
            raise LtbenchError(f"{path} is not a weights-only file: it holds a pickled {found.group(1)}, whose "
                               f"unpickling would run code; save the model's state_dict() instead") from None
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise LtbenchError(f"cannot load {path} as weights ({type(exc).__name__}: {first})") from None


def save_torch(path: str | Path, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f), mode="wb")
