"""Minimal responses found in the audio: short listener turns inside or between the other party's speech.

Whisper leaves out most «mm» and many «ja» (it is not verbatim), so a backchannel
cannot wait for a word. :func:`short_listener_turns` finds the short turns of the
listening party from the turns alone and gives each one utterance spanning the
turn; the prosody stage then measures voicing and the final pitch movement on it
and decides (:func:`acoustic_verdict`) whether it is a voiced minimal response
rather than a breath, a cough or laughter.
"""

from __future__ import annotations

import numpy as np

from speechpipe.records import Turn, Utterance
from speechpipe.speakers.assign import _copy_utt
from speechpipe.vocabulary import is_backchannel_candidate

MIN_S, MAX_S = 0.15, 1.45  # a minimal response's length (≤ 1.2 s of speech, + the VAD's 0.1 s pads)
CONTEXT_S = 2.0  # the other party speaks this close before and after it
OWN_GAP_S = 0.3  # ... and the same speaker did not just before (else it is a piece of a longer turn).
# After it the other party goes on, or the same speaker does after a pause («Mm. Så …»): in the
# dev references both are minimal responses about two times in three; with nobody going on
# within 2 s it is a closing «Ja, takk» or «Ha det», never one.
MAX_WORDS = 2  # what the recogniser made of it: nothing, a filler, or at most two words it is unsure of
UNSURE_PROB = 0.5
# ... or, where the position says minimal response (the other party speaks next, or a counsellor's head),
# at most two words whatever its certainty: a recogniser confidently wrong on a «mm» (on the robotic sim
# voices «Akkurat» came out «Han», «Okei» «Båg høy!») must not veto what position and voicing show
SURE_MAX_WORDS = 2
# Position (dev-001…010 references and mono output): a listener turn head followed straight on by the
# same speaker is the counsellor's «Okei. [next question]» 24 times in 29, while a caller's turn that
# opens «Ja, …» answers a question (the annotation guide: a bare «Ja.» answering a question is no
# backchannel); end to end on dev-001/002/010 caller heads were 1 gold in 31.
HEAD_GAP_S = 0.05  # the same speaker's next turn starts this close: the short turn is a turn's head
HEAD_ROLES = ("counsellor",)
# ... unless the recogniser wrote the head as an utterance of its own made only of a minimal response
# («Ja...», then «Hva er det med?»): an answer's «ja» is written into the answer's sentence
# Mono: a short turn the diariser puts inside the other party's turn where the recogniser heard that
# party's words is a piece of their speech given the wrong label far more often than an overlapping «mm»
# (the sim references overlap 3 times in 106); a «mm» in their pause has none of their words on it.
OTHER_WORDS_MAX = 0.5  # share of the short turn the other party's words may cover
# ... counting neither minimal-response words (a «mm» written on the other party: the diariser's short
# turn says whose it is, and it is taken over) nor a word stretched over more than this: Whisper's
# word timings span a pause or speech it did not write («jeg» over 4 s), so they show no talk there
MAX_WORD_S = 1.0
# voicing: a «mm»/«ja» is voiced through most of its length; a breath or cough hardly at all,
# laughter in several short bursts
MIN_VOICED_S = 0.08
MIN_VOICED_SHARE = 0.25
MAX_VOICED_BURSTS = 3  # «ikke sant» has three
BURST_GAP_S = 0.06


def short_listener_turns(utterances: list[Utterance], turns: list[Turn]) -> list[Utterance]:
    """Utterances with each short listener turn as one utterance, marked ``prosody["short_turn"]``.

    The speaker's utterances on such a turn (none, a filler, or at most ``MAX_WORDS``
    words) are merged into one spanning the turn, so its pitch is measured on the
    turn itself.

    Examples
    --------
    >>> ts = [Turn("caller", 0, 5), Turn("counsellor", 2.0, 2.4), Turn("caller", 5.2, 9)]
    >>> us = [Utterance("caller", 0, 5, "jeg lurer på noe"), Utterance("counsellor", 2.0, 2.4, "", transcribed=False)]
    >>> out = short_listener_turns(us, ts)
    >>> [(u.speaker, u.start, u.end, u.prosody.get("short_turn", {}).get("position")) for u in out]
    [('caller', 0, 5, None), ('counsellor', 2.0, 2.4, 'inside')]
    """
    by_spk: dict[str, list[Turn]] = {}
    for t in turns:
        by_spk.setdefault(t.speaker, []).append(t)
    taken: set[int] = set()
    merged: list[Utterance] = []
    extra: list[Utterance] = []
    for t in turns:
        dur = t.end - t.start
        if not (MIN_S <= dur <= MAX_S):
            continue
        others = [o for spk, ts in by_spk.items() if spk != t.speaker for o in ts]
        before = any(o.start < t.start and o.end > t.start - CONTEXT_S for o in others)
        after = any(o.end > t.end and o.start < t.end + CONTEXT_S for o in others)
        goes_on = any(o is not t and o.start >= t.end and o.start < t.end + CONTEXT_S for o in by_spk[t.speaker])
        if not before or not (after or goes_on):
            continue
        if any(o is not t and o.start < t.start and o.end > t.start - OWN_GAP_S for o in by_spk[t.speaker]):
            continue
        near = [i for i, u in enumerate(utterances) if i not in taken
                and u.start is not None and u.end is not None and u.start < t.end and u.end > t.start]
        # what the recogniser wrote on its own as a minimal response of this speaker, on this turn
        # (Whisper's times lag or lead the turn's by a few hundred ms)
        said = [i for i in near if utterances[i].speaker == t.speaker and is_backchannel_candidate(utterances[i].text)
                and utterances[i].end - utterances[i].start <= MAX_S]
        head = any(o is not t and t.end - 0.01 <= o.start < t.end + HEAD_GAP_S for o in by_spk[t.speaker])
        if head and not after_first(others, by_spk[t.speaker], t) and t.speaker not in HEAD_ROLES and not said:
            continue
        inside = any(o.start <= t.start and o.end >= t.end for o in others)
        if t.channel is None and inside and _covered(other_words(utterances, t), t) > OTHER_WORDS_MAX:
            continue
        timed = [i for i in near if utterances[i].speaker == t.speaker]
        mine = [i for i in timed if _inside(utterances[i], t) or i in said]
        if t.channel is None:  # mono: a minimal response written on the other party, lying on this turn, is this one
            mine += [i for i in near if utterances[i].speaker != t.speaker and _inside(utterances[i], t)
                     and is_backchannel_candidate(utterances[i].text)]
        # an utterance running through the turn («Ja, jeg har …» heard as one): its words on the turn go
        # with it, the rest stays an utterance of its own (utterances split at turn changes)
        through = {i: _split_words(utterances[i], t) for i in timed if i not in mine and utterances[i].words}
        words = [w for i in mine for w in utterances[i].words] + [w for i in through for w in through[i][0]]
        words.sort(key=lambda w: w.start)
        texts = [utterances[i].text for i in mine if utterances[i].text] + [" ".join(w.text for w in ws)
                                                                           for ws, _ in through.values() if ws]
        text = " ".join(texts).strip()
        lexical = bool(text) and is_backchannel_candidate(text)
        # words the recogniser is sure of and that are no minimal response: an answer, a greeting
        unsure = bool(words) and float(np.mean([w.prob for w in words])) < UNSURE_PROB
        n_words = len(text.split())
        if text and not lexical and not (n_words <= MAX_WORDS and unsure) and not (n_words <= SURE_MAX_WORDS):
            continue
        taken.update(mine)
        for i, (_, rest) in through.items():
            if len(rest) != len(utterances[i].words):
                taken.add(i)
                if rest:
                    src = utterances[i]
                    extra.append(_copy_utt(src, rest, " ".join(w.text for w in rest), src.cluster,
                                           rest[0].start, rest[-1].end))
        first = next((utterances[i] for i in mine if utterances[i].speaker == t.speaker), None)
        u = Utterance(t.speaker, t.start, t.end, text, words=words,
                      channel=first.channel if first else t.channel, cluster=first.cluster if first else t.cluster,
                      transcribed=bool(words) or any(utterances[i].transcribed for i in mine))
        u.prosody["short_turn"] = {"turn_s": round(dur, 3), "position": "inside" if inside else "between"}
        moved = [utterances[i].prosody["speaker_from_pitch"] for i in mine
                 if "speaker_from_pitch" in utterances[i].prosody]
        if moved:  # speechpipe.prosody.register gave it to this speaker: keep the note
            u.prosody["speaker_from_pitch"] = moved[0]
        merged.append(u)
    out = [u for i, u in enumerate(utterances) if i not in taken] + merged + extra
    out.sort(key=lambda v: ((v.start or 0.0), (v.end or 0.0)))
    return out


def other_words(utterances: list[Utterance], t: Turn) -> list[tuple[float, float]]:
    """Word spans of the other speakers' utterances near the turn that show them talking there.

    Left out: minimal-response words (whose they are is what the turn says) and words stretched
    over more than ``MAX_WORD_S``.

    Examples
    --------
    >>> from speechpipe.records import Word
    >>> us = [Utterance("counsellor", 0, 5, "jeg vet", words=[Word("jeg", 0.0, 3.9), Word("vet", 3.9, 4.2)]),
    ...       Utterance("counsellor", 5, 6, "mm", words=[Word("mm", 5.1, 5.4)])]
    >>> other_words(us, Turn("caller", 3.0, 5.5))
    [(3.9, 4.2)]
    """
    return [(w.start, w.end) for u in utterances if u.speaker != t.speaker and u.start is not None
            and u.start < t.end and u.end > t.start for w in u.words
            if w.start is not None and w.end is not None and w.end - w.start <= MAX_WORD_S
            and not is_backchannel_candidate(w.text)]


def _covered(spans: list[tuple[float, float]], t: Turn) -> float:
    """Share of the turn the spans cover (spans may overlap each other)."""
    iv = sorted((max(a, t.start), min(b, t.end)) for a, b in spans if b > t.start and a < t.end)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in iv:
        if cur_b is None or a > cur_b:
            total += (cur_b - cur_a) if cur_b is not None else 0.0
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    total += (cur_b - cur_a) if cur_b is not None else 0.0
    return total / max(t.end - t.start, 1e-3)


def after_first(others: list[Turn], own: list[Turn], t: Turn) -> bool:
    """The other party speaks again before the same speaker goes on."""
    nxt_other = min((o.start for o in others if o.start >= t.end - 0.01), default=np.inf)
    nxt_own = min((o.start for o in own if o is not t and o.start >= t.end - 0.01), default=np.inf)
    return nxt_other < nxt_own


def _split_words(u: Utterance, t: Turn) -> tuple[list, list]:
    """``(words whose middle lies on the turn, the others)``."""
    on = [w for w in u.words if t.start <= 0.5 * (w.start + w.end) <= t.end]
    return on, [w for w in u.words if not t.start <= 0.5 * (w.start + w.end) <= t.end]


def _inside(u: Utterance, t: Turn) -> bool:
    """Most of the utterance lies on the turn."""
    ov = min(u.end, t.end) - max(u.start, t.start)
    return ov > 0.5 * max(u.end - u.start, 1e-3)


def acoustic_verdict(times: np.ndarray, f0: np.ndarray, start: float, end: float) -> tuple[bool, dict]:
    """Is this short turn a voiced minimal response? ``(yes, measurements)`` from the pitch track.

    Examples
    --------
    >>> t = np.arange(0, 0.4, 0.01)
    >>> acoustic_verdict(t, np.full(40, 120.0), 0, 0.4)[0], acoustic_verdict(t, np.full(40, np.nan), 0, 0.4)[0]
    (True, False)
    >>> laugh = np.where((t * 100).astype(int) % 10 < 4, 200.0, np.nan)  # four voiced bursts
    >>> acoustic_verdict(t, laugh, 0, 0.4)
    (False, {'voiced_s': 0.16, 'voiced_share': 0.4, 'voiced_bursts': 4, 'reason': 'voiced in bursts (laughter?)'})
    """
    v = np.isfinite(f0)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.01
    voiced_s = float(v.sum() * step)
    share = voiced_s / max(end - start, 1e-3)
    tv = times[v]
    bursts = int(1 + (np.diff(tv) > BURST_GAP_S).sum()) if len(tv) else 0
    m = {"voiced_s": round(voiced_s, 3), "voiced_share": round(min(share, 1.0), 2), "voiced_bursts": bursts}
    if voiced_s < MIN_VOICED_S or share < MIN_VOICED_SHARE:
        return False, {**m, "reason": "hardly voiced (breath, cough or noise?)"}
    if bursts > MAX_VOICED_BURSTS:
        return False, {**m, "reason": "voiced in bursts (laughter?)"}
    return True, m
