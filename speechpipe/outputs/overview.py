"""``overview.html``: distributions across the calls of a batch, for quality teams (aggregates only).

Reads ``DIR/calls.parquet`` when present (a batch directory), else every call JSON in
``DIR``; draws Vega-Lite charts (Altair specs, the bundled Vega JavaScript inlined, no
network) of structure, reopenings, feelings-before-case, what-more position, response
latency, silence, talk share and category frequencies, lists the calls of each category
with links to their reports, and offers filters on date and metadata columns
(``meta_*``) when the batch has them. Columns that would identify a counsellor are
never offered as filters: the page never ranks or scores individual counsellors.

Examples
--------
>>> from speechpipe.records import CallResult, Utterance
>>> rows = [overview_row(CallResult("c1", [Utterance("caller", 0.0, 2.0, "Hei")],
...                                 summary={"structure": "funnel", "reopenings": 0}))]
>>> html = render_overview(rows)
>>> "never ranks or scores" in html and "c1" in html
True
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from speechpipe.outputs.report import _env, _script_json, _vega_js
from speechpipe.outputs.writers import atomic_write_text
from speechpipe.records import CallResult

# Metadata that names a person is never a filter (it would turn aggregates into a per-person view).
PERSON_COLUMNS = re.compile(r"counsel|agent|veileder|advis|employee|ansatt|staff|operator|user|name|navn|ident", re.I)
DATE_COLUMNS = re.compile(r"date|dato|time|tid|day|month", re.I)
MAX_FILTER_VALUES = 40
ALL = "(all)"

FIELDS = {  # overview row field → calls.parquet column
    "call_id": "call_id", "duration_s": "audio_duration", "structure": "structure", "reopenings": "reopenings",
    "feelings_before_case": "feelings_before_case", "what_more_position": "what_more_position",
    "latency_counsellor_s": "interaction_response_latency_s_counsellor_median",
    "latency_caller_s": "interaction_response_latency_s_caller_median",
    "silence_share": "interaction_silence_share", "dead_air": "interaction_dead_air_count",
    "talk_share_caller": "interaction_talk_share_caller", "holds_over_120s": "interaction_holds_over_120s",
}


def overview_row(result: CallResult) -> dict[str, Any]:
    """The per-call facts the overview aggregates (from a call result)."""
    from speechpipe.outputs.tables import call_row

    return _from_call_row(call_row(result))


def _from_call_row(r: dict[str, Any]) -> dict[str, Any]:
    row = {k: r.get(col) for k, col in FIELDS.items()}
    if row["talk_share_caller"] is None:  # text-only or no turns: the tagger's talk share
        row["talk_share_caller"] = r.get("talk_share_caller")
    cats = r.get("categories_matched")
    row["categories"] = list(cats) if isinstance(cats, (list, tuple)) else []
    row["category_names"] = [k[len("category_"):] for k in r if k.startswith("category_")]
    row["meta"] = {k[len("meta_"):]: r[k] for k in r if k.startswith("meta_") and r[k] is not None}
    return row


def load_rows(batch_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Overview rows of a batch directory (``calls.parquet``) or a directory of call JSONs."""
    d = Path(batch_dir)
    table = d / "calls.parquet"
    if table.exists():
        from speechpipe.outputs.tables import read_table

        return [_from_call_row(r) for r in read_table(table)]
    rows = []
    for js in sorted(d.glob("*.json")):
        try:
            data = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and str(data.get("schema", "")).startswith("speechpipe.call/"):
            rows.append(overview_row(CallResult.from_dict(data)))
    return rows


def _filters(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Select filters over metadata columns with a few distinct values (person columns excluded)."""
    cols: dict[str, set] = {}
    for r in rows:
        for k, v in r["meta"].items():
            cols.setdefault(k, set()).add(str(v))
    out = []
    for k in sorted(cols):
        if PERSON_COLUMNS.search(k):
            continue
        values = cols[k]
        if DATE_COLUMNS.search(k):  # filter dates by month
            values = {v[:7] for v in values}
            out.append({"column": k, "field": f"f_{_slug(k)}", "label": f"{k} (month)", "values": sorted(values),
                        "month": True})
        elif 1 < len(values) <= MAX_FILTER_VALUES:
            out.append({"column": k, "field": f"f_{_slug(k)}", "label": k, "values": sorted(values), "month": False})
    return out


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", s)


def overview_spec(rows: list[dict[str, Any]], filters: list[dict[str, Any]]) -> dict:
    """One Vega-Lite spec: every distribution, all following the same filters."""
    import altair as alt

    def fvals(r):
        return {f["field"]: (str(r["meta"].get(f["column"]))[:7] if f["month"] else str(r["meta"].get(f["column"])))
                for f in filters}

    calls = []
    for r in rows:
        fb = r["feelings_before_case"]
        calls.append({**{k: r[k] for k in FIELDS}, **fvals(r),
                      "feelings": "no empathic act" if fb is None else ("yes" if fb else "no"),
                      "reopenings_n": r["reopenings"] if r["reopenings"] is not None else -1})
    names = sorted({n for r in rows for n in r["category_names"]} | {n for r in rows for n in r["categories"]})
    cat_long = [{"category": n, "matched": n in r["categories"], **fvals(r)} for r in rows for n in names]
    lat_long = [{"party": p, "latency": r[f"latency_{p}_s"], **fvals(r)} for r in rows for p in ("counsellor", "caller")
                if r[f"latency_{p}_s"] is not None]
    params = [alt.param(name=f["field"], value=ALL,
                        bind=alt.binding_select(options=[ALL, *f["values"]], name=f["label"] + " "))
              for f in filters]
    expr = " && ".join(f"({f['field']} == '{ALL}' || datum.{f['field']} == {f['field']})" for f in filters) or "true"

    def base(values):
        return alt.Chart(alt.Data(values=values)).transform_filter(expr)

    w, h = 260, 150
    charts = [
        base(calls).mark_bar().encode(x=alt.X("structure:N", title="structure"), y=alt.Y("count():Q", title="calls"))
        .properties(title="Structure (funnel / hourglass)", width=w, height=h),
        base(calls).transform_filter("datum.reopenings_n >= 0").mark_bar().encode(
            x=alt.X("reopenings_n:O", title="reopenings"), y=alt.Y("count():Q", title="calls"))
        .properties(title="Reopenings per call", width=w, height=h),
        base(calls).mark_bar().encode(x=alt.X("feelings:N", title="first empathic act before first case information"),
                                      y=alt.Y("count():Q", title="calls"))
        .properties(title="Feelings before case", width=w, height=h),
        base(calls).transform_filter("isValid(datum.what_more_position)").mark_bar().encode(
            x=alt.X("what_more_position:Q", bin=alt.Bin(extent=[0, 1], step=0.1), title="share of the call"),
            y=alt.Y("count():Q", title="calls"))
        .properties(title="Where the first «hva mer» question falls", width=w, height=h),
        base(lat_long).mark_bar(opacity=0.7).encode(
            x=alt.X("latency:Q", bin=alt.Bin(step=0.25), title="median response latency per call (s)"),
            y=alt.Y("count():Q", title="calls", stack=None), color=alt.Color("party:N", title="after the other"))
        .properties(title="Response latency (floor-transfer offset)", width=w, height=h),
        base(calls).transform_filter("isValid(datum.silence_share)").mark_bar().encode(
            x=alt.X("silence_share:Q", bin=alt.Bin(extent=[0, 1], step=0.05),
                    title="share of the call in pauses > 5 s"),
            y=alt.Y("count():Q", title="calls"))
        .properties(title="Silence", width=w, height=h),
        base(calls).transform_filter("isValid(datum.talk_share_caller)").mark_bar().encode(
            x=alt.X("talk_share_caller:Q", bin=alt.Bin(extent=[0, 1], step=0.05), title="caller's share of talk time"),
            y=alt.Y("count():Q", title="calls"))
        .properties(title="Talk share", width=w, height=h),
    ]
    if names:
        charts.append(base(cat_long).transform_filter("datum.matched").mark_bar().encode(
            y=alt.Y("category:N", sort=names, title=None, scale=alt.Scale(domain=names)),
            x=alt.X("count():Q", title="calls in the category"))
            .properties(title="Categories", width=w, height=max(h, 18 * len(names))))
    rows_of = [alt.hconcat(*charts[i:i + 3]) for i in range(0, len(charts), 3)]
    chart = alt.vconcat(*rows_of)
    if params:
        chart = chart.add_params(*params)
    return chart.to_dict()


def render_overview(rows: list[dict[str, Any]], title: str = "speechpipe overview",
                    report_dir: str | os.PathLike | None = None) -> str:
    """The overview page for ``rows`` (see :func:`load_rows`), as a self-contained HTML string.

    Calls are linked to ``<call_id>.html`` when that report exists in ``report_dir``
    (when ``report_dir`` is ``None``, links are always written).
    """
    filters = _filters(rows)
    spec = overview_spec(rows, filters)

    from urllib.parse import quote

    from speechpipe.privacy import safe_stem

    def link(cid):  # reports are written as <safe stem>.html (a renamed duplicate is not linked)
        name = f"{safe_stem(str(cid))}.html"
        if report_dir is None or (Path(report_dir) / name).exists():
            return quote(name)
        return None

    names = sorted({n for r in rows for n in r["category_names"]} | {n for r in rows for n in r["categories"]})
    per_cat = [{"name": n, "calls": [{"call_id": r["call_id"], "href": link(r["call_id"])}
                                     for r in sorted(rows, key=lambda r: str(r["call_id"])) if n in r["categories"]],
                "decided": sum(1 for r in rows if n in r["category_names"])} for n in names]
    durations = [r["duration_s"] for r in rows if isinstance(r["duration_s"], (int, float))]
    return _env().get_template("overview.html.j2").render(
        title=title, n_calls=len(rows), hours=sum(durations) / 3600 if durations else None, categories=per_cat,
        filters=filters, spec_json=_script_json(spec), vega_js=_vega_js(),
        hidden_person_columns=sorted({k for r in rows for k in r["meta"] if PERSON_COLUMNS.search(k)}),
    )


def write_overview(batch_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                   rows: Iterable[dict[str, Any]] | None = None, tmp_dir: str | os.PathLike | None = None) -> Path:
    """Write ``overview.html`` for a batch (or call-JSON) directory; return its path.

    ``tmp_dir``: where the temporary file is written before it is moved in (a batch's work folder).
    """
    d = Path(batch_dir)
    rows = list(rows) if rows is not None else load_rows(d)
    dest = Path(out) if out else d / "overview.html"
    return atomic_write_text(dest, render_overview(rows, title=f"speechpipe overview · {d.name}",
                                                   report_dir=dest.parent), tmp_dir)
