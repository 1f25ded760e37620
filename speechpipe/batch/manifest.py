"""Batch manifest: one SQLite row per input, updated in a transaction.

``DIR/manifest.sqlite`` records, for every input a batch has seen, its
content hash, the settings (and their hash), the model names that produced
its outputs, the status (``done`` / ``failed`` with a one-line reason) and
the output paths. SQLite in WAL mode with ``synchronous=FULL`` makes every
row change atomic and durable, so a ``kill -9`` leaves either the old row or
the new one, never half of one; ``--resume`` trusts exactly that.

Examples
--------
>>> import tempfile, os
>>> m = Manifest(os.path.join(tempfile.mkdtemp(), "manifest.sqlite"))
>>> m.record(Row(input="/a.wav", call_id="a", content_hash="h", settings_hash="s", status="done"))
>>> m.is_done("/a.wav", "h", "s")
True
>>> m.is_done("/a.wav", "h", "other-settings")
False
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    input          TEXT PRIMARY KEY,   -- path as given to the batch (absolute)
    call_id        TEXT NOT NULL,
    content_hash   TEXT,               -- sha256 of the file's bytes
    settings_hash  TEXT NOT NULL,
    settings       TEXT,               -- JSON: PipelineConfig.describe() + output options
    models         TEXT,               -- JSON: model names/versions that made the outputs
    status         TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    reason         TEXT,               -- one line, for failed inputs
    outputs        TEXT,               -- JSON list of output paths
    duration       REAL,               -- seconds of audio
    seconds        REAL,               -- processing wall time
    meta           TEXT,               -- JSON: per-call metadata from a CSV manifest
    updated        REAL NOT NULL       -- unix time
);
CREATE TABLE IF NOT EXISTS runs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    started   REAL NOT NULL,
    finished  REAL,
    engine    TEXT,
    workers   INTEGER,
    settings  TEXT,
    done      INTEGER,
    failed    INTEGER,
    skipped   INTEGER
);
"""


@dataclass
class Row:
    input: str
    call_id: str
    settings_hash: str
    status: str
    content_hash: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    outputs: list[str] = field(default_factory=list)
    duration: float | None = None
    seconds: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    updated: float = 0.0


_JSON_COLS = ("settings", "models", "outputs", "meta")


class Manifest:
    """The SQLite manifest of one batch output directory (single writer)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        new = not self.path.exists()
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        if new:
            os.chmod(self.path, 0o600)  # personal data: owner-only, like every output
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, row: Row) -> None:
        """Insert or replace the row of ``row.input`` in one transaction."""
        d = asdict(row)
        d["updated"] = row.updated or time.time()
        for k in _JSON_COLS:
            d[k] = json.dumps(d[k], ensure_ascii=False, sort_keys=True)
        cols = ", ".join(d)
        marks = ", ".join(f":{k}" for k in d)
        with self.db:  # BEGIN … COMMIT
            self.db.execute(f"INSERT OR REPLACE INTO calls ({cols}) VALUES ({marks})", d)

    def get(self, input: str) -> Row | None:
        cur = self.db.execute("SELECT * FROM calls WHERE input = ?", (input,))
        r = cur.fetchone()
        return None if r is None else self._row(cur, r)

    def is_done(self, input: str, content_hash: str | None, settings_hash: str) -> bool:
        """True when ``input`` was processed with these bytes and these settings."""
        r = self.db.execute(
            "SELECT 1 FROM calls WHERE input = ? AND status = 'done' AND content_hash IS ? AND settings_hash = ?",
            (input, content_hash, settings_hash),
        ).fetchone()
        return r is not None

    def rows(self, status: str | None = None) -> Iterator[Row]:
        """Rows ordered by call id (then input), optionally only one status."""
        sql = "SELECT * FROM calls" + (" WHERE status = ?" if status else "") + " ORDER BY call_id, input"
        cur = self.db.execute(sql, (status,) if status else ())
        for r in cur:
            yield self._row(cur, r)

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM calls GROUP BY status").fetchall())

    def start_run(self, engine: str, workers: int, settings: dict) -> int:
        with self.db:
            cur = self.db.execute(
                "INSERT INTO runs (started, engine, workers, settings) VALUES (?, ?, ?, ?)",
                (time.time(), engine, workers, json.dumps(settings, sort_keys=True)),
            )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, done: int, failed: int, skipped: int) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET finished = ?, done = ?, failed = ?, skipped = ? WHERE id = ?",
                (time.time(), done, failed, skipped, run_id),
            )

    @staticmethod
    def _row(cur, r) -> Row:
        d = {c[0]: v for c, v in zip(cur.description, r)}
        for k in _JSON_COLS:
            d[k] = json.loads(d[k]) if d[k] else ({} if k != "outputs" else [])
        return Row(**d)
