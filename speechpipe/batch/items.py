"""What a batch is made of: its inputs (directory, list, CSV), the outcome of one call, the run summary."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from speechpipe.config import COUNSELLOR_CHANNELS as CHANNELS
from speechpipe.privacy import Pseudonymiser
from speechpipe.records import CallResult

AUDIO_EXTS = (
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
    ".opus",
    ".m4a",
    ".aac",
    ".wma",
    ".au",
    ".aiff",
    ".aif",
    ".caf",
    ".webm",
    ".mp4",
)
PATH_COLUMNS = ("path", "file", "audio", "filename")



class BatchError(Exception):
    """A problem with the batch as a whole (bad input list, busy directory)."""


@dataclass
class BatchItem:
    """One input of a batch with its per-call metadata."""

    input: str  # absolute path as found (symlinks not resolved: a dangling one is an input too)
    call_id: str
    counsellor_channel: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str | None = None  # filled in by the driver
    error: str | None = None  # a metadata problem found while reading the list
    stem: str = ""  # output file name stem: privacy.safe_stem of the (redacted) call id, unique in the batch


@dataclass
class Outcome:
    """What an engine hands back for one item."""

    item: BatchItem
    status: str  # done | failed
    result: CallResult | None = None
    reason: str | None = None
    detail: str | None = None  # traceback, for the log file only
    seconds: float = 0.0
    fatal: bool = False  # the model itself is unusable: stop the batch


@dataclass
class Summary:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    audio_seconds: float = 0.0  # processed in this run
    wall_seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rtf(self) -> float | None:
        """Real-time factor: processing wall time / audio time (lower is faster)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total, "done": self.done, "failed": self.failed, "skipped": self.skipped,
            "audio_hours": round(self.audio_seconds / 3600, 4), "wall_seconds": round(self.wall_seconds, 2),
            "rtf": None if self.rtf is None else round(self.rtf, 4),
        }


# --- inputs --------------------------------------------------------------------


def _is_audio_name(p: Path) -> bool:
    return p.suffix.lower() in AUDIO_EXTS


def _walk(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            if not name.startswith(".") and _is_audio_name(p):
                out.append(p)
    return out


def _read_list(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV manifest (needs a path column) or a plain one-path-per-line list."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".csv", ".tsv"):
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        reader = csv.DictReader(text.splitlines(), dialect=dialect)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        key = next((cols[c] for c in PATH_COLUMNS if c in cols), None)
        if key is None:
            raise BatchError(f"{path}: CSV manifest needs a column named one of {', '.join(PATH_COLUMNS)}")
        rows = []
        for r in reader:
            r = {(k or "").strip(): (v or "").strip() for k, v in r.items()}
            if r.get(key.strip()):
                r["path"] = r.pop(key.strip())
                rows.append(r)
        return rows
    return [{"path": line.strip()} for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def discover(source: str | os.PathLike, pseudonymise: bool = False) -> list[BatchItem]:
    """Inputs of a batch: every audio file under a directory, or the entries of a list.

    Parameters
    ----------
    source : path
        A directory (walked recursively; hidden entries and non-audio extensions
        skipped), a ``.csv``/``.tsv`` manifest with a ``path`` column and optional
        ``call_id`` and ``counsellor_channel`` columns (any other column is kept as
        metadata), or a text file with one path per line. Relative paths in a list
        are relative to the list's folder.
    pseudonymise : bool
        Name calls by a keyed content hash (:func:`speechpipe.privacy.pseudonymise_id`).

    Returns
    -------
    list of BatchItem
        Sorted by input path; call ids are unique (a repeated id gets ``-2``, ``-3`` …).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "b.wav").touch(); (d / "a.mp3").touch(); (d / "notes.txt").touch()
    >>> [i.call_id for i in discover(d)]
    ['a', 'b']
    """
    src = Path(source)
    if src.is_dir():
        rows = [{"path": str(p)} for p in _walk(src)]
    elif src.is_file():
        rows = _read_list(src)
        for r in rows:
            p = Path(os.path.expanduser(r["path"]))
            r["path"] = str(p if p.is_absolute() else src.parent / p)
    else:
        raise BatchError(f"{src}: no such directory or input list")

    items: list[BatchItem] = []
    for r in rows:
        path = os.path.abspath(r.pop("path"))
        item = BatchItem(input=path, call_id=r.pop("call_id", "") or Path(path).stem)
        ch = r.pop("counsellor_channel", "") or None
        if ch is not None and ch.lower() not in CHANNELS:
            item.error = f"counsellor_channel {ch!r} in the input list is not one of {', '.join(CHANNELS)}"
        item.counsellor_channel = ch.lower() if ch else None
        item.meta = {k: v for k, v in r.items() if k}
        item.call_id = Pseudonymiser(pseudonymise).call_id(path, item.call_id)
        items.append(item)
    items.sort(key=lambda i: i.input)
    return unique_ids(items)


def unique_ids(items: list[BatchItem], redact: bool = False) -> list[BatchItem]:
    """Give every item a unique call id and output stem (a repeat gets ``-2``, ``-3`` …).

    Outputs are named by :func:`speechpipe.privacy.safe_stem` of the call id as
    written (redacted with ``--redact``), so ids are made unique on that name.
    """
    from speechpipe.privacy import safe_stem
    from speechpipe.redact import redact_id

    seen: set[str] = set()
    for it in items:
        base, n = it.call_id, 1
        while True:
            cid = base if n == 1 else f"{base}-{n}"
            stem = safe_stem(redact_id(cid) if redact else cid)
            if stem not in seen:
                break
            n += 1
        seen.add(stem)
        it.call_id, it.stem = cid, stem
    return items


def file_hash(path: str) -> str | None:
    """sha256 of a file's bytes, or None when it cannot be read (it then fails in decoding)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def batch_settings(config, formats: Iterable[str], pseudonymise: bool = False) -> dict[str, Any]:
    """Everything that changes a batch's outputs (hashed into the manifest)."""
    from speechpipe import __version__

    return {
        "speechpipe": __version__,
        "pipeline": config.describe(),
        "formats": sorted(formats),
        "pseudonymise": bool(pseudonymise),
    }


def settings_hash(settings: dict[str, Any], item: BatchItem) -> str:
    """Hash of the batch settings plus the item's own overrides."""
    blob = json.dumps({"settings": settings, "counsellor_channel": item.counsellor_channel}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
