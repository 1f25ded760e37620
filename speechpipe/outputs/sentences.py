"""Call measures as plain sentences for the report (``summary`` → [(label, sentence)]), never raw dicts.

Examples
--------
>>> measure_sentences({"breathing": {"caller": {"breaths": 0, "heavy": 0, "per_min_talk": 0.0}}})
[('Breathing', 'Caller: no breaths detected.')]
>>> measure_sentences({"silences": 3, "silence_s": 21.5})
[('Silences', '3 silences, 21.5 s in total.')]
"""

from __future__ import annotations

from typing import Any

DONE = {"structure", "reopenings", "feelings_before_case", "feelings_latency_s", "emotion_to_empathy_s",
        "what_more_position", "talk_share", "talk_share_unit", "n_utterances", "categories", "interaction"}


def _n(k: int | float | None, one: str, many: str | None = None) -> str:
    k = 0 if k is None else k
    return f"{k:g} {one if k == 1 else (many or one + 's')}"


def _s(x: float | None, nd: int = 1) -> str:
    return "–" if x is None else f"{x:.{nd}f} s"


def _parties(d: dict, fmt) -> str:
    return "; ".join(f"{p}: {fmt(v)}" for p, v in d.items() if v is not None)


def _plain(v: Any) -> str:
    """Last resort for measures this module does not know: readable, not a raw dict."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return "; ".join(f"{str(k).replace('_', ' ')} {_plain(x)}" for k, x in v.items())
    if isinstance(v, list):
        return f"{len(v)} item{'s' if len(v) != 1 else ''}"
    return "–" if v is None else str(v)


def measure_sentences(s: dict[str, Any]) -> list[tuple[str, str]]:
    """Tagger and prosody measures other than structure, feelings-before-case, what-more and talk share."""
    out: list[tuple[str, str]] = []
    for k, v in s.items():
        if k in DONE or k.startswith("_") or k == "pitch_contour":
            continue
        if k == "holds" and isinstance(v, (int, float)):
            out.append(("Hold acts", f"{_n(v, 'hold act')} (putting on hold or thanking for waiting)."))
        elif k == "silences":
            out.append(("Silences", f"{_n(v, 'silence')}, {_s(s.get('silence_s'))} in total."))
        elif k == "overlaps":
            out.append(("Overlaps", f"{_n(v, 'overlap')} at changes of speaker, {_s(s.get('overlap_s'))} in total."))
        elif k in ("silence_s", "overlap_s"):
            continue
        elif k == "backchannel_rate_per_min" and isinstance(v, dict):
            out.append(("Backchannels", "Per minute of call: " + _parties(v, lambda x: f"{x:.1f}") + "."))
        elif k == "backchannel_rate_per_100_utt" and isinstance(v, dict):
            out.append(("Backchannels", "Per 100 turns: " + _parties(v, lambda x: f"{x:.1f}") + "."))
        elif k == "breathing" and isinstance(v, dict):
            parts = []
            for spk, b in v.items():
                b = b or {}
                if not b.get("breaths"):
                    parts.append(f"{spk.capitalize()}: no breaths detected.")
                else:
                    parts.append(f"{spk.capitalize()}: {_n(b['breaths'], 'breath')} ({b.get('heavy', 0)} heavy), "
                                 f"{b.get('per_min_talk', 0):.1f} per minute of own talk.")
            out.append(("Breathing", " ".join(parts)))
        elif k == "heavy_breathing":
            out.append(("Heavy breathing", "Heard (3 or more heavy breaths by one speaker)." if v else
                        "Not heard."))
        else:
            out.append((k.replace("_", " ").capitalize(), _plain(v)))
    return out


def interaction_sentences(m: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``summary.interaction`` as sentences (definitions in docs/interaction.md)."""
    if not m:
        return []
    out: list[tuple[str, str]] = []
    tt, ts = m.get("talk_time_s") or {}, m.get("talk_share") or {}
    if tt:
        out.append(("Talk time", "; ".join(f"{p} {_s(t, 0)} ({ts.get(p) or 0:.0%})"
                                           for p, t in tt.items() if t is not None)
                    + "." + (" Measured on the transcribed utterances (no turns from the audio)."
                             if m.get("turn_source") == "utterances" else "")))
    wpm, sps = m.get("speech_rate_wpm") or {}, m.get("syllables_per_s") or {}
    if any(v is not None for v in wpm.values()):
        out.append(("Speech rate", "; ".join(f"{p} {w:.0f} words/min ({sps.get(p) or 0:.1f} syllables/s)"
                                             for p, w in wpm.items() if w is not None) + "."))
    lat = m.get("response_latency_s") or {}
    parts = []
    for p, d in lat.items():
        if d and d.get("n"):
            parts.append(f"the {p} took the floor after a median {d['median']:+.2f} s (90 % within {d['p90']:.2f} s, "
                         f"{_n(d['n'], 'change')})")
    if parts:
        out.append(("Response latency", "; ".join(parts).capitalize() + ". Negative means starting before the other "
                    "stopped." + (" Stereo: if recorded at the counsellor's end, caller latencies include the network "
                                  "round trip." if m.get("latency_bias") else "")))
    inter = m.get("interruptions") or {}
    ip = [f"{k.replace('_on_', ' on ')}: {_n(v.get('competitive'), 'competitive interruption')}, "
          f"{_n(v.get('backchannel'), 'backchannel overlap')}, {_n(v.get('other'), 'other overlap')}"
          for k, v in inter.items() if v and any(v.values())]
    out.append(("Interruptions", "; ".join(ip).capitalize() + "." if ip else "None."))
    da = m.get("dead_air") or {}
    sil = m.get("silence_share")
    if sil is not None:
        txt = f"{sil:.0%} of the call is pauses longer than 5 s. "
        txt += (f"Dead air (> 10 s): {_n(da.get('count'), 'time')}, {_s(da.get('total_s'))} in total, the longest "
                f"{_s(da.get('longest_s'))}." if da.get("count") else "No dead air (nobody speaking for > 10 s).")
        out.append(("Silence", txt))
    if m.get("longest_monologue_s") is not None:
        who = m.get("longest_monologue_speaker")
        out.append(("Longest monologue", f"{_s(m['longest_monologue_s'])}, by the {who}."))
    h = m.get("holds") or {}
    if h:
        out.append(("Holds", "None found." if not h.get("count") else
                    f"{_n(h['count'], 'hold')}, {_s(h.get('total_s'))} in total, the longest {_s(h.get('longest_s'))}"
                    + (" (over 120 s)." if h.get("over_120s") else ".")))
    loud = {p: d for p, d in (m.get("loudness_dbfs") or {}).items() if d}
    if loud:
        out.append(("Loudness", "; ".join(
            f"{p} median {d['median']:.1f} dBFS" + (f", {d['trend_db_per_min']:+.1f} dB per minute over the call"
                                                     if d.get("trend_db_per_min") is not None else "")
            for p, d in loud.items()) + "."))
    tr = m.get("caller_trajectory") or {}
    if tr.get("change"):
        a, b = tr["first_quarter"], tr["last_quarter"]

        def q(x):
            return (f"{_n(x['emotion_acts'], 'emotion act')}, {_n(x['stress_cues'], 'turn')} with stress cues, "
                    f"{_n(x['heavy_breaths'], 'heavy breath')}")
        out.append(("Caller, start vs end", f"First quarter: {q(a)}. Last quarter: {q(b)}. "
                    + {"fewer_cues": "Fewer cues at the end.", "more_cues": "More cues at the end.",
                       "same": "As many cues at the end."}[tr["change"]] + " Cues to listen for, not a diagnosis."))
    return out
