"""ASR words onto speakers: time lookup in an Annotation, utterances split at speaker changes, roles."""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment

from speechpipe.audio.vad import FRAME
from speechpipe.records import SAMPLE_RATE, Utterance, Word
from speechpipe.speakers.base import channel_of, label_of
from speechpipe.speakers.roles import assign_roles


def _regions_to_annotation(regions, label, ann: Annotation | None = None) -> Annotation:
    ann = ann if ann is not None else Annotation()
    for s, e in regions:
        if e > s:
            ann[Segment(s, e), len(ann)] = label
    return ann


def label_at(diarization: Annotation, start: float, end: float) -> str | None:
    """Label with the most overlap with ``[start, end]`` (nearest one within 1 s if none).

    Examples
    --------
    >>> ann = Annotation(); ann[Segment(0, 2)] = "A"; ann[Segment(2, 5)] = "B"
    >>> label_at(ann, 1.5, 2.8), label_at(ann, 5.5, 5.6), label_at(ann, 9, 9.5)
    ('B', 'B', None)
    """
    return LabelIndex(diarization)(start, end)


class LabelIndex:
    """:func:`label_at` for many queries: segments sorted once, each lookup a binary search.

    ``Annotation.crop`` scans the whole annotation, so labelling every word of a
    2-hour call that way grew quadratically (diarisation 77 s for 60 min, 205 s
    for 120 min); this keeps it linear and gives the same answers (on overlapping
    segments that tie, the earlier-starting one wins).
    """

    def __init__(self, diarization: Annotation):
        tracks = sorted((s.start, s.end, lab) for s, _, lab in diarization.itertracks(yield_label=True))
        self.starts = np.array([t[0] for t in tracks], float)
        self.ends = np.array([t[1] for t in tracks], float)
        self.labels = [t[2] for t in tracks]
        self.longest = float((self.ends - self.starts).max()) if tracks else 0.0

    def _span(self, a: float, b: float) -> tuple[int, int]:
        """Index range of the segments that may overlap ``(a, b)``."""
        lo = int(np.searchsorted(self.starts, a - self.longest, "left"))
        hi = int(np.searchsorted(self.starts, b, "left"))
        return lo, hi

    def __call__(self, start: float, end: float) -> str | None:
        end = max(end, start + 1e-3)
        lo, hi = self._span(start, end)
        if hi > lo:
            ov = np.minimum(self.ends[lo:hi], end) - np.maximum(self.starts[lo:hi], start)
            i = int(np.argmax(ov))  # the first of equal overlaps, as in time order
            if ov[i] > 0:
                return self.labels[lo + i]
        lo, hi = self._span(start - 1.0, end + 1.0)
        near = [(min(abs(self.ends[j] - start), abs(self.starts[j] - end)), self.labels[j])
                for j in range(lo, hi) if self.ends[j] > start - 1.0]
        return min(near)[1] if near else None


def split_by_speaker(utterances: list[Utterance], diarization: Annotation) -> list[Utterance]:
    """Exclusive diarisation of words: each word goes to the label it overlaps most;
    an utterance is split wherever the label changes. Sets ``u.cluster``.

    Examples
    --------
    >>> ann = Annotation(); ann[Segment(0, 1)] = "A"; ann[Segment(1, 3)] = "B"
    >>> u = Utterance("unknown", 0.1, 2.5, "ja hei der",
    ...               [Word("ja", .1, .4), Word("hei", 1.2, 1.6), Word("der", 2, 2.5)])
    >>> [(v.cluster, v.text, v.start, v.end) for v in split_by_speaker([u], ann)]
    [('A', 'ja', 0.1, 0.4), ('B', 'hei der', 1.2, 2.5)]
    """
    out: list[Utterance] = []
    label_at = LabelIndex(diarization)
    for u in utterances:
        if not u.words:
            lab = label_at(u.start or 0.0, u.end or 0.0)
            out.append(_copy_utt(u, u.words, u.text, lab))
            continue
        labs = [label_at(w.start, w.end) for w in u.words]
        # a word in silence (no label) joins its neighbour's speaker
        for i in range(len(labs)):
            if labs[i] is None:
                labs[i] = next((x for x in labs[i::-1] if x is not None), None) or next(
                    (x for x in labs[i:] if x is not None), None)
        groups: list[tuple[str | None, list[Word]]] = []
        for w, lab in zip(u.words, labs):
            if groups and groups[-1][0] == lab:
                groups[-1][1].append(w)
            else:
                groups.append((lab, [w]))
        if len(groups) == 1:
            out.append(_copy_utt(u, u.words, u.text, groups[0][0]))
            continue
        for lab, ws in groups:
            out.append(_copy_utt(u, ws, " ".join(w.text for w in ws), lab, ws[0].start, ws[-1].end))
    out.sort(key=lambda v: ((v.start or 0.0), (v.end or 0.0)))
    return out


def _copy_utt(u: Utterance, words, text, cluster, start=None, end=None) -> Utterance:
    return Utterance(
        speaker=u.speaker, start=u.start if start is None else start, end=u.end if end is None else end,
        text=text, words=list(words), acts=list(u.acts), phase=u.phase, intonation=u.intonation,
        pitch_change_st=u.pitch_change_st, prosody=dict(u.prosody), evidence=dict(u.evidence),
        channel=u.channel, cluster=cluster, transcribed=u.transcribed,
    )


def _turns(utterances: list[Utterance], key) -> list[tuple[str, float, float, str]]:
    return [(key(u), u.start or 0.0, u.end or 0.0, u.text) for u in utterances if key(u) is not None]


def assign_mono(ann: Annotation, utterances: list[Utterance], method: str, words_on: Annotation | None = None):
    """Words onto speakers (``words_on``: an exclusive diarisation, else ``ann``), labels onto roles (``ann``)."""
    utts = split_by_speaker(utterances, words_on if words_on is not None else ann)
    decision = assign_roles(ann, _turns(utts, lambda u: u.cluster))
    for u in utts:
        u.speaker = decision.roles.get(u.cluster, "other") if u.cluster is not None else "other"
    roles = {"method": method, "counsellor": decision.counsellor, "confidence": decision.confidence,
             "clusters": decision.roles, "evidence": decision.evidence}
    return utts, roles


# --- words on turns (the pipeline's one place for this; every diariser only says who spoke when) ---

REAL_TURN_S = 1.2  # another party's turn at least this long between two words ends an utterance
UNCOVERED_MIN_S = 0.5  # a stretch of a partly transcribed turn this long with no words is kept as speech


def attach_words(ann: Annotation, utterances: list[Utterance], stereo: bool) -> list[Utterance]:
    """Put ASR words on the diariser's speakers; split utterances at speaker changes.

    Stereo: each word already belongs to its channel (``u.channel``), and on a channel that
    holds a second voice (``right+1``) it goes to the one of the channel's two labels it
    overlaps most; mono: a word goes to the label it overlaps most (:func:`split_by_speaker`,
    sets ``u.cluster``).
    Either way an utterance is also split where another party holds a real turn
    (≥ ``REAL_TURN_S``) between two of its words.
    """
    utts = _split_channel_voices(utterances, ann) if stereo else split_by_speaker(utterances, ann)
    others = sorted((s.start, s.end, lab) for s, _, lab in ann.itertracks(yield_label=True)
                    if s.duration >= REAL_TURN_S)
    starts = np.array([o[0] for o in others], float)
    out: list[Utterance] = []
    for u in utts:
        mine = label_of(u)
        if len(u.words) < 2 or not others:
            out.append(u)
            continue
        cut = [0]
        for i in range(1, len(u.words)):
            a, b = u.words[i - 1].end, u.words[i].start
            lo, hi = int(np.searchsorted(starts, a, "left")), int(np.searchsorted(starts, b, "right"))
            if any(others[j][2] != mine and others[j][1] <= b + 1e-6 for j in range(lo, hi)):
                cut.append(i)
        if len(cut) == 1:
            out.append(u)
            continue
        for a, b in zip(cut, cut[1:] + [len(u.words)]):
            ws = u.words[a:b]
            out.append(_copy_utt(u, ws, " ".join(w.text for w in ws), u.cluster, ws[0].start, ws[-1].end))
    out.sort(key=lambda v: ((v.start or 0.0), (v.end or 0.0)))
    return out


def _split_channel_voices(utterances: list[Utterance], ann: Annotation) -> list[Utterance]:
    """Stereo words on a channel with a second voice go to the channel's label they overlap most."""
    split = {channel_of(lab) for lab in ann.labels() if "+" in str(lab)}
    if not split:
        return list(utterances)
    out = [u for u in utterances if u.channel not in split]
    for c in split:
        labels = [lab for lab in ann.labels() if channel_of(lab) == c]
        out += split_by_speaker([u for u in utterances if u.channel == c], ann.subset(labels))
    out.sort(key=lambda v: ((v.start or 0.0), (v.end or 0.0)))
    return out


def untranscribed(ann: Annotation, utterances: list[Utterance], stereo: bool,
                  min_partial_s: float = UNCOVERED_MIN_S) -> list[Utterance]:
    """Utterances (empty text, ``transcribed=False``) for the speech of each turn no utterance covers.

    A turn with no word at all becomes one whole; in a partly transcribed turn only a
    stretch of at least ``min_partial_s`` counts (word times are approximate at the edges).

    Examples
    --------
    >>> ann = Annotation()
    >>> ann[Segment(0, 3)] = "A"; ann[Segment(3.5, 3.9)] = "B"; ann[Segment(4, 8.0)] = "A"
    >>> us = [Utterance("x", 0.1, 2.9, "hei", cluster="A"), Utterance("x", 4.0, 5.0, "ja", cluster="A")]
    >>> [(u.cluster, u.start, u.end, u.text, u.transcribed) for u in untranscribed(ann, us, stereo=False)]
    [('B', 3.5, 3.9, '', False), ('A', 5.0, 8.0, '', False)]
    """

    spans: dict = {}
    for u in utterances:
        if u.start is not None and u.end is not None:
            spans.setdefault(label_of(u), []).append((u.start, u.end))
    for v in spans.values():
        v.sort()
    out = []
    for seg, _, lab in sorted(ann.itertracks(yield_label=True)):
        covered = [(a, b) for a, b in spans.get(lab, []) if b > seg.start and a < seg.end]
        pieces, t = [], seg.start
        for a, b in covered:
            if a > t:
                pieces.append((t, a))
            t = max(t, b)
        if t < seg.end:
            pieces.append((t, seg.end))
        keep = pieces if not covered else [(a, b) for a, b in pieces if b - a >= min_partial_s]
        for a, b in keep:
            if b - a < 0.05:
                continue
            out.append(Utterance(
                "other", round(a, 3), round(b, 3), "", channel=channel_of(lab) if stereo else None,
                cluster=lab if not stereo or "+" in lab else None, transcribed=False,
            ))
    return out


def speaker_turns(diarizer, audio, speech_probs=None) -> tuple:
    """``(annotation, diariser name)``: who spoke when, from the audio alone (the diariser, turn heads split).

    ``speech_probs`` are the per-channel Silero probabilities (the mono array is passed on for
    1-channel audio). Needing no words, the pipeline runs this while Whisper recognises the call.
    The name is read here, next to the call: ``--diarizer auto`` names the one it picked for it.
    """
    from speechpipe.speakers.turns import split_turn_heads

    vad = speech_probs
    if speech_probs is not None and audio.channels == 1 and len(speech_probs) == 1:
        vad = speech_probs[0]
    ann = diarizer.diarize(audio, vad)
    return split_turn_heads(ann, audio), getattr(diarizer, "name", "")


def assign_words(diarizer, audio, utterances: list[Utterance], counsellor_channel: str = "auto",
                 speech_probs=None, diarised=None) -> tuple[list[Utterance], list, dict]:
    """The speakers stage: turns from the audio, words attached, roles; returns ``(utterances, turns, roles)``.

    ``diarised``: the :func:`speaker_turns` of this call when already computed, else they are computed
    here. Every stretch of a turn no word covers becomes an untranscribed utterance, so the
    utterances cover all the speech the turns hold.
    """
    from speechpipe.records import Turn
    from speechpipe.speakers.roles import decide_roles

    stereo = audio.channels == 2
    ann, name = diarised if diarised is not None else speaker_turns(diarizer, audio, speech_probs)
    if stereo:
        from speechpipe.audio.acoustics import level_difference

        utterances = drop_crosstalk(utterances, level_difference(audio))
    utts = attach_words(ann, utterances, stereo)
    mapping, roles = decide_roles(ann, utts, stereo, counsellor_channel, name)
    utts += untranscribed(ann, utts, stereo)
    for u in utts:
        lab = label_of(u)
        u.speaker = mapping.get(lab, "other") if lab is not None else "other"
    utts.sort(key=lambda v: ((v.start or 0.0), (v.end or 0.0)))
    turns = [Turn(mapping.get(lab, "other"), round(s.start, 3), round(s.end, 3),
                  channel=channel_of(lab) if stereo else None,
                  cluster=str(lab) if not stereo or "+" in str(lab) else None)
             for s, _, lab in ann.itertracks(yield_label=True)]
    turns.sort(key=lambda t: (t.start, t.end))
    return utts, turns, roles


def drop_crosstalk(utterances: list[Utterance], diff: np.ndarray, crosstalk_db: float = 12.0) -> list[Utterance]:
    """Drop words whose span is dominated by the other channel (its leak), and utterances left empty."""
    fs = FRAME / SAMPLE_RATE
    out = []
    for u in utterances:
        if u.channel is None:
            out.append(u)
            continue
        sign = 1.0 if u.channel == 0 else -1.0

        def own(s, e, sign=sign):
            a, b = int(s / fs), max(int(s / fs) + 1, int(np.ceil(e / fs)))
            d = diff[a:b] * sign
            return d.size == 0 or np.median(d) > -crosstalk_db

        if u.words:
            words = [w for w in u.words if own(w.start, w.end)]
            if not words:
                continue
            if len(words) != len(u.words):
                u = _copy_utt(u, words, " ".join(w.text for w in words), u.cluster, words[0].start, words[-1].end)
            out.append(u)
        elif own(u.start or 0.0, u.end or 0.0):
            out.append(u)
    return out
