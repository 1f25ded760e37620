"""``summary.interaction``: turn-taking, silence, holds, speech rate, loudness and the caller's trajectory.

Pure functions of turns (:class:`~speechpipe.records.Turn`), tagged utterances, events
and optionally the samples; every field is defined in ``docs/interaction.md``.

Examples
--------
>>> from speechpipe.records import Turn, Utterance
>>> utts = [Utterance("counsellor", 0.0, 2.0, "Hei, du snakker med Kari."),
...         Utterance("caller", 2.5, 6.0, "Hei, jeg lurer på meldekortet mitt."),
...         Utterance("counsellor", 6.4, 8.0, "Det skal jeg se på.")]
>>> m = interaction_summary(fallback_turns_from_utterances(utts), utts, duration=8.0)
>>> m["talk_share"], m["response_latency_s"]["counsellor"]
({'counsellor': 0.507, 'caller': 0.493}, {'median': 0.4, 'p90': 0.4, 'n': 1})
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from speechpipe.analytics.floor import (
    analyse_floor,
    call_turns,
    fallback_turns_from_utterances,  # noqa: F401  (re-exported for callers and the doctest)
    gaps,
    union,
)
from speechpipe.analytics.loudness import quarter_medians, span_dbfs, trend_db_per_min
from speechpipe.records import Event, Turn, Utterance
from speechpipe.vocabulary import SPEAKERS, count_syllables, normalise_words

SILENCE_S = 5.0  # a pause longer than this counts towards silence_share (as CCAI Insights)
DEAD_AIR_S = 10.0  # dead air: nobody speaks for longer than this (as Observe.AI)
HOLD_MIN_S = 5.0  # a counsellor silence at least this long next to a `hold` act is a hold
HOLD_NEAR_S = 15.0  # … when the hold act ends this close before it, or starts this close after it
HOLD_OTHER_SHARE = 0.2  # … and the caller talks for at most this share of it
LONG_HOLD_S = 120.0
STRESS_Z = 1.0  # a caller turn with pitch, loudness or rate this many SDs above the caller's own mean
STRESS_KEYS = ("f0_z", "loudness_z", "rate_z")


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _parties(turns: Sequence[Turn], utterances: Sequence[Utterance]) -> list[str]:
    seen = {t.speaker for t in turns} | {u.speaker for u in utterances}
    return [s for s in SPEAKERS if s in seen] + sorted(seen - set(SPEAKERS))


def stress_cue(u: Utterance) -> bool:
    """Raised pitch, loudness or speech rate against the speaker's own turns in the call (prosody z-scores)."""
    p = u.prosody or {}
    return any(isinstance(p.get(k), (int, float)) and p[k] >= STRESS_Z for k in STRESS_KEYS)


def latency_stats(offsets: Sequence[float]) -> dict[str, Any]:
    """``{"median", "p90", "n"}`` of floor-transfer offsets (seconds)."""
    if not offsets:
        return {"median": None, "p90": None, "n": 0}
    a = np.asarray(offsets, dtype=np.float64)
    return {"median": _r(np.median(a)), "p90": _r(np.percentile(a, 90)), "n": len(a)}


def holds_from(utterances: Sequence[Utterance], turns: Sequence[Turn], end: float) -> list[tuple[float, float]]:
    """Holds: counsellor silences ≥ ``HOLD_MIN_S`` that a `hold` act announces or closes.

    The silence must be mostly quiet on the other side too (the caller talks for at most
    ``HOLD_OTHER_SHARE`` of it, a «hallo?» at most). A hold act within ``HOLD_NEAR_S``
    before the silence announces it («et øyeblikk»), one within ``HOLD_NEAR_S`` after it
    closes it («takk for at du ventet»); a closing act never announces the next silence.
    """
    acts = sorted((u.start, u.end) for u in utterances
                  if "hold" in u.acts and u.start is not None and u.end is not None)
    if not acts:
        return []
    spans = union([(t.start, t.end) for t in turns if t.speaker == "counsellor"])
    others = union([(t.start, t.end) for t in turns if t.speaker != "counsellor"])
    silent = gaps(spans) + ([(spans[-1][1], end)] if spans and end > spans[-1][1] else [])
    out: list[tuple[float, float]] = []
    closers: set[tuple[float, float]] = set()
    for a, b in silent:
        if b - a < HOLD_MIN_S:
            continue
        talk = sum(max(0.0, min(b, y) - max(a, x)) for x, y in others)
        if talk > HOLD_OTHER_SHARE * (b - a):
            continue
        announced = any(-0.5 <= a - ue <= HOLD_NEAR_S and (us, ue) not in closers for us, ue in acts)
        closing = [(us, ue) for us, ue in acts if -0.5 <= us - b <= HOLD_NEAR_S]
        if announced or closing:
            out.append((a, b))
            closers.update(closing)
    return out


def caller_trajectory(utterances: Sequence[Utterance], events: Sequence[Event], duration: float) -> dict[str, Any]:
    """Caller emotion acts, stress-cue turns and heavy breaths in the first vs the last quarter of the call."""
    timed = duration > 0 and all(u.start is not None for u in utterances)
    n = len(utterances)

    def quarter(u_idx: int, u: Utterance) -> int:
        pos = (u.start / duration) if timed else (u_idx / max(n, 1))
        return min(3, int(pos * 4))

    out: dict[str, Any] = {}
    for name, q in (("first_quarter", 0), ("last_quarter", 3)):
        cu = [u for i, u in enumerate(utterances) if u.speaker == "caller" and quarter(i, u) == q]
        heavy = 0
        if timed:
            heavy = sum(1 for e in events if e.type == "breath" and e.heavy and e.speaker == "caller"
                        and min(3, int(e.start / duration * 4)) == q)
        out[name] = {"caller_turns": len(cu), "emotion_acts": sum("emotion" in u.acts for u in cu),
                     "stress_cues": sum(stress_cue(u) for u in cu), "heavy_breaths": heavy}
    a = sum(v for k, v in out["first_quarter"].items() if k != "caller_turns")
    b = sum(v for k, v in out["last_quarter"].items() if k != "caller_turns")
    out["change"] = None if not (out["first_quarter"]["caller_turns"] or out["last_quarter"]["caller_turns"]) else (
        "fewer_cues" if b < a else "more_cues" if b > a else "same")
    return out


def interaction_summary(
    turns: Sequence[Turn] | None,
    utterances: Sequence[Utterance],
    events: Sequence[Event] = (),
    duration: float | None = None,
    samples: np.ndarray | None = None,
    sample_rate: int = 16000,
    per_turn: bool = True,
) -> dict[str, Any]:
    """The ``summary.interaction`` dict (see ``docs/interaction.md``).

    ``turns``: the call's turns; when empty they are derived from the timed utterances
    (:func:`~speechpipe.analytics.floor.fallback_turns_from_utterances`) and
    ``turn_source`` says so. ``samples`` (channels × n) gives per-turn loudness.
    """
    ts, source = call_turns(turns, utterances)
    parties = _parties(ts, utterances)
    last_end = max((t.end for t in ts), default=0.0)
    dur = float(duration) if duration else last_end
    fl = analyse_floor(ts)

    talk = {p: sum(b - a for a, b in union([(t.start, t.end) for t in ts if t.speaker == p])) for p in parties}
    total_talk = sum(talk.values())
    out: dict[str, Any] = {"turn_source": source}
    out["talk_time_s"] = {p: _r(v) for p, v in talk.items()}
    out["talk_share"] = {p: _r(v / total_talk) if total_talk > 0 else None for p, v in talk.items()}

    # speech rate over the words' utterances (ASR words, or the text when there are no word times)
    words: dict[str, int] = {}
    sylls: dict[str, int] = {}
    secs: dict[str, float] = {}
    for u in utterances:
        if u.start is None or u.end is None or u.end <= u.start:
            continue
        nw = len(u.words) if u.words else len(normalise_words(u.text or "").split())
        if nw == 0:
            continue
        words[u.speaker] = words.get(u.speaker, 0) + nw
        sylls[u.speaker] = sylls.get(u.speaker, 0) + count_syllables(u.text or "")
        secs[u.speaker] = secs.get(u.speaker, 0.0) + (u.end - u.start)
    out["speech_rate_wpm"] = {p: _r(60.0 * words[p] / secs[p], 1) if secs.get(p) else None for p in parties}
    out["syllables_per_s"] = {p: _r(sylls[p] / secs[p], 2) if secs.get(p) else None for p in parties}

    offsets: dict[str, list[float]] = {p: [] for p in parties}
    for tr in fl.transitions:
        if tr.speaker in offsets:
            offsets[tr.speaker].append(tr.offset)
    out["response_latency_s"] = {p: latency_stats(offsets[p]) for p in parties}

    inter: dict[str, dict[str, int]] = {}
    for a in parties:
        for b in parties:
            if a != b:
                inter[f"{a}_on_{b}"] = {"backchannel": 0, "competitive": 0, "other": 0}
    for o in fl.overlaps:
        key = f"{o.by}_on_{o.on}"
        if key in inter:
            inter[key][o.kind] += 1
    out["interruptions"] = inter

    silent = [b - a for a, b in gaps([(t.start, t.end) for t in ts])]
    out["silence_share"] = _r(sum(g for g in silent if g > SILENCE_S) / dur) if dur > 0 else None
    dead = [g for g in silent if g > DEAD_AIR_S]
    out["dead_air"] = {"count": len(dead), "total_s": _r(sum(dead)), "longest_s": _r(max(dead, default=0.0))}
    longest = max(fl.floor, key=lambda f: f.end - f.start, default=None)
    out["longest_monologue_s"] = _r(longest.end - longest.start) if longest else None
    out["longest_monologue_speaker"] = longest.speaker if longest else None

    holds = holds_from(utterances, ts, max(dur, last_end))
    hl = [b - a for a, b in holds]
    out["holds"] = {"count": len(hl), "total_s": _r(sum(hl)), "longest_s": _r(max(hl, default=0.0)),
                    "over_120s": any(h > LONG_HOLD_S for h in hl)}

    rows = _per_turn(fl, utterances, samples, sample_rate)
    loud: dict[str, Any] = {}
    for p in parties:
        pts = [(0.5 * (r["start"] + r["end"]), r["loudness_dbfs"]) for r in rows
               if r["speaker"] == p and r["loudness_dbfs"] is not None]
        if not pts:
            loud[p] = None
            continue
        t, y = [a for a, _ in pts], [b for _, b in pts]
        fq, lq = quarter_medians(t, y, dur)
        loud[p] = {"median": _r(np.median(y), 2), "trend_db_per_min": trend_db_per_min(t, y),
                   "first_quarter": fq, "last_quarter": lq}
    out["loudness_dbfs"] = loud
    out["caller_trajectory"] = caller_trajectory(utterances, events, dur)
    if samples is not None and samples.shape[0] == 2:
        out["latency_bias"] = _latency_bias(ts, samples, sample_rate)
    if per_turn:
        out["per_turn"] = rows
    return out


def _latency_bias(ts: Sequence[Turn], samples: np.ndarray, sr: int) -> dict[str, Any]:
    """Stereo: the flag, and the counsellor's echo delay in the caller channel when there is one."""
    from speechpipe.analytics.delay import echo_delay

    coun = [t for t in ts if t.speaker == "counsellor"]
    chans = [t.channel for t in coun if t.channel is not None]
    ch = max(set(chans), key=chans.count) if chans else 0
    others = union([(t.start, t.end) for t in ts if t.speaker != "counsellor"])
    only = []  # counsellor speech with nobody else talking
    for a, b in union([(t.start, t.end) for t in coun]):
        cur = a
        for x, y in others:
            if y <= cur or x >= b:
                continue
            if x > cur:
                only.append((cur, x))
            cur = max(cur, y)
        if cur < b:
            only.append((cur, b))
    est = echo_delay(samples, sr, only, counsellor_channel=ch) if ch in (0, 1) else None
    return {"stereo": True, "echo_delay_s": est["delay_s"] if est else None,
            "echo_correlation": est["correlation"] if est else None,
            "note": "if recorded at the counsellor's end, caller latencies include the network round trip "
                    "(about the echo delay, when one is measured)"}


def _per_turn(fl, utterances: Sequence[Utterance], samples: np.ndarray | None, sr: int) -> list[dict[str, Any]]:
    """Per floor turn: speaker, times, words, words/min, syllables/s, loudness (dBFS on the speaker's channel)."""
    timed = [u for u in utterances if u.start is not None and u.end is not None]
    rows = []
    k = 0
    timed.sort(key=lambda u: (u.start, u.end))
    for f in fl.floor:
        nw = ns = 0
        for u in timed[k:]:
            if u.start > f.end:
                break
            mid = 0.5 * (u.start + u.end)
            if u.speaker == f.speaker and f.start <= mid <= f.end:
                nw += len(u.words) if u.words else len(normalise_words(u.text or "").split())
                ns += count_syllables(u.text or "")
        while k < len(timed) and timed[k].end < f.start - 60.0:  # utterances far behind can be skipped
            k += 1
        spans = [(fl.turns[i].start, fl.turns[i].end) for i in f.parts]
        speech = sum(b - a for a, b in union(spans))
        chans = [fl.turns[i].channel for i in f.parts if fl.turns[i].channel is not None]
        ch = max(set(chans), key=chans.count) if chans else 0
        db = span_dbfs(samples, sr, ch, spans) if samples is not None else None
        rows.append({"speaker": f.speaker, "start": _r(f.start), "end": _r(f.end), "words": nw,
                     "wpm": _r(60.0 * nw / speech, 1) if nw and speech > 0 else None,
                     "syllables_per_s": _r(ns / speech, 2) if ns and speech > 0 else None,
                     "loudness_dbfs": db})
    return rows
