"""Per-call HTML report for quality teams, and an index page over many calls.

The report renders from a :class:`~speechpipe.records.CallResult` alone (the
call JSON), so it also works for text-only ``tag`` results: without times the
timeline is drawn over turn numbers instead of seconds. Charts are Vega-Lite
specs built with Altair and drawn by the Vega JavaScript that is inlined into
the page (``static/vega-bundle.min.js``), so a report is one self-contained
file that makes no network request. Markup comes from Jinja2 templates in
``templates/``.

The report describes what happened in the call; it never scores or ranks
the counsellor.

Examples
--------
>>> from speechpipe.records import CallResult, Utterance
>>> r = CallResult("c1", [Utterance("caller", 0.0, 2.0, "Hei", phase="opening")])
>>> html = render_report(r)
>>> "<html" in html and "c1" in html
True
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from speechpipe.outputs.sentences import interaction_sentences, measure_sentences
from speechpipe.outputs.writers import atomic_write_text
from speechpipe.records import PHASES, CallResult, Utterance

PHASE_COLOURS = {"opening": "#8ecae6", "mapping": "#ffb703", "solution": "#90be6d", "closing": "#b8b8d1"}
SPEAKER_COLOURS = {"counsellor": "#1d3557", "caller": "#e76f51", "other": "#6c757d"}
INTONATION_SHAPES = {"rise": "triangle-up", "fall": "triangle-down", "level": "square"}
ACT_COLOURS = {
    "greeting": "#d8e2dc", "empathic_statement": "#ffcad4", "acknowledgement": "#f4acb7", "agreement": "#ffd6a5",
    "backchannel": "#e9ecef", "open_question": "#caffbf", "what_more": "#9bf6ff", "contract": "#a0c4ff",
    "closed_question": "#bdb2ff", "information": "#fdffb6", "news_warning": "#ffc6ff", "summary": "#b9fbc0",
    "hold": "#cfbaf0", "referral": "#f1c0e8", "emotion": "#ffadad", "request": "#fbf8cc", "new_topic": "#8eecf5",
}
LOW_CONFIDENCE = 0.5  # an act the tagger gives less than this probability is shown as uncertain
STRESS_LABELS = {"f0_z": "raised pitch", "loudness_z": "louder", "rate_z": "faster speech"}


@lru_cache(maxsize=1)
def _vega_js() -> str:
    return resources.files("speechpipe.outputs").joinpath("static/vega-bundle.min.js").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("speechpipe.outputs", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _script_json(obj: Any) -> str:
    """JSON safe to place inside a <script> element (no raw ``<``, ``>`` or ``&``)."""
    return json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _has_times(result: CallResult) -> bool:
    return bool(result.utterances) and all(u.start is not None and u.end is not None for u in result.utterances)


def reopening_indices(utterances: list[Utterance]) -> list[int]:
    """Indices where the call opens again: mapping after solution or closing had begun."""
    out, late = [], False
    for i, u in enumerate(utterances):
        if u.phase in ("solution", "closing"):
            late = True
        elif u.phase in ("opening", "mapping") and late:
            out.append(i)
            late = False
    return out


def _spans(result: CallResult, timed: bool) -> list[tuple[float, float]]:
    if timed:
        return [(float(u.start), float(u.end)) for u in result.utterances]
    return [(float(i), float(i + 1)) for i in range(len(result.utterances))]


def _x_end(result: CallResult, spans: list[tuple[float, float]]) -> float:
    """One x range for every chart, so the timeline and pitch panels line up."""
    end = max((b for _, b in spans), default=1.0)
    return max(end, float((result.audio or {}).get("duration") or 0.0) if _has_times(result) else 0.0)


def _short(text: str, n: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def timeline_spec(result: CallResult) -> dict | None:
    """Vega-Lite spec: phase bands, both speakers' turns, reopenings, backchannels, breaths and other cues."""
    import altair as alt

    if not result.utterances:
        return None
    timed = _has_times(result)
    spans = _spans(result, timed)
    xtitle = "time (s)" if timed else "turn number (no times in this result)"
    turns = [
        {"start": a, "end": b, "speaker": u.speaker, "text": _short(u.text), "acts": ", ".join(u.acts) or "–",
         "phase": u.phase or "–", "turn": i + 1, "stress": ", ".join(stress_cues(u)) or "–",
         "breaths": (u.prosody or {}).get("breaths", "–")}
        for i, (u, (a, b)) in enumerate(zip(result.utterances, spans))
    ]
    bands: list[dict] = []
    for t in turns:
        if t["phase"] == "–":
            continue
        if bands and bands[-1]["phase"] == t["phase"]:
            bands[-1]["end"] = max(bands[-1]["end"], t["end"])
        else:
            bands.append({"start": t["start"], "end": t["end"], "phase": t["phase"]})
    rows = [s for s in ("counsellor", "caller", "other") if any(t["speaker"] == s for t in turns)]
    rows += sorted({t["speaker"] for t in turns} - set(rows))
    y = alt.Y("speaker:N", sort=rows, title=None, scale=alt.Scale(domain=rows))
    xs = alt.Scale(domain=[0, _x_end(result, spans)], nice=False)
    x = alt.X("start:Q", title=xtitle, scale=xs)
    layers = []
    if bands:
        ph = [p for p in PHASES if any(b["phase"] == p for b in bands)]
        layers.append(
            alt.Chart(alt.Data(values=bands))
            .mark_rect(opacity=0.35)
            .encode(
                x=x,
                x2="end:Q",
                color=alt.Color(
                    "phase:N",
                    title="phase",
                    scale=alt.Scale(domain=ph, range=[PHASE_COLOURS.get(p, "#ccc") for p in ph]),
                ),
                tooltip=[
                    alt.Tooltip("phase:N"),
                    alt.Tooltip("start:Q", format=".1f"),
                    alt.Tooltip("end:Q", format=".1f"),
                ],
            )
        )
    layers.append(
        alt.Chart(alt.Data(values=turns))
        .mark_bar(height={"band": 0.55}, cornerRadius=2)
        .encode(
            x=x,
            x2="end:Q",
            y=y,
            fill=alt.Fill(
                "speaker:N",
                title="speaker",
                scale=alt.Scale(domain=rows, range=[SPEAKER_COLOURS.get(s, "#999") for s in rows]),
            ),
            tooltip=[
                alt.Tooltip("turn:Q"),
                alt.Tooltip("speaker:N"),
                alt.Tooltip("phase:N"),
                alt.Tooltip("acts:N"),
                alt.Tooltip("stress:N", title="stress cues"),
                alt.Tooltip("breaths:N", title="breaths in turn"),
                alt.Tooltip("text:N"),
            ],
        )
    )
    stressed = [t for t in turns if t["stress"] != "–"]
    if stressed:  # per turn: which voice cues rose against the speaker's own turns
        layers.append(alt.Chart(alt.Data(values=stressed)).transform_calculate(mid="(datum.start + datum.end) / 2")
                      .mark_point(shape="diamond", filled=True, size=70, color="#d62828", yOffset=14).encode(
            x=alt.X("mid:Q", scale=xs), y=y,
            tooltip=[alt.Tooltip("turn:Q"), alt.Tooltip("stress:N", title="stress cues"), alt.Tooltip("text:N")]))
    reopen = [
        {"start": spans[i][0], "label": f"reopening {k + 1}"}
        for k, i in enumerate(reopening_indices(result.utterances))
    ]
    if reopen:
        layers.append(
            alt.Chart(alt.Data(values=reopen))
            .mark_rule(color="#c1121f", strokeWidth=2, strokeDash=[6, 3])
            .encode(x=x, tooltip=[alt.Tooltip("label:N"), alt.Tooltip("start:Q", format=".1f")])
        )
        layers.append(
            alt.Chart(alt.Data(values=reopen))
            .mark_text(color="#c1121f", align="left", dx=3, dy=-4, baseline="bottom")
            .encode(x=x, y=alt.value(0), text="label:N")
        )
    bc = [
        {"start": (a + b) / 2, "speaker": u.speaker, "intonation": u.intonation,
         "change": "–" if u.pitch_change_st is None else f"{u.pitch_change_st:+.1f} st", "text": _short(u.text, 40)}
        for u, (a, b) in zip(result.utterances, spans) if "backchannel" in u.acts and u.intonation
    ]
    if bc:
        layers.append(
            alt.Chart(alt.Data(values=bc))
            .mark_point(filled=True, size=90, color="#111", yOffset=-14)
            .encode(
                x=x,
                y=y,
                shape=alt.Shape(
                    "intonation:N",
                    title="backchannel",
                    scale=alt.Scale(domain=list(INTONATION_SHAPES), range=list(INTONATION_SHAPES.values())),
                ),
                tooltip=[
                    alt.Tooltip("intonation:N"),
                    alt.Tooltip("change:N", title="pitch change"),
                    alt.Tooltip("text:N"),
                ],
            )
        )
    if timed and result.events:
        ev = [
            {
                "start": e.start,
                "end": max(e.end, e.start + 0.05),
                "speaker": e.speaker if e.speaker in rows else rows[-1],
                "cue": ("heavy breath" if e.heavy else "breath") if e.type == "breath" else e.type.replace("_", " "),
            }
            for e in result.events
        ]
        cues = sorted({e["cue"] for e in ev})
        layers.append(alt.Chart(alt.Data(values=ev)).mark_tick(thickness=3, size=26, yOffset=14).encode(
            x=x, y=y,
            stroke=alt.Stroke("cue:N", title="cues", scale=alt.Scale(domain=cues, scheme="dark2")),
            tooltip=[alt.Tooltip("cue:N"), alt.Tooltip("speaker:N"), alt.Tooltip("start:Q", format=".1f")]))
    chart = alt.layer(*layers).resolve_scale(color="independent").properties(width=900, height=60 * len(rows) + 40)
    return chart.to_dict()


def stress_cues(u: Utterance) -> list[str]:
    """Voice cues of one turn that are ≥ 1 SD above the speaker's own turns (pitch, loudness, rate)."""
    p = u.prosody or {}
    return [label for k, label in STRESS_LABELS.items() if isinstance(p.get(k), (int, float)) and p[k] >= 1.0]


def low_confidence(u: Utterance) -> dict[str, float]:
    """Acts the tagger gave a probability below :data:`LOW_CONFIDENCE` (``act_confidence``, when present)."""
    conf = getattr(u, "act_confidence", None) or {}
    return {a: float(conf[a]) for a in u.acts if isinstance(conf.get(a), (int, float)) and conf[a] < LOW_CONFIDENCE}


def _contour(result: CallResult) -> list[dict]:
    """A pitch contour if the prosody stage stored one per utterance (``prosody['f0_contour']`` as [[t, hz], …])."""
    pts = []
    for u in result.utterances:
        c = (u.prosody or {}).get("f0_contour")
        if isinstance(c, dict) and "t" in c and "hz" in c:
            c = list(zip(c["t"], c["hz"]))
        for item in c or []:
            try:
                t, hz = float(item[0]), item[1]
            except (TypeError, ValueError, IndexError):
                continue
            if hz:
                pts.append({"t": t, "hz": float(hz), "speaker": u.speaker})
    return pts


def pitch_spec(result: CallResult) -> dict | None:
    """Vega-Lite spec: the pitch contour (when stored) and each backchannel's measured pitch change,
    marked rise/fall."""
    import altair as alt

    timed = _has_times(result)
    spans = _spans(result, timed)
    bc = [
        {"t": (a + b) / 2, "change": float(u.pitch_change_st), "intonation": u.intonation or "unmeasured",
         "speaker": u.speaker, "text": _short(u.text, 40)}
        for u, (a, b) in zip(result.utterances, spans)
        if "backchannel" in u.acts and u.pitch_change_st is not None
    ]
    contour = _contour(result) if timed else []
    if not bc and not contour:
        return None
    xt = "time (s)" if timed else "turn number"
    xs = alt.Scale(domain=[0, _x_end(result, spans)], nice=False)
    charts = []
    if contour:
        charts.append(
            alt.Chart(alt.Data(values=contour))
            .mark_line(strokeWidth=1, opacity=0.8)
            .encode(
                x=alt.X("t:Q", title=xt, scale=xs),
                y=alt.Y("hz:Q", title="F0 (Hz)"),
                color=alt.Color(
                    "speaker:N", scale=alt.Scale(domain=list(SPEAKER_COLOURS), range=list(SPEAKER_COLOURS.values()))
                ),
            )
            .properties(width=900, height=140, title="pitch track")
        )
    if bc:
        doms = [i for i in (*INTONATION_SHAPES, "unmeasured") if any(b["intonation"] == i for b in bc)]
        rule = alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(color="#999").encode(y="y:Q")
        pts = (
            alt.Chart(alt.Data(values=bc))
            .mark_point(filled=True, size=110)
            .encode(
                x=alt.X("t:Q", title=xt, scale=xs),
                y=alt.Y("change:Q", title="final pitch change (semitones)"),
                shape=alt.Shape(
                    "intonation:N",
                    scale=alt.Scale(domain=doms, range=[INTONATION_SHAPES.get(d, "circle") for d in doms]),
                ),
                color=alt.Color(
                    "speaker:N", scale=alt.Scale(domain=list(SPEAKER_COLOURS), range=list(SPEAKER_COLOURS.values()))
                ),
                tooltip=[
                    alt.Tooltip("intonation:N"),
                    alt.Tooltip("change:Q", format="+.1f"),
                    alt.Tooltip("speaker:N"),
                    alt.Tooltip("text:N"),
                ],
            )
        )
        charts.append((rule + pts).properties(width=900, height=140, title="backchannels: rise / fall"))
    chart = charts[0] if len(charts) == 1 else alt.vconcat(*charts)
    return chart.to_dict()


def _highlight(text: str, acts: list[str], evidence: dict[str, str]) -> list[dict]:
    """Split ``text`` into pieces; a piece quoted as an act's evidence is marked with that act."""
    marks = []
    for act in acts:
        ev = (evidence or {}).get(act)
        if not isinstance(ev, str) or not ev.strip():
            continue
        m = re.search(re.escape(ev.strip()), text, flags=re.IGNORECASE)
        if m and not any(m.start() < b and a < m.end() for a, b, _ in marks):
            marks.append((m.start(), m.end(), act))
    pieces, pos = [], 0
    for a, b, act in sorted(marks):
        if a > pos:
            pieces.append({"text": text[pos:a]})
        pieces.append({"text": text[a:b], "act": act, "evidence": evidence.get(act)})
        pos = b
    if pos < len(text):
        pieces.append({"text": text[pos:]})
    return pieces


def _fmt_time(t: float | None) -> str:
    if t is None:
        return ""
    m, s = divmod(float(t), 60)
    return f"{int(m)}:{s:04.1f}"


def _measures(result: CallResult) -> list[tuple[str, str]]:
    """Call measures as (label, value) pairs, worded descriptively."""
    s = result.summary.to_dict() if hasattr(result.summary, "to_dict") else dict(result.summary or {})
    out: list[tuple[str, str]] = []
    if "structure" in s:
        r = s.get("reopenings") or 0
        out.append(("Structure", f"{s['structure'].capitalize()}: " + (
            f"the call opened again {r} time{'s' if r != 1 else ''} after the solution or closing had begun."
            if r else "the phases never went back.")))
    if s.get("feelings_before_case") is not None:
        out.append(("Feelings before case", "The counsellor's first empathic act came "
                    + ("before" if s["feelings_before_case"] else "after") + " the first case information."))
    for key in ("feelings_latency_s", "emotion_to_empathy_s"):
        if isinstance(s.get(key), (int, float)):
            out.append(("After the first emotion", f"The next empathic act came {s[key]:.1f} s after the caller's "
                        "first emotion."))
            break
    wm = s.get("what_more_position")
    out.append(("«Hva mer» question", "None in this call." if wm is None
                else f"The first came at {wm:.0%} of the call."))
    ts = s.get("talk_share")
    if isinstance(ts, dict) and ts and "interaction" not in s:
        out.append(("Talk share", ", ".join(f"{k} {v:.0%}" for k, v in ts.items() if isinstance(v, (int, float)))
                    + (" (of the words; no times)." if s.get("talk_share_unit") == "words" else ".")))
    out += measure_sentences(s)
    out += interaction_sentences(s.get("interaction"))
    breaths = [e for e in result.events if e.type == "breath"]
    if breaths:
        heavy = sum(e.heavy for e in breaths)
        per = {}
        for e in breaths:
            per[e.speaker] = per.get(e.speaker, 0) + 1
        out.append(("Breath events", f"{len(breaths)} breath{'s' if len(breaths) != 1 else ''} ({heavy} heavy): "
                    + ", ".join(f"{k} {v}" for k, v in per.items()) + "."))
    other = sorted({e.type for e in result.events} - {"breath"})
    for t in other:
        out.append((t.replace("_", " ").capitalize(), str(sum(e.type == t for e in result.events))))
    return out


def render_report(result: CallResult, audio_src: str | None = None) -> str:
    """The report page for one call, as a self-contained HTML string.

    ``audio_src``: a URL (relative to the page) of the original recording; the page then
    has an audio player, and clicking a transcript line plays from there. Nothing is copied.
    """
    timed = _has_times(result)
    reopen = set(reopening_indices(result.utterances))
    rows = []
    for i, u in enumerate(result.utterances):
        rows.append({
            "idx": i + 1, "time": _fmt_time(u.start) if timed else "", "speaker": u.speaker, "phase": u.phase or "",
            "start": float(u.start) if timed else None, "low": low_confidence(u), "stress": stress_cues(u),
            "breaths": (u.prosody or {}).get("breaths") or 0,
            "acts": list(u.acts), "pieces": _highlight(u.text, u.acts, u.evidence), "evidence": u.evidence or {},
            "intonation": u.intonation, "reopening": i in reopen,
            "new_phase": i == 0 or u.phase != result.utterances[i - 1].phase,
        })
    charts = {k: v for k, v in (("timeline", timeline_spec(result)), ("pitch", pitch_spec(result))) if v}
    audio = result.audio or {}
    return _env().get_template("report.html.j2").render(
        call_id=result.call_id,
        duration=audio.get("duration"),
        timed=timed,
        n_utterances=len(result.utterances),
        measures=_measures(result),
        structure=(result.summary or {}).get("structure"),
        reopenings=(result.summary or {}).get("reopenings"),
        rows=rows,
        charts_json=_script_json(charts),
        chart_names=list(charts),
        vega_js=_vega_js() if charts else "",
        models={k: v for k, v in (result.models or {}).items() if isinstance(v, str)},
        redaction=result.redaction,
        audio_src=audio_src if timed else None,
        categories=[c for c in (result.summary.get("categories") or []) if c.get("matched")],
        act_colours=ACT_COLOURS,
        phase_colours=PHASE_COLOURS,
        speaker_colours=SPEAKER_COLOURS,
    )


def write_report(result: CallResult, path: str | os.PathLike, audio: bool = False,
                 relative_to: str | os.PathLike | None = None) -> Path:
    """Write the report for ``result`` to ``path`` (atomic, owner-only).

    ``audio``: add a player for the original recording, referenced by its path relative
    to the report (``audio.path`` of the result; none when it is blanked by ``--pseudonymise``).
    ``relative_to``: the folder the report will finally live in, when ``path`` is a staging copy.
    """
    src = None
    apath = (result.audio or {}).get("path")
    if audio and apath:
        from urllib.parse import quote

        home = os.fspath(relative_to) if relative_to is not None else (os.path.dirname(os.fspath(path)) or ".")
        rel = os.path.relpath(os.path.abspath(apath), os.path.abspath(home))
        src = quote(Path(rel).as_posix())
    return atomic_write_text(path, render_report(result, audio_src=src))


def index_entry(result: CallResult, report_path: str) -> dict:
    """The index row for one call: facts and descriptive flags, never a score."""
    s = result.summary or {}
    flags = []
    heavy = sum(e.heavy for e in result.events if e.type == "breath")
    if heavy:
        flags.append(f"heavy breathing ({heavy})")
    elif s.get("heavy_breathing"):
        flags.append("heavy breathing")
    if result.redaction:
        flags.append("redacted")
    if not _has_times(result):
        flags.append("text only")
    return {"call_id": result.call_id, "report": report_path, "structure": s.get("structure"),
            "reopenings": s.get("reopenings"), "duration": (result.audio or {}).get("duration"), "flags": flags}


def write_index(entries: Iterable[dict], path: str | os.PathLike, title: str = "speechpipe reports") -> Path:
    """Write an index page linking reports.

    ``entries`` are dicts with ``call_id``, ``report`` (path relative to the
    index), and optionally ``structure``, ``reopenings``, ``duration`` and
    ``flags`` (list of short descriptive strings); :func:`index_entry` builds one.
    """
    rows = sorted(entries, key=lambda e: str(e.get("call_id")))
    html = _env().get_template("index.html.j2").render(title=title, entries=rows)
    return atomic_write_text(path, html)
