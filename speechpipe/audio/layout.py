"""Channel layout of a recording: mono, two parties, a duplicated channel, or one silent channel."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal, get_args

import numpy as np

from speechpipe.records import AudioData

ChannelLayout = Literal["mono", "two_party", "duplicated", "one_silent"]
LAYOUTS: tuple[str, ...] = get_args(ChannelLayout)

# Near-identical channels: an exported or converted recording carrying one signal twice. Lossy
# coding (joint-stereo MP3) keeps the correlation above 0.99; two parties with echo or crosstalk
# stay far below (their own voice dominates each channel).
DUPLICATE_CORR = 0.95
DUPLICATE_LEVEL_DB = 3.0  # median level difference of the louder frames
# A channel whose loud frames stay this far below the other's carries no party of its own.
SILENT_BELOW_DB = 35.0
SILENT_ABS_DB = -60.0
_FRAME = 512


def _levels_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // _FRAME
    f = x[: n * _FRAME].reshape(n, _FRAME).astype(np.float64)
    return 10 * np.log10(np.mean(f * f, axis=1) + 1e-12)


def detect_channel_layout(samples: np.ndarray) -> tuple[ChannelLayout, dict]:
    """Classify a ``(channels, n)`` signal; returns ``(layout, measurements)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.standard_normal((2, 16000)).astype(np.float32) * 0.1
    >>> [detect_channel_layout(np.stack(s))[0] for s in ([a, a], [a, b], [a, a * 1e-5])]
    ['duplicated', 'two_party', 'one_silent']
    >>> detect_channel_layout(a[None])[0]
    'mono'
    """
    x = np.asarray(samples)
    if x.ndim == 1 or x.shape[0] == 1:
        return "mono", {}
    la, lb = _levels_db(x[0]), _levels_db(x[1])
    if len(la) == 0:
        return "mono", {}
    pa, pb = float(np.percentile(la, 95)), float(np.percentile(lb, 95))
    stats: dict = {"level_p95_db": [round(pa, 1), round(pb, 1)]}
    if min(pa, pb) < max(SILENT_ABS_DB, max(pa, pb) - SILENT_BELOW_DB):
        stats["silent_channel"] = int(pb < pa)
        return "one_silent", stats
    # correlation over the whole call, in blocks (no float64 copy of a 2-hour recording)
    sxy = sxx = syy = sx = sy = 0.0
    n = x.shape[1]
    for i in range(0, n, 1 << 20):
        a = x[0, i:i + (1 << 20)].astype(np.float64)
        b = x[1, i:i + (1 << 20)].astype(np.float64)
        sx, sy = sx + a.sum(), sy + b.sum()
        sxx, syy, sxy = sxx + a @ a, syy + b @ b, sxy + a @ b
    cov = sxy - sx * sy / n
    corr = cov / np.sqrt(max((sxx - sx * sx / n) * (syy - sy * sy / n), 1e-20))
    loud = (la > np.percentile(la, 50)) | (lb > np.percentile(lb, 50))
    diff = float(np.median(np.abs(la[loud] - lb[loud]))) if loud.any() else 0.0
    stats.update(correlation=round(float(corr), 4), level_diff_db=round(diff, 2))
    if corr >= DUPLICATE_CORR and diff <= DUPLICATE_LEVEL_DB:
        return "duplicated", stats
    return "two_party", stats


def apply_channel_layout(audio: AudioData, layout: str = "auto") -> AudioData:
    """The audio the pipeline processes: ``duplicated`` and ``one_silent`` become mono.

    ``layout`` ``auto`` detects; any other value of :data:`LAYOUTS` overrides the detection
    (a 1-channel file is always ``mono``). The returned audio records the layout and the
    file's own channel count in :meth:`AudioData.info`.
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise ValueError(f"channel layout must be auto or one of {', '.join(LAYOUTS)} (got {layout!r})")
    if audio.channels == 1:
        return replace(audio, channel_layout="mono", layout_stats={})
    found, stats = detect_channel_layout(audio.samples)
    chosen = found if layout == "auto" else layout
    stats = {**stats, "detected": found} if chosen != found else stats
    if chosen == "two_party":
        return replace(audio, channel_layout=chosen, layout_stats=stats)
    if chosen == "one_silent":
        live = int(np.argmax(stats["level_p95_db"]))  # the louder channel carries the call
        mono = audio.samples[live:live + 1]
    else:  # duplicated, or mono forced: the down-mix
        mono = audio.samples.mean(axis=0, dtype=np.float32)[None, :]
    return replace(audio, samples=np.ascontiguousarray(mono, dtype=np.float32), channel_layout=chosen,
                   source_channels=audio.channels, layout_stats=stats)
