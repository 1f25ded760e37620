"""Reproducible random samples of a batch's calls, for quality review.

:func:`draw_sample` reads ``DIR/calls.parquet`` (one row per processed call),
filters it with an optional SQL condition (DuckDB, with file and network
access switched off so a condition can only read the table), and draws
``n`` calls with a seeded generator — proportionally per stratum when a
column is given (largest-remainder allocation). Same directory, same
arguments, same sample.

Examples
--------
>>> rows = draw_sample("out/", n=20, seed=1, stratify="structure")   # doctest: +SKIP
>>> write_sample("out/", rows, seed=1, stratify="structure")          # doctest: +SKIP
PosixPath('out/samples/n20-seed1-structure')
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np


class SampleError(Exception):
    """A sample that cannot be drawn (no table, bad column or condition)."""


def _calls_table(batch_dir: Path):
    import pyarrow.parquet as pq

    path = Path(batch_dir) / "calls.parquet"
    if not path.exists():
        raise SampleError(f"{path}: not found (run `speechpipe batch … --out {batch_dir}` first)")
    return pq.read_table(path)


def allocate(sizes: list[int], n: int) -> list[int]:
    """Split ``n`` draws over strata proportionally to ``sizes`` (largest remainder).

    Examples
    --------
    >>> allocate([6, 3, 1], 5)
    [3, 2, 0]
    >>> allocate([2, 2], 10)
    [2, 2]
    """
    total = sum(sizes)
    n = min(n, total)
    if total == 0:
        return [0] * len(sizes)
    exact = [n * s / total for s in sizes]
    alloc = [min(s, math.floor(e)) for s, e in zip(sizes, exact)]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    while sum(alloc) < n:
        for i in order:
            if sum(alloc) < n and alloc[i] < sizes[i]:
                alloc[i] += 1
    return alloc


def draw_sample(
    batch_dir: str | os.PathLike,
    n: int = 20,
    seed: int = 1,
    stratify: str | None = None,
    where: str | None = None,
) -> list[dict[str, Any]]:
    """Draw ``n`` calls (fewer if fewer match) from a batch directory.

    Parameters
    ----------
    batch_dir : path
        A ``speechpipe batch`` output directory.
    n, seed : int
        Sample size and seed.
    stratify : str, optional
        A column of ``calls.parquet`` (e.g. ``structure``); null values form their own stratum.
    where : str, optional
        SQL condition on the columns, e.g. ``n_heavy_breaths > 0 AND audio_duration > 60``.

    Returns
    -------
    list of dict
        The sampled call rows (with a ``stratum`` key when stratified), ordered by call id.
    """
    import duckdb

    from speechpipe.offline import DUCKDB_CONFIG

    table = _calls_table(Path(batch_dir))
    cols = table.column_names
    if stratify and stratify not in cols:
        raise SampleError(f"--stratify {stratify!r} is not a column of calls.parquet; choose from {', '.join(cols)}")
    con = duckdb.connect(config={"threads": 1, **DUCKDB_CONFIG})
    try:
        con.register("calls", table)
        con.execute("SET enable_external_access = false")  # a --where condition can only read `calls`
        sql = "SELECT * FROM calls" + (f" WHERE {where}" if where else "") + " ORDER BY call_id"
        try:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
        except duckdb.Error as e:
            raise SampleError(f"--where {where!r}: {str(e).splitlines()[0]}") from None
    finally:
        con.close()

    rng = np.random.default_rng(seed)
    if not stratify:
        idx = sorted(rng.choice(len(rows), size=min(n, len(rows)), replace=False).tolist()) if rows else []
        return [rows[i] for i in idx]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault("(none)" if r.get(stratify) is None else str(r[stratify]), []).append(i)
    keys = sorted(groups)
    picked = []
    for key, k in zip(keys, allocate([len(groups[g]) for g in keys], n)):
        members = groups[key]
        for j in rng.choice(len(members), size=k, replace=False).tolist():
            picked.append(members[j])
            rows[members[j]]["stratum"] = key
    return [rows[i] for i in sorted(picked)]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")[:40]


def write_sample(
    batch_dir: str | os.PathLike,
    rows: list[dict[str, Any]],
    out: str | os.PathLike | None = None,
    name: str | None = None,
    seed: int = 1,
    stratify: str | None = None,
    where: str | None = None,
) -> Path:
    """Write ``sample.csv``, ``sample.json`` and the calls' reports; return the folder.

    Reports come from :mod:`speechpipe.outputs.report` (one HTML page per call plus an
    ``index.html``) when that module is available; the list is always written.
    """
    from speechpipe.outputs.writers import atomic_write_text, private_dir, write_json

    batch_dir = Path(batch_dir)
    if out is None:
        name = name or "-".join(x for x in (f"n{len(rows)}", f"seed{seed}", stratify and _slug(stratify),
                                             where and "where-" + _slug(where)) if x)
        out = batch_dir / "samples" / name
    dest = private_dir(out)
    fields = ["call_id", "stratum", "input", "audio_duration", "structure", "json"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    entries = []
    from speechpipe.privacy import safe_stem

    for r in rows:
        js = batch_dir / f"{safe_stem(r['call_id'])}.json"
        w.writerow({**r, "json": str(js)})
        entries.append({"call_id": r["call_id"], "json": js, "row": r})
    atomic_write_text(dest / "sample.csv", buf.getvalue())
    write_json(dest / "sample.json", {
        "batch_dir": str(batch_dir), "n": len(rows), "seed": seed, "stratify": stratify, "where": where,
        "call_ids": [r["call_id"] for r in rows],
    })
    try:
        _write_reports(entries, dest)
    except Exception as e:  # the list is what matters; reports are a convenience
        import logging

        logging.getLogger(__name__).warning("sample reports not written: %s: %s", type(e).__name__, e)
    return dest


def _write_reports(entries: list[dict[str, Any]], dest: Path) -> None:
    """Per-call HTML reports and an index, via the report module (optional)."""
    try:
        from speechpipe.outputs import report
    except ImportError:
        return
    from speechpipe.records import CallResult

    index = []
    for e in entries:
        if not e["json"].exists():
            continue
        result = CallResult.from_dict(json.loads(e["json"].read_text(encoding="utf-8")))
        page = dest / e["json"].with_suffix(".html").name
        if hasattr(report, "write_report"):
            report.write_report(result, page)
        index.append({"call_id": e["call_id"], "path": page, "result": result, **e["row"]})
    if hasattr(report, "write_index"):
        report.write_index(index, dest / "index.html")
