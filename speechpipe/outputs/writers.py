"""Atomic, private file output.

Every file speechpipe writes goes to a temporary file in the same directory
and is renamed into place, so a crash or ``kill -9`` never leaves a
half-written output; a call's whole set of files is first written into a
private staging folder inside ``--out`` (:class:`Staging`) and moved in only
when every format succeeded. Files are owner-only (0600), and so are the
folders speechpipe creates (0700); existing folders are never chmod-ed:
calls are special-category personal data.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from speechpipe.records import CallResult

FILE_MODE = 0o600
DIR_MODE = 0o700


STAGING_PREFIX = ".speechpipe-staging-"  # one private folder per call being written, inside --out
_SCRATCH: contextvars.ContextVar[Path | None] = contextvars.ContextVar("speechpipe_scratch", default=None)


class OutputError(Exception):
    """``--out`` cannot be used (a file, not writable); names the path and the problem."""


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` and any missing parents owner-only (0700); return it as a Path.

    Folders that already exist are left exactly as they are (a shared 1777
    folder stays shared); only folders created here are made private.
    """
    p = Path(path)
    missing = []
    q = p
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by someone else: not ours to chmod
            continue
        os.chmod(d, DIR_MODE)  # mkdir's mode is masked by the umask
    if not p.is_dir():
        raise NotADirectoryError(f"{p} is not a directory")
    return p


def prepare_out(path: str | os.PathLike) -> Path:
    """Check ``--out`` before any work: create it (private) or make sure it is a writable folder.

    Raises :class:`OutputError` naming the problem.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{p} is a file, not a directory")
    try:
        private_dir(p)
        probe = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=p)
        os.rmdir(probe)
    except OSError as e:
        raise OutputError(f"{p} is not writable ({e.strerror or type(e).__name__})") from None
    return p


def scratch_dir() -> Path | None:
    """Where a library writer's temporary files go: the current call's staging folder, if any."""
    return _SCRATCH.get()


class Staging:
    """Write one call's files into a private folder inside ``out``; move them in together, or leave nothing.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> with Staging(out) as st:
    ...     _ = atomic_write_text(st.dir / "a.json", "{}")
    >>> [p.name for p in st.moved], sorted(p.name for p in out.iterdir())
    (['a.json'], ['a.json'])
    """

    def __init__(self, out: str | os.PathLike, work: str | os.PathLike | None = None):
        self.out = private_dir(out)
        # In ``work`` (a private folder inside ``out``, same file system) or directly in ``out``.
        self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=work or self.out))
        self.moved: list[Path] = []
        self._token = None

    def __enter__(self) -> "Staging":
        self._token = _SCRATCH.set(self.dir)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _SCRATCH.reset(self._token)
        try:
            if exc_type is None:
                self._commit()
        finally:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)

    def target(self, staged: Path) -> Path:
        return self.out / staged.relative_to(self.dir)

    def _commit(self) -> None:
        files = sorted(p for p in self.dir.rglob("*") if p.is_file())
        try:
            for f in files:
                dest = self.target(f)
                private_dir(dest.parent)
                os.replace(f, dest)
                self.moved.append(dest)
        except BaseException:
            self.rollback()
            raise

    def rollback(self) -> None:
        """Remove the files this set moved in (after a later step of the same call failed)."""
        for p in self.moved:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.moved = []


def atomic_write_bytes(path: str | os.PathLike, data: bytes, tmp_dir: str | os.PathLike | None = None) -> Path:
    """Write ``data`` to ``path`` atomically with mode 0600 (the temporary file in ``tmp_dir`` or beside it)."""
    with atomic_path(path, tmp_dir) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, tmp_dir: str | os.PathLike | None = None):
    """Yield a temporary path (in ``tmp_dir`` or beside ``path``) for a writer that streams to a file
    (e.g. ``pyarrow.parquet.ParquetWriter``); on success it becomes ``path`` (0600),
    on error it is removed, so ``path`` is never half-written."""
    path = Path(path)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=tmp_dir or path.parent)
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


def atomic_write_text(path: str | os.PathLike, text: str, tmp_dir: str | os.PathLike | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), tmp_dir)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    # allow_nan=False: a bare NaN is not JSON; an error here beats a file most readers reject.
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1, allow_nan=False) + "\n")


def write_call_json(result: CallResult, out_dir: str | os.PathLike, stem: str | None = None) -> Path:
    """Write ``DIR/<stem>.json`` (the output contract's call JSON; default stem from the call id)."""
    from speechpipe.privacy import safe_stem

    return write_json(Path(out_dir) / f"{stem or safe_stem(result.call_id)}.json", result.to_dict())


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
