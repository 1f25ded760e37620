"""ASR words onto speakers: time lookup in an Annotation, utterances split at speaker changes, roles."""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment

from speechpipe.records import Utterance, Word
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
    >>> u = Utterance("unknown", 0.1, 2.5, "ja hei der", [Word("ja", .1, .4), Word("hei", 1.2, 1.6), Word("der", 2, 2.5)])
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
        channel=u.channel, cluster=cluster,
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
