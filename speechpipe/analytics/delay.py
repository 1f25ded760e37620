"""How late the counsellor's voice comes back in the caller channel of a stereo call (echo delay).

A stereo recording made at the counsellor's end often carries a faint echo of the
counsellor in the caller channel: the counsellor's speech went out over the network,
leaked back at the far end (handset, hybrid) and returned. Its lag is a round trip to
that echo point, the bias that caller response latencies carry. It is measured by
cross-correlating the two channels where only the counsellor speaks; no clear peak
(no echo, or a clean digital line) gives ``None``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> c = rng.standard_normal(16000 * 20).astype(np.float32) * 0.1
>>> echo = np.concatenate([np.zeros(4000, np.float32), c[:-4000]]) * 0.05   # 250 ms later, 26 dB down
>>> x = np.stack([c, echo + rng.standard_normal(len(c)).astype(np.float32) * 0.002])
>>> echo_delay(x, 16000, [(0.0, 20.0)])
{'delay_s': 0.25, 'correlation': 0.92}
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MAX_LAG_S = 1.0
MIN_LAG_S = 0.01  # below this it is crosstalk on the same line, not a network round trip
MIN_CORRELATION = 0.1
MAX_ANALYSIS_S = 30.0  # half a minute of counsellor-only speech is plenty
RATE = 2000  # the waveform below 1 kHz is enough to correlate


def echo_delay(samples: np.ndarray, sample_rate: int, counsellor_only: Sequence[tuple[float, float]],
               counsellor_channel: int = 0) -> dict[str, float] | None:
    """``{delay_s, correlation}`` of the counsellor's echo in the other channel, or ``None`` when there is none."""
    from scipy.signal import fftconvolve

    if samples.ndim != 2 or samples.shape[0] != 2:
        return None
    step = max(1, sample_rate // RATE)
    sr = sample_rate / step
    mask = np.zeros(samples.shape[1], dtype=bool)
    total = 0.0
    for a, b in counsellor_only:
        if total >= MAX_ANALYSIS_S:
            break
        i, j = int(a * sample_rate), min(samples.shape[1], int(b * sample_rate))
        if j > i:
            mask[i:j] = True
            total += (j - i) / sample_rate
    if total < 5.0:
        return None
    last = int(np.nonzero(mask)[0][-1]) + 1 + int(MAX_LAG_S * sample_rate)
    ref = np.where(mask, samples[counsellor_channel], 0.0)[:last]
    other = samples[1 - counsellor_channel][:last]
    ref, other = _decimate(ref, step), _decimate(other, step)
    max_lag = int(MAX_LAG_S * sr)
    # xcorr[k] = sum ref[t] · other[t + k] for k = 0 … max_lag
    xc = fftconvolve(other, ref[::-1], mode="full")[len(ref) - 1: len(ref) + max_lag]
    k0 = int(MIN_LAG_S * sr)
    if len(xc) <= k0:
        return None
    k = k0 + int(np.argmax(np.abs(xc[k0:])))
    # normalise by the energies over the same stretch, shifted by the lag
    e_ref = float(np.einsum("i,i->", ref, ref))  # einsum: no BLAS threads (see loudness.py)
    shifted = other[k:k + len(ref)]
    live = np.abs(ref[: len(shifted)]) > 0
    e_oth = float(np.einsum("i,i->", shifted * live, shifted))
    if e_ref <= 0 or e_oth <= 0:
        return None
    corr = abs(float(xc[k])) / float(np.sqrt(e_ref * e_oth))
    if corr < MIN_CORRELATION:
        return None
    return {"delay_s": round(k / sr, 3), "correlation": round(corr, 2)}


def _decimate(x: np.ndarray, step: int) -> np.ndarray:
    """Block means (a crude low-pass, cheap) down by ``step``, as float64."""
    n = len(x) // step * step
    return x[:n].reshape(-1, step).mean(axis=1, dtype=np.float64)
