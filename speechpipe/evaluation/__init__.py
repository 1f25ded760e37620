"""Evaluation helpers shared by tests, benchmarks and ``speechpipe eval``."""

from __future__ import annotations

from speechpipe.vocabulary import normalise_for_wer


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER over normalised texts (jiwer)."""
    import jiwer

    return float(jiwer.wer([normalise_for_wer(r) for r in refs], [normalise_for_wer(h) for h in hyps]))


def scored_region(reference, hypothesis):
    """The region a DER is scored on: the extent of reference and hypothesis together.

    pyannote.metrics approximates the same region when no UEM is given, and warns on
    every file; stating it keeps ``speechpipe eval`` and the benchmarks quiet.

    Examples
    --------
    >>> from pyannote.core import Annotation, Segment
    >>> ref, hyp = Annotation(), Annotation()
    >>> ref[Segment(1, 4)] = "A"; hyp[Segment(0.5, 3)] = "S0"
    >>> scored_region(ref, hyp)
    <Timeline(uri=None, segments=[<Segment(0.5, 4)>])>
    """
    from pyannote.core import Timeline

    return Timeline([(reference.get_timeline() | hypothesis.get_timeline()).extent()])


def role_time_accuracy(ref, utterances, only: str | None = None) -> float:
    """Share of reference speech time whose utterance carries the right role.

    ``ref`` is a :class:`pyannote.core.Annotation` labelled with roles (as the
    sim-call RTTMs are); ``only`` restricts the measure to one role.
    """
    from pyannote.core import Annotation, Segment

    hyp = Annotation()
    for u in utterances:
        if u.end > u.start:
            hyp[Segment(u.start, u.end), len(hyp)] = u.speaker
    good = total = 0.0
    for seg, _, role in ref.itertracks(yield_label=True):
        if only and role != only:
            continue
        total += seg.duration
        good += sum(
            x.duration for x, _, r in hyp.crop(seg, mode="intersection").itertracks(yield_label=True) if r == role
        )
    return good / total if total else 0.0
