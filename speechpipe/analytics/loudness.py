"""Loudness of turns in dBFS and its trend across a call (pure functions on sample arrays).

dBFS here is the RMS level relative to full scale (a full-scale square wave is 0 dBFS,
a full-scale sine −3 dBFS), measured on the channel the speaker was recorded on.

Examples
--------
>>> import numpy as np
>>> x = np.full((1, 16000), 0.1, dtype=np.float32)
>>> span_dbfs(x, 16000, 0, [(0.0, 0.5)])
-20.0
>>> trend_db_per_min([0.0, 60.0, 120.0], [-30.0, -28.0, -26.0])
2.0
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

FLOOR_DBFS = -100.0  # digital silence


def span_dbfs(samples: np.ndarray, sample_rate: int, channel: int,
              spans: Sequence[tuple[float, float]]) -> float | None:
    """RMS level of ``samples[channel]`` over ``spans`` (seconds), in dBFS; ``None`` when no samples fall in them."""
    x = samples[min(max(channel, 0), samples.shape[0] - 1)]
    energy, n = 0.0, 0
    for a, b in spans:
        i, j = max(0, int(a * sample_rate)), min(len(x), int(b * sample_rate))
        if j > i:
            # einsum, not np.dot: a BLAS call spins up its threads, 100× slower for this on a busy machine
            energy += float(np.einsum("i,i->", x[i:j], x[i:j], dtype=np.float64))
            n += j - i
    if n == 0:
        return None
    return round(max(FLOOR_DBFS, float(10.0 * np.log10(energy / n + 1e-20))), 2)


def trend_db_per_min(times: Sequence[float], levels: Sequence[float], min_points: int = 3) -> float | None:
    """Least-squares slope of ``levels`` over ``times`` (seconds), in dB per minute; ``None`` with too few points."""
    t = np.asarray(times, dtype=np.float64)
    y = np.asarray(levels, dtype=np.float64)
    if len(t) < min_points or np.ptp(t) <= 0:
        return None
    slope = np.polyfit(t / 60.0, y, 1)[0]
    return round(float(slope), 3)


def quarter_medians(times: Sequence[float], levels: Sequence[float],
                    duration: float) -> tuple[float | None, float | None]:
    """Median level of the turns in the first and in the last quarter of the call."""
    t = np.asarray(times, dtype=np.float64)
    y = np.asarray(levels, dtype=np.float64)
    if duration <= 0 or not len(t):
        return None, None
    first, last = y[t < duration / 4], y[t >= 3 * duration / 4]
    return (round(float(np.median(first)), 2) if len(first) else None,
            round(float(np.median(last)), 2) if len(last) else None)
