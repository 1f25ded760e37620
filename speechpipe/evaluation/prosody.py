"""Scoring prosody against the simulated calls' references (imposed contours, inserted breaths)."""

from __future__ import annotations

from speechpipe.records import Event, Utterance


def reference_utterances(ref: dict, stereo: bool = False) -> list[Utterance]:
    """``Utterance`` records from a ``*.ref.json`` (reference times and speakers, spoken text, no words)."""
    side = {v: i for i, v in enumerate(("left", "right"))}
    ch_of = {role: side[s] for s, role in (ref.get("channels") or {}).items()} if stereo else {}
    return [
        Utterance(
            speaker=u["speaker"], start=u["start"], end=u["end"], text=u.get("spoken") or u["text"],
            channel=ch_of.get(u["speaker"]) if stereo else None,
        )
        for u in ref["utterances"]
    ]


def score_call(ref: dict, utterances: list[Utterance], events: list[Event]) -> dict:
    """Intonation and breath counts for one call.

    Intonation is scored on every reference backchannel (a missing label counts
    as wrong); a detected breath is a true positive when it overlaps a
    reference breath (each reference matched at most once).
    """
    into = [(r["intonation"], u.intonation) for r, u in zip(ref["utterances"], utterances) if r.get("intonation")]
    refs = ref.get("breaths", [])
    dets = sorted((e for e in events if e.type == "breath"), key=lambda e: e.start)
    matched, tp = set(), 0
    for e in dets:
        hit = [i for i, r in enumerate(refs) if i not in matched and e.start < r["end"] and e.end > r["start"]]
        if hit:
            matched.add(hit[0])
            tp += 1
    heavy_ok = sum(
        1
        for e in dets
        for i, r in enumerate(refs)
        if e.start < r["end"] and e.end > r["start"] and bool(r["heavy"]) == e.heavy
    )
    return {
        "intonation_n": len(into),
        "intonation_correct": sum(a == b for a, b in into),
        "intonation_pairs": into,
        "breath_ref": len(refs),
        "breath_det": len(dets),
        "breath_tp": tp,
        "breath_heavy_agree": heavy_ok,
    }


def prf(tp: int, n_det: int, n_ref: int) -> tuple[float, float, float]:
    """Precision, recall, F1 (1.0 for an empty side that is correctly empty)."""
    p = tp / n_det if n_det else 1.0
    r = tp / n_ref if n_ref else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def score_output(ref: dict, result) -> dict:
    """End to end, from a call's output (a :class:`~speechpipe.records.CallResult`): gold backchannels
    found (an output utterance of the same speaker overlapping it, tagged ``backchannel``), with
    the right intonation, and breath events against the reference breaths.
    """
    gold = [u for u in ref["utterances"] if "backchannel" in (u.get("acts") or [])]
    bcs = [u for u in result.utterances if "backchannel" in u.acts and u.start is not None and u.end is not None]
    found = right = 0
    pairs = []
    for g in gold:
        hit = [u for u in bcs if u.speaker == g["speaker"] and u.start < g["end"] and u.end > g["start"]]
        hit.sort(key=lambda u: -(min(u.end, g["end"]) - max(u.start, g["start"])))
        got = hit[0].intonation if hit else None
        found += bool(hit)
        right += bool(hit) and got == g.get("intonation")
        pairs.append((g.get("intonation"), got if hit else "missing"))
    # output backchannels with no gold backchannel of that speaker under them (precision)
    spurious = sum(1 for u in bcs
                   if not any(u.speaker == g["speaker"] and u.start < g["end"] and u.end > g["start"] for g in gold))
    b = score_call(ref, [], result.events)
    return {"backchannel_gold": len(gold), "backchannel_found": found, "backchannel_right_intonation": right,
            "backchannel_output": len(bcs), "backchannel_spurious": spurious, "intonation_pairs": pairs,
            "breath_ref": b["breath_ref"], "breath_det": b["breath_det"], "breath_tp": b["breath_tp"]}
