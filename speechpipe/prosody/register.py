"""Whose short stretch is it? Mono: a «ja» voiced in the other party's pitch register is theirs.

The diariser (segmentation-3.0 + CAM++) needs a second or more of a voice to tell
speakers apart, so a listener's «ja» said in the talker's pause is often given to
the talker (dev-004: the caller's «Ja.» at 115.7 s inside the counsellor's turn).
Pitch tells them apart where embeddings cannot: when the two parties' registers lie
far apart (typically a man and a woman), a short stretch with no words or only a
minimal response, voiced near the other party's median and far from its own
speaker's, is the other party's. With close registers nothing changes.
"""

from __future__ import annotations

import numpy as np

from speechpipe.records import AudioData, Turn, Utterance
from speechpipe.vocabulary import is_backchannel_candidate

APART_ST = 6.0  # the parties' median pitch at least this far apart (an octave is 12)
NEAR_ST = 3.0  # the stretch's median within this of the other party's
MIN_VOICED = 8  # voiced 10 ms frames on the stretch
MIN_S, MAX_S = 0.15, 1.2  # a minimal response's length
PROBE_S, PROBE_TURNS = 1.5, 12  # a speaker's register: the median over up to 12 of its utterances longer than 1.5 s
FLOOR, CEILING = 60.0, 400.0
SR = 8000


def median_st(x: np.ndarray, sr: int, start: float, end: float, tracker) -> tuple[float | None, int]:
    """``(median pitch in semitones re 100 Hz, voiced frames)`` of ``x[start:end]`` (``None`` when unvoiced)."""
    import soxr

    from speechpipe.prosody.pitch import hz_to_st

    seg = x[max(0, int(start * sr)) : int(end * sr)]
    if len(seg) < int(3.2 * sr / FLOOR):
        return None, 0
    _, f0 = tracker.track(soxr.resample(seg, sr, SR).astype(np.float32), SR, FLOOR, CEILING)
    v = f0[np.isfinite(f0)]
    return (float(np.median(hz_to_st(v))), len(v)) if len(v) else (None, 0)


def registers(audio: AudioData, utterances: list[Utterance], tracker) -> dict[str, float]:
    """Each speaker's median pitch (semitones re 100 Hz) over its longer utterances."""
    x = audio.mono
    out: dict[str, float] = {}
    for spk in sorted({u.speaker for u in utterances}):
        long = [u for u in utterances if u.speaker == spk and u.start is not None and u.end - u.start > PROBE_S]
        pick = [long[i] for i in np.unique(np.linspace(0, len(long) - 1, min(PROBE_TURNS, len(long))).astype(int))]
        meds = [m for m, _ in (median_st(x, audio.sample_rate, u.start, u.end, tracker) for u in pick) if m is not None]
        if meds:
            out[spk] = float(np.median(meds))
    return out


def relabel_by_register(
    audio: AudioData, utterances: list[Utterance], turns: list[Turn], tracker=None
) -> tuple[list[Utterance], list[Turn]]:
    """Mono: give a short wordless or minimal-response stretch voiced in the other party's register to them.

    The utterance changes speaker (and cluster), keeps a note in
    ``prosody["speaker_from_pitch"]``, and gets a turn of its own, so the
    backchannel finder sees the listener's short turn. Stereo is left alone
    (the channel says who spoke).

    Examples
    --------
    >>> a = AudioData("x.wav", np.zeros((1, 16000), np.float32), 16000)  # silence: no register, nothing moves
    >>> us = [Utterance("counsellor", 0.0, 0.5, "")]
    >>> relabel_by_register(a, us, [Turn("counsellor", 0.0, 0.5)])[0][0].speaker
    'counsellor'
    """
    if audio.channels != 1 or not utterances:
        return utterances, turns
    if tracker is None:
        from speechpipe.prosody.pitch import PraatACTracker

        tracker = PraatACTracker()
    reg = registers(audio, utterances, tracker)
    if len(reg) < 2:
        return utterances, turns
    clusters = {u.speaker: u.cluster for u in utterances if u.cluster is not None}
    added: list[Turn] = []
    for u in utterances:
        if u.start is None or not (MIN_S <= u.end - u.start <= MAX_S) or u.speaker not in reg:
            continue
        if u.text and not is_backchannel_candidate(u.text):
            continue
        m, n = median_st(audio.mono, audio.sample_rate, u.start, u.end, tracker)
        if m is None or n < MIN_VOICED:
            continue
        other = min((s for s in reg if s != u.speaker), key=lambda s: abs(reg[s] - m))
        if abs(m - reg[other]) > NEAR_ST or abs(m - reg[u.speaker]) < APART_ST:
            continue
        # the register names one party only when every other voice (its own speaker's, a third's) is far from it
        if any(abs(reg[s] - reg[other]) < APART_ST for s in reg if s != other):
            continue
        if any(t.speaker == other and t.start < u.end and t.end > u.start for t in turns + added):
            continue  # the other party already has a turn there: the backchannel finder decides
        u.prosody["speaker_from_pitch"] = {"was": u.speaker, "f0_median_st": round(m, 2),
                                           "registers_st": {k: round(v, 2) for k, v in reg.items()}}
        u.speaker, u.cluster = other, clusters.get(other, u.cluster)
        added.append(Turn(other, u.start, u.end, cluster=u.cluster))
    if not added:
        return utterances, turns
    return utterances, sorted(turns + added, key=lambda t: (t.start, t.end))
