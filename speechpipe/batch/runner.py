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

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from speechpipe.batch.engine import run_local
from speechpipe.batch.items import (  # noqa: F401  # noqa: F401  (the batch API: speechpipe.batch.runner)
    BatchError,
    BatchItem,
    Outcome,
    Summary,
    batch_settings,
    discover,
    file_hash,
    settings_hash,
    unique_ids,
)
from speechpipe.batch.manifest import Manifest, Row
from speechpipe.errors import failure_reason, traceback_text
from speechpipe.privacy import Pseudonymiser

MANIFEST = "manifest.sqlite"
PARTS = "parts"  # per-call table fragments, merged into the batch tables
WORK = ".speechpipe-work"  # private work folder inside --out: staging folders and merge temporaries only


# --- the output directory ----------------------------------------------------------


class BatchDir:
    """The output directory of a batch: lock, manifest, outputs, tables, errors.

    Only the driver process opens it; engines send it :class:`Outcome` s.
    """

    def __init__(self, out: str | os.PathLike, settings: dict[str, Any], formats: tuple[str, ...],
                 report_audio: bool = False):
        from speechpipe.outputs.writers import prepare_out

        self.out = prepare_out(out)
        self.settings = settings
        self.formats = formats
        self.pseudo = Pseudonymiser(bool(settings.get("pseudonymise")))
        self.report_audio = report_audio
        self._lock = os.fdopen(os.open(self.out / ".batch.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise BatchError(f"{self.out}: another batch is writing to this directory") from None
        self.removed_temp = self._clear_work()
        self.manifest = Manifest(self.out / MANIFEST)

    def _clear_work(self) -> int:
        """Empty the private work folder (what a killed run left there); nothing else under --out is touched.

        Every temporary file of a batch lives in ``OUT/.speechpipe-work/``, which
        speechpipe creates (0700) and only speechpipe writes to, so its content is
        always our own staging folders and merge temporaries.
        """
        import shutil

        from speechpipe.outputs.writers import private_dir

        work = self.out / WORK
        n = 0
        if work.is_dir() and not work.is_symlink():
            for p in work.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                n += 1
        self.work = private_dir(work)
        return n

    def close(self) -> None:
        import shutil

        self.manifest.close()
        shutil.rmtree(self.work, ignore_errors=True)
        self._lock.close()

    def key(self, item: BatchItem) -> str:
        """The manifest's key for an input: its path, or a keyed hash of it (--pseudonymise)."""
        return self.pseudo.manifest_key(item.input)

    def prepare(self, item: BatchItem) -> str:
        """Hash the input; return its settings hash."""
        item.content_hash = file_hash(item.input)
        return settings_hash(self.settings, item)

    def is_done(self, item: BatchItem) -> bool:
        return self.manifest.is_done(self.key(item), item.content_hash, settings_hash(self.settings, item))

    def record(self, oc: Outcome) -> Outcome:
        """Write one call's outputs and table parts as one set, then commit its manifest row.

        Either every file of the call is moved in or none is (a failure leaves
        the manifest row ``failed`` and no new file). When an input is redone
        with other settings (``--resume`` after ``--redact`` or ``--formats``
        changed), the files the manifest listed for it and this run did not
        write again are removed: only files speechpipe wrote for this input.
        """
        from speechpipe.outputs import write_outputs
        from speechpipe.outputs.tables import call_row, utterance_rows, write_table
        from speechpipe.outputs.writers import Staging

        item = oc.item
        key = self.key(item)
        prev = self.manifest.get(key)
        row = Row(
            input=key, call_id=item.call_id, content_hash=item.content_hash,
            settings_hash=settings_hash(self.settings, item), settings=self.settings,
            status=oc.status, seconds=round(oc.seconds, 3), meta=item.meta,
        )
        if oc.status == "done":
            try:
                r = self.pseudo.result(oc.result)
                stem = item.stem or item.call_id
                with Staging(self.out, work=self.work) as st:
                    written = write_outputs(r, self.out, self.formats, stem=stem, staging=st,
                                            report_audio=self.report_audio)
                    crow = call_row(r)
                    crow.update(input=self.pseudo.input_name(item.input), content_hash=item.content_hash)
                    crow.update({f"meta_{k}": v for k, v in item.meta.items()})
                    parts = [write_table([crow], st.dir / PARTS / "calls" / f"{stem}.parquet")]
                    urows = utterance_rows(r)
                    if urows:
                        parts.append(write_table(urows, st.dir / PARTS / "utterances" / f"{stem}.parquet"))
                    parts = [st.target(p) for p in parts]
                row.outputs = [str(p) for p in written + parts]
                row.models = {k: v for k, v in r.models.items() if k != "timings_s"}
                row.duration = (r.audio or {}).get("duration")
                if prev is not None:
                    self._remove_stale(prev.outputs, row.outputs)
            except Exception as e:  # e.g. disk full: this call fails, the batch goes on
                oc = Outcome(item, "failed", reason=f"writing outputs: {failure_reason(e)}",
                             detail=traceback_text(e), seconds=oc.seconds)
                row.status = "failed"
        if oc.status == "failed":
            row.reason = self.pseudo.scrub(oc.reason, item.input, item.call_id)
            row.outputs = list(prev.outputs) if prev is not None else []  # what is on disk for it, if anything
            self._log_failure(item, oc)
        self.manifest.record(row)
        return oc

    def _remove_stale(self, old: list[str], new: list[str]) -> None:
        """Delete the files an earlier run wrote for this input that this run did not write again."""
        keep = set(new)
        root = self.out.resolve()
        for p in old:
            q = Path(p)
            if p in keep or not q.is_file() or q.is_symlink():
                continue
            if q.resolve().parent != root and root not in q.resolve().parents:
                continue  # never outside --out
            q.unlink()

    def _parts(self, rows: list[Row], table: str) -> list[Path]:
        mark = f"{os.sep}{PARTS}{os.sep}{table}{os.sep}"
        return [Path(p) for r in rows for p in r.outputs if mark in p and Path(p).exists()]

    def _log_failure(self, item: BatchItem, oc: Outcome) -> None:
        from speechpipe.errors import log_failure

        scrub = self.pseudo.scrub
        log_failure(self.out, self.pseudo.shown(item.input, item.call_id), scrub(oc.reason or "", item.input,
                    item.call_id), scrub(oc.detail, item.input, item.call_id))

    def finish(self) -> dict[str, Path]:
        """Rebuild the batch tables and ``errors.jsonl`` from the manifest (atomic writes)."""
        from speechpipe.outputs.writers import atomic_write_text

        done = [r for r in self.manifest.rows("done")]
        failed = [r for r in self.manifest.rows("failed")]
        shown = (lambda r: r.call_id) if self.pseudo.on else (lambda r: r.input)
        errors = "".join(json.dumps({"file": shown(r), "reason": r.reason}, ensure_ascii=False) + "\n" for r in failed)
        paths = {}
        if errors or (self.out / "errors.jsonl").exists():
            paths["errors"] = atomic_write_text(self.out / "errors.jsonl", errors, tmp_dir=self.work)
        paths["calls"] = merge_parts(self._parts(done, "calls"), self.out / "calls.parquet", ("call_id",), self.work)
        paths["utterances"] = merge_parts(self._parts(done, "utterances"), self.out / "utterances.parquet",
                                          ("call_id", "idx"), self.work)
        try:  # the aggregate page is a convenience: it never fails the batch
            from speechpipe.outputs.overview import write_overview

            paths["overview"] = write_overview(self.out, tmp_dir=self.work)
        except Exception as e:
            import logging

            logging.getLogger(__name__).warning("overview.html not written: %s", failure_reason(e))
        return paths


def merge_parts(parts: list[Path], dest: Path, order: tuple[str, ...], work: Path | None = None) -> Path:
    """Concatenate per-call Parquet parts into one file, atomically.

    DuckDB streams the union (columns matched by name, missing ones null)
    with bounded memory, so the batch size does not matter.
    """
    import duckdb

    from speechpipe.offline import DUCKDB_CONFIG
    from speechpipe.outputs.tables import write_table
    from speechpipe.outputs.writers import FILE_MODE

    if not parts:
        return write_table([], dest)
    work = work or dest.parent
    tmp = work / f".{dest.name}.merge.tmp"
    con = duckdb.connect(config={"memory_limit": "1GB", "threads": 1, **DUCKDB_CONFIG})
    try:
        con.execute("SET temp_directory = ?", [str(work / ".duckdb.tmp")])
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
    report_audio: bool = False,
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
    unique_ids(items, redact=bool(getattr(config, "redact", False)))  # output names as written
    bdir = BatchDir(out, settings, formats, report_audio and not pseudonymise)  # a path would undo the pseudonym
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
            from speechpipe.batch.ray_engine import run_ray

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
