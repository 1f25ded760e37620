"""Who holds the floor: turns → floor turns, floor-transfer offsets and overlaps (pure functions).

A *turn* (:class:`~speechpipe.records.Turn`) is a stretch of one party's speech; turns
of both parties may overlap. A *floor turn* joins one party's consecutive turns until
another party takes the floor. Another party's turn that starts and ends inside the
current floor turn does not take the floor: it is an overlap, a *backchannel overlap*
when it is short (≤ ``BACKCHANNEL_MAX_S``), otherwise *other* talk-over. At each change
of floor the *floor-transfer offset* is the incoming turn's start minus the outgoing
floor turn's end: positive for a gap, negative for overlap. A change that starts at
least ``MIN_OVERLAP_S`` before the current speaker stops, who then stops within
``YIELD_S``, is a *competitive interruption*; a longer overlap before the change is
*other* talk-over (both went on talking).

Examples
--------
>>> from speechpipe.records import Turn
>>> ts = [Turn("caller", 0, 5), Turn("counsellor", 2, 2.4), Turn("counsellor", 5.3, 8), Turn("caller", 7.5, 9)]
>>> f = analyse_floor(ts)
>>> [(t.speaker, t.start, t.end) for t in f.floor]
[('caller', 0, 5), ('counsellor', 5.3, 8), ('caller', 7.5, 9)]
>>> [(x.speaker, round(x.offset, 2)) for x in f.transitions]
[('counsellor', 0.3), ('caller', -0.5)]
>>> [(o.by, o.kind) for o in f.overlaps]
[('counsellor', 'backchannel'), ('caller', 'competitive')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from speechpipe.records import Turn, Utterance

BACKCHANNEL_MAX_S = 1.2  # a listener response is about 0.15–1.2 s (issue 16's minimal responses)
MIN_OVERLAP_S = 0.25  # shorter overlap at a change of floor is an ordinary early start
YIELD_S = 1.0  # an interrupted speaker stops within about 1 s


@dataclass
class FloorTurn:
    speaker: str
    start: float
    end: float
    parts: list[int] = field(default_factory=list)  # indices into the sorted turns


@dataclass
class Transition:
    speaker: str  # who takes the floor
    prev: str  # who had it
    time: float  # the incoming turn's start
    offset: float  # gap (> 0) or overlap (< 0), seconds


@dataclass
class Overlap:
    by: str  # who started talking
    on: str  # whose floor turn it was
    start: float
    end: float
    kind: str  # "backchannel" | "competitive" | "other"


@dataclass
class Floor:
    turns: list[Turn]  # sorted by (start, end)
    floor: list[FloorTurn]
    transitions: list[Transition]
    overlaps: list[Overlap]


def fallback_turns_from_utterances(utterances: Sequence[Utterance]) -> list[Turn]:
    """Fallback until ``CallResult.turns`` is filled from the audio: one turn per timed utterance.

    Only as good as the recogniser's words: speech Whisper wrote nothing for is missing.
    """
    return [Turn(u.speaker, float(u.start), float(u.end), channel=u.channel, cluster=u.cluster)
            for u in utterances if u.start is not None and u.end is not None and u.end > u.start]


def call_turns(turns: Sequence[Turn] | None, utterances: Sequence[Utterance]) -> tuple[list[Turn], str]:
    """The turns to measure and where they came from: ``"turns"`` (audio) or ``"utterances"`` (fallback)."""
    if turns:
        return list(turns), "turns"
    return fallback_turns_from_utterances(utterances), "utterances"


def analyse_floor(turns: Sequence[Turn], backchannel_max_s: float = BACKCHANNEL_MAX_S,
                  min_overlap_s: float = MIN_OVERLAP_S, yield_s: float = YIELD_S) -> Floor:
    """Floor turns, transitions (floor-transfer offsets) and classified overlaps of ``turns``."""
    segs = sorted((t for t in turns if t.end > t.start), key=lambda t: (t.start, t.end))
    floor: list[FloorTurn] = []
    transitions: list[Transition] = []
    overlaps: list[Overlap] = []
    for i, s in enumerate(segs):
        if not floor:
            floor.append(FloorTurn(s.speaker, s.start, s.end, [i]))
            continue
        cur = floor[-1]
        if s.speaker == cur.speaker:
            cur.end = max(cur.end, s.end)
            cur.parts.append(i)
            continue
        if s.end <= cur.end:  # inside the current floor turn: does not take the floor
            kind = "backchannel" if s.end - s.start <= backchannel_max_s else "other"
            overlaps.append(Overlap(s.speaker, cur.speaker, s.start, s.end, kind))
            continue
        offset = s.start - cur.end
        transitions.append(Transition(s.speaker, cur.speaker, s.start, offset))
        if -offset >= min_overlap_s:  # came in while the current speaker was talking
            kind = "competitive" if -offset <= yield_s else "other"
            overlaps.append(Overlap(s.speaker, cur.speaker, s.start, cur.end, kind))
        floor.append(FloorTurn(s.speaker, s.start, s.end, [i]))
    return Floor(segs, floor, transitions, overlaps)


def union(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge overlapping ``(start, end)`` spans.

    >>> union([(0, 2), (1, 3), (5, 6)])
    [(0, 3), (5, 6)]
    """
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def gaps(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The silences between merged spans (not before the first or after the last).

    >>> gaps([(0, 2), (1, 3), (5, 6)])
    [(3, 5)]
    """
    u = union(spans)
    return [(a[1], b[0]) for a, b in zip(u, u[1:]) if b[0] > a[1]]
