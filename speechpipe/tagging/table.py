"""Columnar tagging: an utterance table in, tagged utterance and call tables out.

Researchers keep processed archives as the ``utterances.parquet`` tables that
``speechpipe run``/``batch`` export (one row per utterance, calls back to back).
Re-tagging such an archive with a new tagger model needs no audio and no
``Utterance`` objects: the table's columns go straight into the array core
(:meth:`speechpipe.tagging.tagger.Tagger.tag_batch`) and the labels come back as Arrow
columns — dictionary encoding, takes and list offsets, all in C. This is the
path that reaches the tagger's per-core throughput target; the object path
(``Tagger.tag_calls``) gives the same labels but pays for a million Python
objects.

Input columns: ``call_id``, ``speaker``, ``text`` (required); ``idx``,
``start``, ``end``, ``intonation``, ``acoustic_backchannel`` (optional, used when present).
With the fast model (``speechpipe tag --fast``: no sentence embeddings) this path keeps the
archive re-tag speed; the default model embeds every distinct text (≈ 20 ms each on one core). Output: the
input table with ``acts`` (list of labels), ``phase`` and ``evidence`` (JSON
``{act: cue}``) set — the columns :func:`speechpipe.outputs.tables.utterance_rows`
writes — and a call table with the call measures flattened as
:func:`speechpipe.outputs.tables.call_row` names them, with every column present
(null where a speaker is absent or the measure needs times).

Examples
--------
>>> import pyarrow as pa
>>> from speechpipe.tagging.tagger import load_tagger
>>> t = pa.table({"call_id": ["a", "a", "a"], "speaker": ["counsellor", "caller", "counsellor"],
...               "text": ["Hei, du snakker med Kari i NAV.", "Jeg lurer på når pengene kommer.", "Oi!"]})
>>> utts, calls = tag_table(load_tagger(), t)
>>> utts.column("acts").to_pylist()[0], calls.column("n_utterances").to_pylist()
(['greeting'], [3])
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from speechpipe.records import ACTS
from speechpipe.tagging.features import SPK, Batch
from speechpipe.tagging.phases import PHASES
from speechpipe.tagging.tagger import ACOUSTIC_BC, BIG, Tagger, call_measures

REQUIRED = ("call_id", "speaker", "text")
ROWS_PER_CHUNK = 1_000_000  # rows read per step from a Parquet file (whole calls are kept together)


class TableError(Exception):
    """An utterance table that cannot be tagged; names the file and the problem."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _as_table(table):
    import pyarrow as pa

    if isinstance(table, pa.Table):
        return table
    return pa.Table.from_pandas(table, preserve_index=False)  # a pandas DataFrame


def _codes(col):
    """Dictionary-encode an Arrow column: ``(codes int64 with -1 for null, values list)``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, enc.dictionary.to_pylist()


def _floats(table, name: str, path) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(table[name], pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise TableError(
            path, f"column {name} is not numeric ({table.schema.field(name).type}: {str(e).splitlines()[0]})"
        ) from e


def encode_table(table, path="<table>"):
    """Columnar :class:`~speechpipe.tagging.features.Batch` of an utterance table.

    Rows of one call must be contiguous (as the exports write them); within a
    call, rows are put in ``idx`` order when an ``idx`` column exists.
    Returns ``(batch, table_in_batch_order, call_ids)``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _as_table(table)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise TableError(
            path, f"missing column(s) {', '.join(missing)} (an utterance table needs {', '.join(REQUIRED)})"
        )
    n = table.num_rows
    cid = pc.cast(table["call_id"], pa.string())
    if cid.null_count:
        raise TableError(path, f"{cid.null_count} row(s) without a call_id")
    call, call_ids = _codes(cid)
    # dictionary codes follow first appearance, so contiguous calls give non-decreasing codes
    if n and np.any(np.diff(call) < 0):
        raise TableError(path, "the rows of a call are not contiguous (sort the table by call_id, idx)")
    if "idx" in table.column_names and n:
        idx = _floats(table, "idx", path)
        if np.any((np.diff(idx) < 0) & (np.diff(call) == 0)):
            order = np.lexsort((idx, call))
            table = table.take(pa.array(order))
            call = call[order]
    offsets = np.zeros(len(call_ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(call, minlength=len(call_ids)))
    text_code, texts = _codes(pc.cast(table["text"], pa.string()))
    texts = ["" if t is None else t for t in texts]
    if np.any(text_code < 0):  # a null text reads as "" (no words, no act)
        text_code[text_code < 0] = len(texts)
        texts.append("")
    sp_code, sp_values = _codes(pc.cast(table["speaker"], pa.string()))
    lut = np.array([SPK.index(s) if s in SPK[:3] else 3 for s in sp_values] + [3], dtype=np.int8)
    spk = lut[sp_code]  # -1 (null) picks the trailing "unknown"
    if "intonation" in table.column_names:
        rise = pc.fill_null(pc.equal(pc.cast(table["intonation"], pa.string()), "rise"), False)
        rise = rise.to_numpy(zero_copy_only=False).astype(bool)
    else:
        rise = np.zeros(n, dtype=bool)
    start = _floats(table, "start", path) if "start" in table.column_names else np.full(n, np.nan)
    end = _floats(table, "end", path) if "end" in table.column_names else np.full(n, np.nan)
    acoustic = None
    if ACOUSTIC_BC in table.column_names:  # the turns stage's acoustic short-turn flag (bool; null = False)
        try:
            acoustic = pc.fill_null(pc.cast(table[ACOUSTIC_BC], pa.bool_()), False).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise TableError(path, f"column {ACOUSTIC_BC} is not boolean") from None
        acoustic = acoustic.astype(bool) if acoustic.any() else None
    return Batch(texts, text_code, spk, rise, start, end, offsets, acoustic), table, call_ids


def _r3(x: np.ndarray) -> np.ndarray:
    return np.round(x.astype(np.float64), 3)


def _col(values: np.ndarray, valid: np.ndarray, typ):
    import pyarrow as pa

    return pa.array(values, type=typ, mask=~np.asarray(valid, dtype=bool))


def call_table(b: Batch, out: dict, call_ids: list, model: str | None = None):
    """The call measures of a tagged batch as an Arrow table, one row per call.

    Same values as :func:`speechpipe.tagging.tagger.summarise_batch` (flattened like
    :func:`speechpipe.outputs.tables.call_row`), computed over arrays instead of per call.
    """
    import pyarrow as pa

    m = call_measures(b, out["acts"], out["phase"], out["n_tokens"])
    B = len(call_ids)
    lens, timed, t0, t1 = m["lens"], m["timed"], m["t0"], m["t1"]
    emp, info, emo, nxt, wm = m["emp"], m["info"], m["emo"], m["nxt"], m["wm"]
    starts = np.append(b.start, np.nan)  # index n stands for "no row"
    at = lambda rows: starts[np.where(rows == BIG, b.n, rows)]  # noqa: E731
    cols = {
        "call_id": pa.array(call_ids, type=pa.string()),
        "n_utterances": pa.array(lens, type=pa.int64()),
        "structure": pa.array(np.where(m["reo"] > 0, "hourglass", "funnel"), type=pa.string()),
        "reopenings": pa.array(m["reo"], type=pa.int64()),
        "feelings_before_case": _col((info == BIG) | (emp <= info), emp != BIG, pa.bool_()),
    }
    has_lat = timed & (emo != BIG) & (nxt != BIG)
    cols["feelings_latency_s"] = _col(_r3(np.where(has_lat, at(nxt) - at(emo), 0.0)), has_lat, pa.float64())
    span = t1 - t0
    first = b.offsets[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        pos_t = np.where(span > 0, (at(wm) - t0) / np.where(span > 0, span, 1), 0.0)
        pos_r = np.where(lens > 1, (np.where(wm == BIG, first, wm) - first) / np.maximum(lens - 1, 1), 0.0)
    cols["what_more_position"] = _col(_r3(np.where(timed, pos_t, pos_r)), wm != BIG, pa.float64())
    present = m["present"]
    amt = np.where(timed[:, None], m["amount_t"], m["amount_w"])
    tot = (amt * present).sum(axis=1)
    share = _r3(amt / np.where(tot > 0, tot, 1)[:, None])
    for s, name in enumerate(SPK):
        cols[f"talk_share_{name}"] = _col(share[:, s], present[:, s] & (tot > 0), pa.float64())
    cols["talk_share_unit"] = pa.array(np.where(timed, "time", "words"), type=pa.string())
    cols["holds"] = pa.array(m["holds"].astype(np.int64), type=pa.int64())
    minutes = span / 60
    rate_min = _r3(m["bc"] / np.where(minutes > 0, minutes, 1)[:, None])
    rate_utt = _r3(100 * m["bc"] / np.maximum(lens, 1)[:, None])
    for s, name in enumerate(SPK):
        cols[f"backchannel_rate_per_min_{name}"] = _col(
            rate_min[:, s], timed & present[:, s] & (minutes > 0), pa.float64()
        )
    for s, name in enumerate(SPK):
        cols[f"backchannel_rate_per_100_utt_{name}"] = _col(rate_utt[:, s], ~timed & present[:, s], pa.float64())
    cols["silences"] = _col(m["sil_n"].astype(np.int64), timed, pa.int64())
    cols["silence_s"] = _col(_r3(m["sil_s"]), timed, pa.float64())
    cols["overlaps"] = _col(m["ov_n"].astype(np.int64), timed, pa.int64())
    cols["overlap_s"] = _col(_r3(m["ov_s"]), timed, pa.float64())
    cols["model_tagger"] = pa.array([model] * B, type=pa.string())
    return pa.table(cols)


def label_columns(tagger: Tagger, out: dict) -> dict:
    """``acts`` (list of labels, in the guide's order), ``phase`` and ``evidence`` (JSON) as Arrow arrays."""
    import pyarrow as pa

    acts = out["acts"]
    rows, cols = np.nonzero(acts)  # row-major: each row's acts in ACTS order, like Utterance.acts
    offsets = np.zeros(len(acts) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(acts.sum(axis=1))
    names = pa.array(ACTS, type=pa.string())
    act_col = pa.ListArray.from_arrays(pa.array(offsets), names.take(pa.array(cols)))
    phase_col = pa.array(PHASES, type=pa.string()).take(pa.array(out["phase"].astype(np.int64)))
    # few distinct (acts, evidence, phase) rows: one JSON text each, then a take
    inv, _, evs, _ = tagger.distinct_rows(out)
    ev_json = pa.array([json.dumps(e, ensure_ascii=False) for e in evs], type=pa.string())
    return {"acts": act_col, "phase": phase_col, "evidence": ev_json.take(pa.array(inv))}


def tag_table(tagger: Tagger, table, path="<table>"):
    """Tag every call of an utterance table; returns ``(utterances, calls)`` Arrow tables."""
    b, table, call_ids = encode_table(table, path)
    out = tagger.tag_batch(b)
    for name, col in label_columns(tagger, out).items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, col)
        else:
            table = table.append_column(name, col)
    return table, call_table(b, out, call_ids, tagger.name)


def tag_parquet(tagger: Tagger, src: str | os.PathLike, out_dir: str | os.PathLike,
                rows_per_chunk: int = ROWS_PER_CHUNK, redact: bool = False) -> tuple[Path, Path, int, int]:
    """Re-tag an utterance Parquet file: write ``OUT/<stem>.parquet`` (its rows, tagged) and
    ``OUT/<stem>.calls.parquet`` (one row per call).

    Reads ``rows_per_chunk`` rows at a time and holds back the last call of each
    chunk until its rows are complete, so memory stays bounded on archives of any
    size; both files are written to temporary names and renamed at the end, so a
    failure never leaves a half-written output. Returns the two paths and the
    numbers of utterances and calls.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from speechpipe.outputs.writers import atomic_path

    src = Path(src)
    if not src.is_file():
        raise TableError(src, "no such file")
    try:
        pf = pq.ParquetFile(src)
    except Exception as e:  # not Parquet, truncated, unreadable
        raise TableError(
            src, f"cannot read as Parquet ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    missing = [c for c in REQUIRED if c not in pf.schema_arrow.names]
    if missing:
        raise TableError(
            src, f"missing column(s) {', '.join(missing)} (an utterance table needs {', '.join(REQUIRED)})"
        )
    out_dir = Path(out_dir)
    dst_u, dst_c = out_dir / f"{src.stem}.parquet", out_dir / f"{src.stem}.calls.parquet"
    if dst_u.resolve() == src.resolve():
        raise TableError(src, "the output would overwrite the input; choose another --out")
    seen: set = set()
    n_utt = n_calls = 0
    with atomic_path(dst_u) as tu, atomic_path(dst_c) as tc:
        wu = wc = None

        def emit(t):
            nonlocal wu, wc, n_utt, n_calls
            ut, ct = tag_table(tagger, t, src)
            if redact:  # tagged on the original words; the outputs hold no identifier
                from speechpipe.redact import redact_table

                ut, ct = redact_table(ut), redact_table(ct)
            ids = ct.column("call_id").to_pylist()
            again = seen.intersection(ids)
            if again:
                raise TableError(src, f"call {sorted(again)[0]!r} appears in two separate runs of rows "
                                      "(sort the table by call_id, idx)")
            seen.update(ids)
            wu = wu or pq.ParquetWriter(tu, ut.schema)
            wc = wc or pq.ParquetWriter(tc, ct.schema)
            wu.write_table(ut)
            wc.write_table(ct)
            n_utt += ut.num_rows
            n_calls += ct.num_rows

        try:
            carry = None
            for rb in pf.iter_batches(batch_size=rows_per_chunk):
                t = pa.Table.from_batches([rb])
                if not t.num_rows:
                    continue
                if carry is not None and carry.num_rows:
                    t = pa.concat_tables([carry, t.cast(carry.schema)])
                # hold back the last call: its rows may go on in the next batch
                ids = pc.cast(t.column("call_id"), pa.string())
                same = pc.fill_null(pc.equal(ids, ids[t.num_rows - 1]), False)
                other = np.flatnonzero(~same.to_numpy(zero_copy_only=False))
                cut = int(other[-1]) + 1 if len(other) else 0
                if cut:
                    emit(t.slice(0, cut))
                carry = t.slice(cut)
            if carry is not None and carry.num_rows:
                emit(carry)
            if wu is None:  # an empty table still gives (empty) outputs
                emit(pf.schema_arrow.empty_table())
        finally:
            for w in (wu, wc):
                if w is not None:
                    w.close()
    return dst_u, dst_c, n_utt, n_calls
