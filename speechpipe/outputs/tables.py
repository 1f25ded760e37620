"""Flat tables from call results, for pandas, DuckDB and Parquet.

One row per utterance (:func:`utterance_rows`) and one row per call
(:func:`call_row`). Nested fields are flattened with ``_`` (``talk_share``
→ ``talk_share_counsellor``) so every column is a scalar or a list of strings,
which keeps the Parquet files queryable without JSON functions. Rows are
plain dicts; :func:`write_table` writes them atomically with pyarrow.

Examples
--------
>>> from speechpipe.records import CallResult, Utterance
>>> r = CallResult("c1", [Utterance("caller", 0.0, 1.5, "Hei", acts=["request"])],
...                summary={"talk_share": {"caller": 1.0}})
>>> utterance_rows(r)[0]["duration"]
1.5
>>> call_row(r)["talk_share_caller"]
1.0
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Iterable

from speechpipe.records import CallResult

# Always present in call rows, so tables from different calls concatenate
# with the same core columns even when a stage was skipped.
CORE_CALL_COLUMNS = (
    "call_id",
    "audio_path",
    "audio_duration",
    "audio_sample_rate",
    "audio_channels",
    "n_utterances",
    "structure",
    "reopenings",
    "feelings_before_case",
    "what_more_position",
    "talk_share_counsellor",
    "talk_share_caller",
    "talk_share_other",
    "n_breaths",
    "n_breaths_caller",
    "n_breaths_counsellor",
    "n_heavy_breaths",
    "n_heavy_breaths_caller",
    "redacted",
)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``a_b`` keys; lists of scalars kept, other lists as JSON text."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "_"))
        elif isinstance(v, (list, tuple)):
            if all(isinstance(x, str) for x in v):
                out[key] = list(v)
            else:
                out[key] = json.dumps(v, ensure_ascii=False)
        else:
            out[key] = v
    return out


def utterance_rows(result: CallResult) -> list[dict[str, Any]]:
    """One row per utterance of ``result``.

    Columns: ``call_id, idx, speaker, start, end, duration, text, acts`` (list of
    labels), ``phase, intonation, pitch_change_st, n_words, channel, cluster``,
    every prosody field as ``prosody_<name>`` and ``evidence`` as a JSON string.
    Times are ``None`` for text-only (``tag``) results.
    """
    rows = []
    for i, u in enumerate(result.utterances):
        dur = None if u.start is None or u.end is None else round(float(u.end) - float(u.start), 3)
        row: dict[str, Any] = {
            "call_id": result.call_id,
            "idx": i,
            "speaker": u.speaker,
            "start": None if u.start is None else float(u.start),
            "end": None if u.end is None else float(u.end),
            "duration": dur,
            "text": u.text,
            "acts": list(u.acts),
            "phase": u.phase,
            "intonation": u.intonation,
            "pitch_change_st": None if u.pitch_change_st is None else float(u.pitch_change_st),
            "n_words": len(u.words),
            "channel": u.channel,
            "cluster": u.cluster,
        }
        row.update(_flatten(u.prosody or {}, "prosody_"))
        row["evidence"] = json.dumps(u.evidence or {}, ensure_ascii=False)
        rows.append(row)
    return rows


def call_row(result: CallResult) -> dict[str, Any]:
    """One row describing the whole call.

    Audio facts, ``n_utterances``, every summary measure flattened
    (``talk_share_counsellor``, ``interaction_silence_share`` … but not the per-turn
    rows), ``category_<name>`` (bool) per rule and ``categories_matched`` (list of
    names), breath counts per speaker, the heavy-breath count, the model names
    (``model_asr`` …) and whether text was redacted.
    """
    row: dict[str, Any] = dict.fromkeys(CORE_CALL_COLUMNS)
    audio = result.audio or {}
    row.update(
        call_id=result.call_id,
        audio_path=audio.get("path"),
        audio_duration=audio.get("duration"),
        audio_sample_rate=audio.get("sample_rate"),
        audio_channels=audio.get("channels"),
        n_utterances=len(result.utterances),
    )
    summary = dict(result.summary or {})
    categories = summary.pop("categories", None) or []
    inter = summary.get("interaction")
    if isinstance(inter, dict):  # per-turn rows are not call measures
        summary["interaction"] = {k: v for k, v in inter.items() if k != "per_turn"}
    row.update(_flatten(summary))
    # one boolean column per category, so `sample --where "category_long_hold"` works
    for c in categories:
        if isinstance(c, dict) and c.get("name"):
            row[f"category_{c['name']}"] = c.get("matched")  # None: undecidable (text-only call)
    row["categories_matched"] = [c["name"] for c in categories if isinstance(c, dict) and c.get("matched")]
    breaths = [e for e in result.events if e.type == "breath"]
    row["n_breaths"] = len(breaths)
    row["n_heavy_breaths"] = sum(e.heavy for e in breaths)
    for spk in ("caller", "counsellor"):
        row[f"n_breaths_{spk}"] = sum(e.speaker == spk for e in breaths)
    row["n_heavy_breaths_caller"] = sum(e.heavy and e.speaker == "caller" for e in breaths)
    for e_type in sorted({e.type for e in result.events} - {"breath"}):
        row[f"n_events_{e_type}"] = sum(e.type == e_type for e in result.events)
    for k, v in (result.models or {}).items():
        if isinstance(v, dict):
            row.update(_flatten(v, f"model_{k}_"))
        else:
            row[f"model_{k}"] = None if v is None else str(v)
    red = result.redaction
    row["redacted"] = red is not None
    if red:
        for k, v in (red.get("counts") or {}).items():
            row[f"redacted_{k}"] = v
    return row


def write_table(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write ``rows`` (dicts) as a Parquet file, atomically and owner-only.

    Columns are the union of the rows' keys, in first-seen order; a missing
    key is null. An empty ``rows`` writes a table with no columns.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from speechpipe.outputs.writers import atomic_write_bytes

    rows = list(rows)
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows]) if rows else pa.table({})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return atomic_write_bytes(path, buf.getvalue())


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a Parquet file written by :func:`write_table` back into row dicts."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
