"""Research exports of one call: RTTM, WebVTT, SRT, Praat TextGrid, ELAN EAF.

Each ``to_*`` function renders a :class:`~speechpipe.records.CallResult`
to the format's text (or bytes), and each ``write_*`` writes it atomically
(owner-only) through :mod:`speechpipe.outputs.writers`. All of them need utterance
times; for a text-only result (``speechpipe tag``) they raise
:class:`NoTimesError` and :func:`speechpipe.outputs.write_outputs` skips them.

TextGrid and EAF share one tier plan (:func:`tier_plan`): interval tiers may
not overlap, and the two parties of a call do, so turns, words, acts,
backchannel intonation and breaths get one tier per speaker; an utterance
with several acts spreads them over ``<speaker>-acts``, ``<speaker>-acts-2``…
The call's phases are one tier.

Examples
--------
>>> from speechpipe.records import CallResult, Utterance
>>> r = CallResult("c1", [Utterance("caller", 0.5, 1.25, "Hei")])
>>> print(to_rttm(r), end="")
SPEAKER c1 1 0.500 0.750 <NA> <NA> caller <NA> <NA>
>>> print(to_srt(r), end="")
1
00:00:00,500 --> 00:00:01,250
[caller] Hei
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from speechpipe.outputs.writers import atomic_write_bytes, atomic_write_text
from speechpipe.records import ACTS, INTONATIONS, PHASES, CallResult, Utterance

Interval = tuple[float, float, str]
SPEAKER_LABELS = {"counsellor": "Counsellor", "caller": "Caller", "other": "Other"}


class NoTimesError(ValueError):
    """The result has no utterance times (text-only), so no timed export exists."""


def _timed(result: CallResult) -> list[tuple[int, Utterance]]:
    utts = [
        (i, u) for i, u in enumerate(result.utterances) if u.start is not None and u.end is not None and u.end > u.start
    ]
    if not utts:
        raise NoTimesError(f"{result.call_id}: no utterance times (text-only result); timed exports skipped")
    return utts


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- RTTM -------------------------------------------------------------------------


def to_rttm(result: CallResult) -> str:
    """Speaker turns in NIST RTTM (``SPEAKER uri 1 start dur <NA> <NA> label <NA> <NA>``), via pyannote.core.

    The turns found in the audio (``result.turns``: all the speech, words or not, overlaps
    kept) when the result has them; otherwise (text-only or older results) the utterances.
    """
    from pyannote.core import Annotation, Segment

    uri = re.sub(r"\s+", "_", result.call_id)  # RTTM fields are space separated
    ann = Annotation(uri=uri)
    turns = [t for t in result.turns if t.end > t.start]
    if turns:
        for i, t in enumerate(turns):
            ann[Segment(float(t.start), float(t.end)), i] = t.speaker
        return ann.to_rttm()
    for i, u in _timed(result):
        ann[Segment(float(u.start), float(u.end)), i] = u.speaker
    return ann.to_rttm()


# --- captions ------------------------------------------------------------------------


def _ts(t: float, sep: str) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _escape_vtt(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(result: CallResult) -> str:
    """WebVTT captions; the speaker is a voice span (``<v Caller>…``) as the WebVTT spec defines."""
    lines = ["WEBVTT", "", f"NOTE speechpipe call {result.call_id}", ""]
    for n, (_, u) in enumerate(_timed(result), 1):
        voice = SPEAKER_LABELS.get(u.speaker, u.speaker)
        lines += [
            str(n),
            f"{_ts(u.start, '.')} --> {_ts(u.end, '.')}",
            f"<v {voice}>{_escape_vtt(_one_line(u.text))}",
            "",
        ]
    return "\n".join(lines)


def to_srt(result: CallResult) -> str:
    """SubRip captions; SRT has no speaker field, so the text starts with ``[speaker]``."""
    blocks = []
    for n, (_, u) in enumerate(_timed(result), 1):
        blocks.append(f"{n}\n{_ts(u.start, ',')} --> {_ts(u.end, ',')}\n[{u.speaker}] {_one_line(u.text)}\n")
    return "\n".join(blocks)


# --- tiers (TextGrid, EAF) --------------------------------------------------------------


def _no_overlap(intervals: list[Interval]) -> list[Interval]:
    """Sort and clip so no interval starts before the previous one ends (interval tiers need that)."""
    out: list[Interval] = []
    for a, b, lab in sorted(intervals):
        a, b = round(a, 3), round(b, 3)
        if out and a < out[-1][1]:
            a = out[-1][1]
        if b - a >= 0.001:
            out.append((a, b, lab))
    return out


def tier_plan(result: CallResult) -> dict[str, list[Interval]]:
    """Non-overlapping interval tiers, in display order.

    ``<speaker>`` (utterance text), ``<speaker>-words``, ``<speaker>-acts[-k]``,
    ``phases`` (stretches of one phase), ``<speaker>-backchannel``
    (``rise``/``fall``/``level``), ``<speaker>-breaths``
    (``breath`` / ``heavy breath``) and ``<speaker>-events`` for other event types.
    """
    timed = _timed(result)
    speakers = [s for s in ("counsellor", "caller", "other") if any(u.speaker == s for _, u in timed)]
    speakers += sorted({u.speaker for _, u in timed} - set(speakers))
    tiers: dict[str, list[Interval]] = {}
    for spk in speakers:
        mine = [u for _, u in timed if u.speaker == spk]
        tiers[spk] = [(u.start, u.end, _one_line(u.text)) for u in mine]
        tiers[f"{spk}-words"] = [(w.start, w.end, w.text.strip()) for u in mine for w in u.words if w.end > w.start]
        depth = max((len(u.acts) for u in mine), default=0)
        for k in range(max(depth, 1)):
            name = f"{spk}-acts" if k == 0 else f"{spk}-acts-{k + 1}"
            tiers[name] = [(u.start, u.end, u.acts[k]) for u in mine if len(u.acts) > k]
    phases: list[list] = []
    for _, u in timed:
        if not u.phase:
            continue
        if phases and phases[-1][2] == u.phase:
            phases[-1][1] = max(phases[-1][1], u.end)
        else:
            phases.append([u.start, u.end, u.phase])
    tiers["phases"] = [tuple(p) for p in phases]
    for spk in speakers:
        bc = []
        for _, u in timed:
            if u.speaker == spk and "backchannel" in u.acts and u.intonation:
                bc.append((u.start, u.end, u.intonation))
        tiers[f"{spk}-backchannel"] = bc
        ev = [e for e in result.events if e.speaker == spk and e.end > e.start]
        tiers[f"{spk}-breaths"] = [
            (e.start, e.end, "heavy breath" if e.heavy else "breath") for e in ev if e.type == "breath"
        ]
        other = [(e.start, e.end, e.type) for e in ev if e.type != "breath"]
        if other:
            tiers[f"{spk}-events"] = other
    return {name: _no_overlap(iv) for name, iv in tiers.items()}


def _span(result: CallResult, tiers: dict[str, list[Interval]]) -> float:
    end = max((b for iv in tiers.values() for _, b, _ in iv), default=0.0)
    dur = (result.audio or {}).get("duration") or 0.0
    return round(max(end, float(dur)), 3)


def _via_tempfile(write, suffix: str) -> bytes:
    """Run a library writer that only takes a file name, and return the bytes (for an atomic write)."""
    from speechpipe.outputs.writers import scratch_dir

    # Inside --out's private staging folder when writing a call: transcript text never goes to /tmp.
    with tempfile.TemporaryDirectory(prefix="speechpipe-", dir=scratch_dir()) as d:
        p = os.path.join(d, "out" + suffix)
        write(p)
        return Path(p).read_bytes()


def to_textgrid(result: CallResult) -> bytes:
    """Praat TextGrid (long text format) of :func:`tier_plan`, via praatio."""
    from praatio import textgrid
    from praatio.utilities.constants import Interval as PInterval

    tiers = tier_plan(result)
    end = _span(result, tiers)
    tg = textgrid.Textgrid(minTimestamp=0.0, maxTimestamp=end)
    for name, iv in tiers.items():
        tg.addTier(textgrid.IntervalTier(name, [PInterval(a, b, lab) for a, b, lab in iv], 0.0, end))
    return _via_tempfile(lambda p: tg.save(p, format="long_textgrid", includeBlankSpaces=True), ".TextGrid")


def to_eaf(result: CallResult) -> bytes:
    """ELAN EAF of :func:`tier_plan`, via pympi-ling.

    Act, phase and backchannel tiers use controlled vocabularies (``acts``,
    ``phases``, ``intonation``) holding the labels of the annotation guide.
    """
    from pympi.Elan import Eaf

    tiers = tier_plan(result)
    eaf = Eaf(author="speechpipe")
    eaf.add_language(
        "eng", "http://cdb.iso.org/lg/CDB-00130975-001", "English (labels)"
    )  # ISO 639 reference id, not fetched
    vocab = {"acts": ACTS, "phases": PHASES, "intonation": INTONATIONS}
    for cv, labels in vocab.items():
        eaf.add_controlled_vocabulary(cv)
        eaf.add_cv_description(cv, "eng", f"speechpipe {cv} (annotation-guide.md)")
        for lab in labels:
            eaf.add_cv_entry(cv, f"{cv}-{lab}", [(lab, "eng", None)])
        eaf.add_linguistic_type(f"{cv}-lt", param_dict={
            "LINGUISTIC_TYPE_ID": f"{cv}-lt", "TIME_ALIGNABLE": "true", "GRAPHIC_REFERENCES": "false",
            "CONTROLLED_VOCABULARY_REF": cv})
    eaf.add_linguistic_type("text-lt")
    for name, iv in tiers.items():
        if re.search(r"-acts(-\d+)?$", name):
            lt = "acts-lt"
        elif name == "phases":
            lt = "phases-lt"
        elif name.endswith("-backchannel"):
            lt = "intonation-lt"
        else:
            lt = "text-lt"
        eaf.add_tier(name, ling=lt)
        for a, b, lab in iv:
            eaf.add_annotation(name, int(round(a * 1000)), int(round(b * 1000)), lab)
    if "default" in eaf.tiers and not eaf.tiers["default"][0] and not eaf.tiers["default"][1]:
        eaf.remove_tier("default")
    return _via_tempfile(eaf.to_file, ".eaf")


# --- writers ----------------------------------------------------------------------------

EXPORTS = {
    "rttm": (".rttm", to_rttm),
    "vtt": (".vtt", to_vtt),
    "srt": (".srt", to_srt),
    "textgrid": (".TextGrid", to_textgrid),
    "eaf": (".eaf", to_eaf),
}


def write_export(result: CallResult, fmt: str, out_dir: str | os.PathLike, stem: str | None = None) -> Path:
    """Write ``DIR/<stem><ext>`` (default stem: the call id made a safe file name) for one of :data:`EXPORTS`.

    Raises :class:`NoTimesError` without times.
    """
    from speechpipe.privacy import safe_stem

    ext, render = EXPORTS[fmt]
    data = render(result)
    path = Path(out_dir) / f"{stem or safe_stem(result.call_id)}{ext}"
    if isinstance(data, bytes):
        return atomic_write_bytes(path, data)
    return atomic_write_text(path, data)
