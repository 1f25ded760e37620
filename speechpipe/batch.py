"""Batch processing core, shared by every engine (local, Ray).

The engine only decides *where* :func:`analyse` runs; everything that touches
the output directory happens here, in the driver process, one call at a time:

1. :func:`discover` turns a directory, a path list or a CSV manifest into
   :class:`BatchItem` s (sorted, unique call ids, per-call metadata).
2. :class:`BatchDir` skips inputs the manifest already has as done with the
   same content hash and settings (``--resume``).
3. An engine yields :class:`Outcome` s; :meth:`BatchDir.record` writes the
   call's outputs (atomic), its table parts, then commits the manifest row.
   A ``kill -9`` between any two steps leaves no row, so resume redoes it.
4. :meth:`BatchDir.finish` rebuilds ``calls.parquet``, ``utterances.parquet``
   and ``errors.jsonl`` from the manifest, so they are the same whether the
   batch ran in one go or was killed and resumed.

Examples
--------
>>> from speechpipe.pipeline import PipelineConfig      # doctest: +SKIP
>>> items = discover("calls/")                          # doctest: +SKIP
>>> summary = run_batch(items, "out/", PipelineConfig())  # doctest: +SKIP
>>> summary.failed                                      # doctest: +SKIP
0
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .manifest import Manifest, Row
from .records import CallResult

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".au", ".aiff", ".aif", ".caf", ".webm", ".mp4")
PATH_COLUMNS = ("path", "file", "audio", "filename")
CHANNELS = ("left", "right", "auto")
MANIFEST = "manifest.sqlite"
PARTS = "parts"  # per-call table fragments, merged into the batch tables


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
        Name calls by a keyed content hash (:func:`speechpipe.redact.pseudonymise_id`).

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
        if pseudonymise:
            from .redact import pseudonymise_id

            item.call_id = pseudonymise_id(path)
        items.append(item)
    items.sort(key=lambda i: i.input)
    seen: dict[str, int] = {}
    for it in items:  # unique ids: outputs are named by call id
        n = seen.get(it.call_id, 0) + 1
        seen[it.call_id] = n
        if n > 1:
            it.call_id = f"{it.call_id}-{n}"
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
    from . import __version__

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


# --- one call ---------------------------------------------------------------------


def analyse(pipe, item: BatchItem, audio=None) -> Outcome:
    """Run ``pipe`` on one item; every error becomes a failed :class:`Outcome`.

    ``audio`` is pre-decoded :class:`~speechpipe.records.AudioData` (streaming
    engines decode on other CPUs) or an exception raised while decoding it.
    """
    from .asr import ASRError

    t = time.perf_counter()
    try:
        if item.error:
            raise BatchError(item.error)
        if isinstance(audio, BaseException):
            raise audio
        src = audio if audio is not None else item.input
        result = pipe.process(src, call_id=item.call_id, counsellor_channel=item.counsellor_channel)
        return Outcome(item, "done", result=result, seconds=time.perf_counter() - t)
    except Exception as e:
        return Outcome(
            item, "failed", reason=failure_reason(e),
            detail="".join(traceback.format_exception(type(e), e, e.__traceback__)),
            seconds=time.perf_counter() - t, fatal=isinstance(e, ASRError),
        )


def failure_reason(e: BaseException) -> str:
    """One line for the user (the CLI's wording: AudioError already names the problem)."""
    from .cli import failure_reason as reason

    return reason(e)


# --- the output directory ----------------------------------------------------------


class BatchDir:
    """The output directory of a batch: lock, manifest, outputs, tables, errors.

    Only the driver process opens it; engines send it :class:`Outcome` s.
    """

    def __init__(self, out: str | os.PathLike, settings: dict[str, Any], formats: tuple[str, ...]):
        from .writers import private_dir

        self.out = private_dir(out)
        self.settings = settings
        self.formats = formats
        self._lock = os.fdopen(os.open(self.out / ".batch.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise BatchError(f"{self.out}: another batch is writing to this directory") from None
        self.removed_temp = self._remove_stale_temp()
        self.manifest = Manifest(self.out / MANIFEST)

    def _remove_stale_temp(self) -> int:
        """Delete temp files a killed run left (``writers.atomic_write_*`` names them ``.NAME.XXXX.tmp``)."""
        n = 0
        for dirpath, _dirs, files in os.walk(self.out):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    os.unlink(os.path.join(dirpath, name))
                    n += 1
        return n

    def close(self) -> None:
        self.manifest.close()
        self._lock.close()

    def prepare(self, item: BatchItem) -> str:
        """Hash the input; return its settings hash."""
        item.content_hash = file_hash(item.input)
        return settings_hash(self.settings, item)

    def is_done(self, item: BatchItem) -> bool:
        return self.manifest.is_done(item.input, item.content_hash, settings_hash(self.settings, item))

    def record(self, oc: Outcome) -> Outcome:
        """Write one call's outputs and table parts, then commit its manifest row."""
        from .outputs import write_outputs
        from .tables import call_row, utterance_rows, write_table

        item = oc.item
        row = Row(
            input=item.input, call_id=item.call_id, content_hash=item.content_hash,
            settings_hash=settings_hash(self.settings, item), settings=self.settings,
            status=oc.status, seconds=round(oc.seconds, 3), meta=item.meta,
        )
        if oc.status == "done":
            try:
                r = oc.result
                written = write_outputs(r, self.out, self.formats)
                crow = call_row(r)
                crow.update(input=item.input, content_hash=item.content_hash)
                crow.update({f"meta_{k}": v for k, v in item.meta.items()})
                write_table([crow], self._part("calls", item.call_id))
                urows = utterance_rows(r)
                upath = self._part("utterances", item.call_id)
                if urows:
                    write_table(urows, upath)
                elif upath.exists():
                    upath.unlink()
                row.outputs = [str(p) for p in written]
                row.models = {k: v for k, v in r.models.items() if k != "timings_s"}
                row.duration = (r.audio or {}).get("duration")
            except Exception as e:  # e.g. disk full: this call fails, the batch goes on
                oc = Outcome(item, "failed", reason=f"writing outputs: {failure_reason(e)}",
                             detail="".join(traceback.format_exception(type(e), e, e.__traceback__)), seconds=oc.seconds)
                row.status = "failed"
        if oc.status == "failed":
            row.reason = oc.reason
            self._log_failure(item, oc)
        self.manifest.record(row)
        return oc

    def _part(self, table: str, call_id: str) -> Path:
        return self.out / PARTS / table / f"{call_id}.parquet"

    def _log_failure(self, item: BatchItem, oc: Outcome) -> None:
        from .writers import append_jsonl

        append_jsonl(self.out / "errors.jsonl", {"file": item.input, "reason": oc.reason})
        fd = os.open(self.out / "speechpipe.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {item.input}\n{oc.detail or oc.reason}\n")

    def finish(self) -> dict[str, Path]:
        """Rebuild the batch tables and ``errors.jsonl`` from the manifest (atomic writes)."""
        from .writers import atomic_write_text

        done = [r for r in self.manifest.rows("done")]
        failed = [r for r in self.manifest.rows("failed")]
        errors = "".join(json.dumps({"file": r.input, "reason": r.reason}, ensure_ascii=False) + "\n" for r in failed)
        paths = {}
        if errors or (self.out / "errors.jsonl").exists():
            paths["errors"] = atomic_write_text(self.out / "errors.jsonl", errors)
        ids = [r.call_id for r in done]
        paths["calls"] = merge_parts([self._part("calls", i) for i in ids], self.out / "calls.parquet", ("call_id",))
        paths["utterances"] = merge_parts(
            [p for p in (self._part("utterances", i) for i in ids) if p.exists()],
            self.out / "utterances.parquet", ("call_id", "idx"),
        )
        return paths


def merge_parts(parts: list[Path], dest: Path, order: tuple[str, ...]) -> Path:
    """Concatenate per-call Parquet parts into one file, atomically.

    DuckDB streams the union (columns matched by name, missing ones null)
    with bounded memory, so the batch size does not matter.
    """
    import duckdb

    from .tables import write_table
    from .writers import FILE_MODE

    if not parts:
        return write_table([], dest)
    tmp = dest.with_name(f".{dest.name}.merge.tmp")
    con = duckdb.connect(config={"memory_limit": "1GB", "threads": 1})
    try:
        con.execute("SET temp_directory = ?", [str(dest.parent / ".duckdb.tmp")])
        files = [str(p) for p in parts]
        con.execute(
            f"COPY (SELECT * FROM read_parquet(?, union_by_name = true) ORDER BY {', '.join(order)}) "
            f"TO '{_sql_str(str(tmp))}' (FORMAT parquet)",
            [files],
        )
    finally:
        con.close()
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, dest)
    return dest


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


# --- engines ------------------------------------------------------------------------


def run_local(items: Iterable[BatchItem], config) -> Iterator[Outcome]:
    """The local engine: one :class:`~speechpipe.pipeline.Pipeline` (models load once).

    Outcomes come in input order. ``Pipeline.process_stream`` recognises as
    many calls at once as the transcriber has model replicas (one per core on
    the CPU) and finishes them (speakers, prosody, tags) alongside.
    """
    from collections import deque

    from .asr import ASRError
    from .pipeline import Pipeline

    pipe = Pipeline(config)
    started: deque = deque()  # (item, start time), in input order

    def inputs():
        for item in items:
            started.append((item, time.perf_counter()))
            yield (BatchError(item.error) if item.error else item.input), item.call_id, item.counsellor_channel

    stream = pipe.process_stream(inputs())
    while True:
        try:
            _src, res = next(stream)
        except StopIteration:
            return
        except ASRError as e:  # the model itself is unusable: every call would fail
            raise BatchError(str(e)) from e
        item, t = started.popleft()
        if isinstance(res, Exception):
            yield Outcome(
                item, "failed", reason=failure_reason(res),
                detail="".join(traceback.format_exception(type(res), res, res.__traceback__)),
                seconds=time.perf_counter() - t, fatal=isinstance(res, ASRError),
            )
        else:
            yield Outcome(item, "done", result=res, seconds=time.perf_counter() - t)


Reporter = Callable[[str, BatchItem, "Outcome | None"], None]


def run_batch(
    items: list[BatchItem],
    out: str | os.PathLike,
    config,
    formats: tuple[str, ...] = ("json",),
    pseudonymise: bool = False,
    resume: bool = False,
    engine: str = "local",
    workers: int = 1,
    address: str | None = None,
    report: Reporter | None = None,
) -> Summary:
    """Process ``items`` into ``out`` with the chosen engine; return the summary.

    ``report(event, item, outcome)`` is called with ``"skipped"``, ``"done"``
    or ``"failed"`` for each item, for progress displays.

    Raises
    ------
    BatchError
        The directory is busy, or the model is unusable (every call would fail).
    """
    settings = batch_settings(config, formats, pseudonymise)
    bdir = BatchDir(out, settings, formats)
    summary = Summary(total=len(items))
    t0 = time.perf_counter()
    run_id = bdir.manifest.start_run(engine, workers, settings)
    report = report or (lambda *a: None)

    def pending() -> Iterator[BatchItem]:
        # Lazily, so hashing overlaps the engine's work on earlier calls.
        for item in items:
            bdir.prepare(item)
            if resume and bdir.is_done(item):
                summary.skipped += 1
                report("skipped", item, None)
                continue
            yield item

    try:
        if engine == "local":
            outcomes = run_local(pending(), config)
        elif engine == "ray":
            from .ray_engine import run_ray

            outcomes = run_ray(pending(), config, workers=workers, address=address)
        else:
            raise BatchError(f"unknown engine {engine!r}; choose local or ray")
        for oc in outcomes:
            if oc.fatal:
                raise BatchError(oc.reason or "the ASR model could not be loaded")
            oc = bdir.record(oc)
            if oc.status == "done":
                summary.done += 1
                summary.audio_seconds += float((oc.result.audio or {}).get("duration") or 0.0)
            else:
                summary.failed += 1
                summary.failures.append((oc.item.input, oc.reason or ""))
            report(oc.status, oc.item, oc)
        bdir.finish()
    finally:
        summary.wall_seconds = time.perf_counter() - t0
        bdir.manifest.finish_run(run_id, summary.done, summary.failed, summary.skipped)
        bdir.close()
    return summary
