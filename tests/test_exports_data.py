"""Build CallResults from the shared gold data (used by the output tests).

Holds no tests itself; imported by the export, report and redaction tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from speechpipe.records import CallResult, Event, Utterance, Word


def _words(text: str, start: float, end: float) -> list[Word]:
    """Spread the spoken words evenly over the utterance (the gold has no word times)."""
    toks = text.split()
    if not toks:
        return []
    step = (end - start) / len(toks)
    return [Word(t, round(start + i * step, 3), round(start + (i + 1) * step, 3), 0.9) for i, t in enumerate(toks)]


def _talk_share(utts: list[Utterance]) -> dict[str, float]:
    tot: dict[str, float] = {}
    for u in utts:
        tot[u.speaker] = tot.get(u.speaker, 0.0) + (u.end - u.start)
    s = sum(tot.values()) or 1.0
    return {k: round(v / s, 3) for k, v in tot.items()}


def timed_call(ref_json: Path) -> CallResult:
    """A full CallResult (times, words, acts, phases, intonation, breaths) from a ``*.ref.json``."""
    d = json.loads(Path(ref_json).read_text(encoding="utf-8"))
    utts = []
    for u in d["utterances"]:
        intonation = u.get("intonation")
        utts.append(
            Utterance(
                speaker=u["speaker"],
                start=u["start"],
                end=u["end"],
                text=u["spoken"],
                words=_words(u["spoken"], u["start"], u["end"]),
                acts=list(u["acts"]),
                phase=u["phase"],
                intonation=intonation,
                pitch_change_st={"rise": 3.1, "fall": -2.8, "level": 0.2}.get(intonation),
                prosody={"f0_median_hz": 180.0 if u["speaker"] == "caller" else 210.0, "loudness_z": 0.1},
                evidence={a: u["spoken"][:20] for a in u["acts"]},
            )
        )
    events = [Event("breath", "caller", b["start"], b["end"], bool(b["heavy"])) for b in d.get("breaths", [])]
    first_wm = next((u.start for u in utts if "what_more" in u.acts), None)
    duration = max(u.end for u in utts) + 1.0
    summary = {
        "structure": d["structure"],
        "reopenings": d["reopenings"],
        "feelings_before_case": True,
        "what_more_position": None if first_wm is None else round(first_wm / duration, 3),
        "talk_share": _talk_share(utts),
    }
    return CallResult(
        call_id=d["call_id"],
        utterances=utts,
        audio={
            "path": f"{d['call_id']}.mono.wav",
            "duration": duration,
            "sample_rate": d.get("sample_rate", 8000),
            "channels": 1,
        },
        models={"asr": "gold", "tagger": "gold"},
        events=events,
        summary=summary,
    )


def text_call(gold_json: Path) -> CallResult:
    """A text-only CallResult (no times, no audio), as ``speechpipe tag`` writes."""
    d = json.loads(Path(gold_json).read_text(encoding="utf-8"))
    utts = [
        Utterance(speaker=u["speaker"], start=None, end=None, text=u["text"], acts=list(u.get("acts") or []),
                  phase=u.get("phase"), intonation=u.get("intonation"))
        for u in d["utterances"]
    ]
    return CallResult(call_id=d["call_id"], utterances=utts, audio=None, models={"tagger": "gold"},
                      summary={"structure": d["structure"], "reopenings": d["reopenings"]})
