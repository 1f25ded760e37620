"""Atomic, private file output.

Every file speechpipe writes goes to a temporary file in the same directory
and is renamed into place, so a crash or ``kill -9`` never leaves a
half-written output. Files are owner-only (0600) and directories 0700:
calls are special-category personal data.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from speechpipe.records import CallResult

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) owner-only; return it as a Path."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    try:
        os.chmod(p, DIR_MODE)
    except PermissionError:  # an existing shared directory we do not own
        pass
    return p


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically with mode 0600."""
    path = Path(path)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path`` for a writer that streams to a file
    (e.g. ``pyarrow.parquet.ParquetWriter``); on success it becomes ``path`` (0600),
    on error it is removed, so ``path`` is never half-written."""
    path = Path(path)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def write_call_json(result: CallResult, out_dir: str | os.PathLike) -> Path:
    """Write ``DIR/<call_id>.json`` (the output contract's call JSON)."""
    return write_json(Path(out_dir) / f"{result.call_id}.json", result.to_dict())


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one JSON line (used for error logs; a line is written in one call)."""
    path = Path(path)
    private_dir(path.parent)
    line = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
