"""Turn refinement: a minimal response at the head of a turn («Mm. [pause] Så …») becomes a turn of its own."""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment

from speechpipe.audio.acoustics import frame_levels_db
from speechpipe.audio.vad import FRAME_S
from speechpipe.speakers.base import CHANNEL_NAMES

HEAD_MIN_S, HEAD_MAX_S = 0.15, 1.3  # the head: as long as a minimal response
PAUSE_MIN_S = 0.12  # a quiet run at least this long ends it (4 Silero frames)
AFTER_OTHER_S = 2.0  # the turn starts while, or just after, another party speaks
QUIET_BELOW_P95_DB = 25.0
QUIET_ABOVE_FLOOR_DB = 6.0


def split_turn_heads(ann: Annotation, audio) -> Annotation:
    """Split each turn that opens with a short stretch of speech, then a pause, right after another party.

    The VAD bridges short pauses (its regions end only after 0.25 s of silence), so «Mm.»
    followed by the counsellor's next sentence is one region; a listener's minimal response
    is the head alone. The pause is found on the frame levels of the turn's own channel.
    """
    tracks = sorted(ann.itertracks(yield_label=True), key=lambda x: x[0].start)
    if not tracks:
        return ann
    stereo = audio.channels == 2
    levels = {}
    out = Annotation(uri=ann.uri)
    for seg, trk, lab in tracks:
        pieces = [seg]
        if seg.duration > HEAD_MAX_S + PAUSE_MIN_S and _after_other(tracks, seg, lab):
            ch = CHANNEL_NAMES.index(lab) if stereo and lab in CHANNEL_NAMES else 0
            if ch not in levels:
                lv = frame_levels_db(audio.samples[ch])
                levels[ch] = (lv, max(float(np.percentile(lv, 10)) + QUIET_ABOVE_FLOOR_DB,
                                      float(np.percentile(lv, 95)) - QUIET_BELOW_P95_DB))
            pause = _first_pause(*levels[ch], seg.start)
            if pause is not None:
                # the pieces stay contiguous (the pause is part of the turn: no speech goes missing from
                # the RTTM), the head keeps at most 0.1 s of it as its end pad
                cut = min(pause[0] + 0.1, 0.5 * (pause[0] + pause[1]))
                pieces = [Segment(seg.start, cut), Segment(cut, seg.end)]
        for k, p in enumerate(pieces):
            out[p, (trk, k)] = lab
    return out


def _after_other(tracks, seg: Segment, lab) -> bool:
    return any(lb != lab and s.start < seg.start and s.end > seg.start - AFTER_OTHER_S for s, _, lb in tracks)


def _first_pause(lv: np.ndarray, quiet_db: float, start: float) -> tuple[float, float] | None:
    """The first quiet run of at least ``PAUSE_MIN_S`` beginning between ``HEAD_MIN_S`` and ``HEAD_MAX_S``."""
    a = int(np.ceil((start + HEAD_MIN_S) / FRAME_S))
    b = int((start + HEAD_MAX_S) / FRAME_S)
    need = int(np.ceil(PAUSE_MIN_S / FRAME_S))
    quiet = lv[a: b + need] < quiet_db
    run = 0
    for i, q in enumerate(quiet):
        run = run + 1 if q else 0
        if run >= need:
            s = a + i - run + 1
            head = lv[int(start / FRAME_S): s]
            if (head >= quiet_db).sum() * FRAME_S < HEAD_MIN_S / 2:  # no sound before it: not a head
                return None
            e = s
            while e < len(lv) and lv[e] < quiet_db:
                e += 1
            return s * FRAME_S, e * FRAME_S
    return None
