"""Stereo: find a second voice on one channel (a relative on the caller's phone) with the neural diariser.

Detection rule, per channel: the channel's own speech (the other party's leak silenced, frames
more than ``crosstalk_db`` below the other channel) goes through the same mono diariser
(:class:`speechpipe.speakers.neural.NeuralDiarizer`); its clustering threshold decides whether
two voices differ. A second voice is kept only when it holds at least ``min_voice_s`` seconds
and ``min_share`` of the channel's speech, and holds its own stretch of the call (the two voices
told apart by time alone, :func:`speechpipe.speakers.embedded.time_separation` >= ``min_auc``, the
mono third-voice rule): breaths, leaks and noise that the clustering sets apart come and go all
through the call and cannot split a channel (measured: a plain sim caller channel was split without it).
The main voice keeps the channel's
label (``left``/``right``, so role mapping is unchanged); the extra one is ``left+1``/``right+1``
and gets the role ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyannote.core import Annotation, Timeline

from speechpipe.records import SAMPLE_RATE, AudioData


@dataclass
class ChannelVoicesConfig:
    min_voice_s: float = 8.0
    min_share: float = 0.1
    min_channel_s: float = 20.0  # channels with less speech are not searched (nothing to split, saves time)
    min_auc: float = 0.8


def extra_label(channel: str) -> str:
    """Label of a second voice on ``channel``.

    >>> extra_label("right")
    'right+1'
    """
    return f"{channel}+1"


def silence_leak(x: np.ndarray, own: np.ndarray, frame: int) -> np.ndarray:
    """``x`` with every frame where ``own`` is false set to zero (the other party's leak removed)."""
    y = np.asarray(x, np.float32).copy()
    n = min(len(own), int(np.ceil(len(y) / frame)))
    for i in np.flatnonzero(~own[:n]):
        y[i * frame : (i + 1) * frame] = 0.0
    return y


def split_channel(
    neural,
    x: np.ndarray,
    own: np.ndarray,
    frame: int,
    channel: str,
    channel_ann: Annotation,
    cfg: ChannelVoicesConfig | None = None,
) -> tuple[Annotation, dict]:
    """Relabel ``channel_ann`` (one channel's turns) when the channel holds two voices.

    ``x``: the channel's samples; ``own``: per-``frame`` mask of its own (not leaked) speech.
    Returns the (possibly relabelled) annotation and what was measured.
    """
    cfg = cfg or ChannelVoicesConfig()
    speech = channel_ann.get_timeline().support().duration()
    info = {"channel": channel, "speech_s": round(speech, 1), "split": False}
    if speech < cfg.min_channel_s:
        return channel_ann, info
    hyp = neural.diarize(AudioData(f"<{channel}>", silence_leak(x, own, frame)[None], SAMPLE_RATE))
    time = sorted(((hyp.label_duration(lab), lab) for lab in hyp.labels()), reverse=True)
    info["voices_s"] = [round(t, 1) for t, _ in time]
    if len(time) < 2 or time[1][0] < cfg.min_voice_s or time[1][0] < cfg.min_share * speech:
        return channel_ann, info
    from speechpipe.speakers.embedded import time_separation
    from speechpipe.speakers.neural import _label_times

    info["time_auc"] = round(time_separation(_label_times(hyp, time[0][1]), _label_times(hyp, time[1][1])), 3)
    if info["time_auc"] < cfg.min_auc:
        return channel_ann, info
    # the second voice's time (where the main voice does not also speak) takes the extra label
    second = hyp.label_timeline(time[1][1]).support().extrude(hyp.label_timeline(time[0][1]).support())
    out = Annotation(uri=channel_ann.uri)
    for seg in channel_ann.get_timeline().support():
        theirs = second.crop(seg, mode="intersection")
        for part in theirs:
            if part.duration > 0:
                out[part, len(out)] = extra_label(channel)
        for part in Timeline([seg]).extrude(theirs):
            if part.duration > 0:
                out[part, len(out)] = channel
    info["split"] = True
    return out, info
