"""Voice activity: the Silero VAD model that ships with faster-whisper.

Pure functions on 16 kHz mono float32 arrays, so the ASR and diarisation
stages can share one pass (see :func:`speech_probabilities`).
"""

from __future__ import annotations

import numpy as np

from speechpipe.records import SAMPLE_RATE

FRAME = 512  # samples per Silero frame (32 ms at 16 kHz)
FRAME_S = FRAME / SAMPLE_RATE


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Silero speech probability for every 32 ms frame.

    Parameters
    ----------
    samples : np.ndarray
        1-D float32 audio at 16 kHz.

    Returns
    -------
    np.ndarray
        ``(n // 512 + 1,)`` probabilities; frame ``i`` covers
        ``[i * 0.032, (i + 1) * 0.032)`` seconds.

    Examples
    --------
    >>> p = speech_probabilities(np.zeros(16000, np.float32))
    >>> p.shape, bool(p.max() < 0.5)
    ((32,), True)
    """
    from faster_whisper.vad import get_vad_model

    x = np.asarray(samples, dtype=np.float32)
    if len(x) == 0:
        return np.zeros(0, np.float32)
    # ~5-minute chunks: the model copies its input with context, so whole-call calls
    # would cost several copies of a 2-hour call; the state reset every 5 min is harmless.
    chunk = FRAME * 9375
    probs = []
    model = get_vad_model()
    for i in range(0, len(x), chunk):
        piece = x[i : i + chunk]
        if i + chunk >= len(x):  # only the last piece is padded (no copy of the call),
            # exactly as faster-whisper pads (a whole frame when already aligned), so ASR
            # regions from these probabilities equal `get_speech_timestamps`.
            piece = np.pad(piece, (0, FRAME - len(piece) % FRAME))
        probs.append(np.asarray(model(piece)).reshape(-1))
    return np.concatenate(probs).astype(np.float32)


def probabilities_to_regions(
    probs: np.ndarray,
    threshold: float = 0.5,
    min_silence_s: float = 0.1,
    min_speech_s: float = 0.1,
    pad_s: float = 0.03,
    duration: float | None = None,
    neg_threshold: float | None = None,
) -> list[tuple[float, float]]:
    """Speech regions ``[(start, end), ...]`` in seconds from frame probabilities.

    Hysteresis like Silero's own post-processing: speech starts above
    ``threshold`` and only ends below ``neg_threshold`` (default
    ``threshold - 0.15``); gaps shorter than
    ``min_silence_s`` are bridged, regions shorter than ``min_speech_s`` dropped.

    Examples
    --------
    >>> p = np.array([0, 0, .9, .9, .9, 0, .9, .9, 0, 0, 0, 0, 0, 0, 0], np.float32)
    >>> probabilities_to_regions(p, min_silence_s=0.05, pad_s=0.0)
    [(0.064, 0.256)]
    """
    neg = neg_threshold if neg_threshold is not None else max(threshold - 0.15, 0.01)
    regions: list[list[float]] = []
    on = False
    start = 0
    for i, p in enumerate(probs):
        if not on and p >= threshold:
            on, start = True, i
        elif on and p < neg:
            on = False
            regions.append([start * FRAME_S, i * FRAME_S])
    if on:
        regions.append([start * FRAME_S, len(probs) * FRAME_S])
    merged: list[list[float]] = []
    for r in regions:
        if merged and r[0] - merged[-1][1] < min_silence_s:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    end_max = duration if duration is not None else len(probs) * FRAME_S
    out = []
    for s, e in merged:
        if e - s < min_speech_s:
            continue
        out.append((round(max(0.0, s - pad_s), 3), round(min(end_max, e + pad_s), 3)))
    # padding may make neighbours touch; keep them ordered and disjoint
    for i in range(1, len(out)):
        if out[i][0] < out[i - 1][1]:
            mid = round((out[i][0] + out[i - 1][1]) / 2, 3)
            out[i - 1] = (out[i - 1][0], mid)
            out[i] = (mid, out[i][1])
    return out


def speech_regions(samples: np.ndarray, threshold: float = 0.5, min_silence_s: float = 0.1,
                   min_speech_s: float = 0.1, pad_s: float = 0.03) -> list[tuple[float, float]]:
    """Speech regions of 16 kHz mono audio, in seconds.

    Examples
    --------
    >>> speech_regions(np.zeros(16000, np.float32))
    []
    """
    probs = speech_probabilities(samples)
    return probabilities_to_regions(probs, threshold, min_silence_s, min_speech_s, pad_s,
                                    duration=len(samples) / SAMPLE_RATE)


ENERGY_HOP = 160  # 10 ms frames for the energy test (finer than Silero's 32 ms)
ENERGY_HOP_S = ENERGY_HOP / SAMPLE_RATE


def frame_energy_db(samples: np.ndarray, hop: int = ENERGY_HOP, chunk: int = 1 << 14) -> np.ndarray:
    """Mean-square level in dB of consecutive ``hop``-sample frames.

    Computed chunk by chunk (~3 min of audio each): no float64 copy of a 2-hour call.

    Examples
    --------
    >>> frame_energy_db(np.full(480, 0.1, np.float32)).round(1).tolist()
    [-20.0, -20.0, -20.0]
    """
    x = np.asarray(samples, dtype=np.float32)
    n = len(x) // hop
    out = np.empty(n + (len(x) % hop > 0), np.float64)
    for i in range(0, n, chunk):
        v = x[i * hop: min(n, i + chunk) * hop].reshape(-1, hop)
        out[i: i + len(v)] = np.einsum("ij,ij->i", v, v, dtype=np.float64) / hop
    if len(out) > n:
        tail = x[n * hop:].astype(np.float64)
        out[n] = np.dot(tail, tail) / len(tail)
    return 10 * np.log10(out + 1e-10)


def noise_floor_db(energy_db: np.ndarray, percentile: float = 5.0, digital_silence_db: float = -90.0) -> float:
    """Background level of a recording: a low percentile of its frame levels.

    Frames of digital silence (hold, muted line: below ``digital_silence_db``)
    are ignored, so they do not drag the floor down to nothing.

    Examples
    --------
    >>> e = np.r_[np.full(90, -55.0), np.full(10, -100.0), np.full(100, -30.0)]
    >>> noise_floor_db(e)
    -55.0
    """
    e = energy_db[energy_db > digital_silence_db]
    return float(np.percentile(e, percentile)) if len(e) else digital_silence_db


def tight_speech_regions(
    probs: np.ndarray,
    samples: np.ndarray,
    onset: float = 0.5,
    energy_margin_db: float = 6.0,
    floor_percentile: float = 5.0,
    merge_gap_s: float = 0.4,
    min_speech_s: float = 0.1,
    pad_s: float = 0.1,
    loose: list[tuple[float, float]] | None = None,
    min_peak: float = 0.0,
) -> list[tuple[float, float]]:
    """Speech regions for *who spoke when*: pauses left out, edges trimmed.

    ASR wants generous regions (no clipped word); diarisation is scored on
    time, and Silero's probability decays slowly after speech ends, so
    thresholding it low bridges every pause. Here a 10 ms frame is speech
    when Silero is confident (``p >= onset``) *or* its level is at least
    ``energy_margin_db`` above the call's noise floor (Silero under-scores
    some real voices), and only inside ``loose`` regions (default: Silero at
    0.15 with 0.25 s bridging), so a noise burst alone is not speech. Gaps
    shorter than ``merge_gap_s`` are closed (a reference transcript does not
    split a turn at a stop consonant), bursts shorter than ``min_speech_s``
    dropped, and so is a region where Silero never reaches ``min_peak``
    (energy may extend speech that Silero heard, not create it: a click or
    a rustle between turns), the rest padded by ``pad_s``.

    Parameters
    ----------
    probs : np.ndarray
        Silero probabilities per 32 ms frame (:func:`speech_probabilities`).
    samples : np.ndarray
        The same 16 kHz mono audio.

    Returns
    -------
    list of (start, end)
        Sorted, disjoint regions in seconds.

    Examples
    --------
    >>> sr = 16000; t = np.arange(3 * sr) / sr
    >>> x = (0.1 * np.sin(2 * np.pi * 200 * t) * ((t > 1) & (t < 2))).astype(np.float32)
    >>> x += np.random.default_rng(0).normal(0, 1e-3, len(x)).astype(np.float32)
    >>> p = np.where((np.arange(94) > 31) & (np.arange(94) < 80), 0.3, 0.0)  # a slow Silero tail
    >>> [(round(s, 1), round(e, 1)) for s, e in tight_speech_regions(p, x, pad_s=0.0)]
    [(1.0, 2.0)]
    """
    probs = np.asarray(probs)
    duration = len(samples) / SAMPLE_RATE
    if loose is None:
        loose = probabilities_to_regions(probs, 0.15, 0.25, 0.1, 0.1, duration)
    if not loose or len(probs) == 0:
        return []
    e = frame_energy_db(samples)
    floor = noise_floor_db(e, floor_percentile)
    idx = np.minimum((np.arange(len(e)) * ENERGY_HOP_S / FRAME_S).astype(int), len(probs) - 1)
    active = (e > floor + energy_margin_db) | (probs[idx] >= onset)
    inside = np.zeros(len(e), bool)
    for s, t in loose:
        inside[int(s / ENERGY_HOP_S): int(np.ceil(t / ENERGY_HOP_S))] = True
    d = np.diff(np.r_[0, (active & inside).astype(np.int8), 0])
    starts, ends = np.where(d == 1)[0], np.where(d == -1)[0]
    gap = int(round(merge_gap_s / ENERGY_HOP_S))
    merged: list[list[int]] = []
    for s, t in zip(starts, ends):
        if merged and s - merged[-1][1] <= gap:
            merged[-1][1] = t
        else:
            merged.append([s, t])
    out = []
    for s, t in merged:
        if (t - s) * ENERGY_HOP_S < min_speech_s:
            continue
        if min_peak > 0 and probs[idx[s:t]].max() < min_peak:
            continue
        a, b = max(0.0, s * ENERGY_HOP_S - pad_s), min(duration, t * ENERGY_HOP_S + pad_s)
        if out and a < out[-1][1]:  # padding made neighbours overlap: meet halfway
            a = out[-1][1] = (a + out[-1][1]) / 2
        out.append([a, b])
    return [(round(float(a), 3), round(float(b), 3)) for a, b in out]


def breath_regions(
    samples: np.ndarray,
    probs: np.ndarray,
    regions: list[tuple[float, float]],
    max_peak: float = 0.35,
    min_re_speech_db: float = -22.0,
    block_s: float = 60.0,
) -> list[tuple[float, float]]:
    """Audible breaths that energy alone would count as speech.

    Runs the prosody stage's model-free breath detector
    (:func:`speechpipe.audio.acoustics.detect_breaths`: unvoiced, noise-like,
    low-mid centroid, 150 ms–1 s) over the whole recording and keeps the
    breaths Silero never scores as speech (every frame below ``max_peak``)
    that are at most ``-min_re_speech_db`` dB below the speech level (95th
    percentile of the band level inside ``regions``). Faint breathing inside
    a turn, which reference transcripts count as part of the turn, stays;
    a loud breath between turns, which they do not, goes. The signal is
    analysed in ``block_s`` blocks so memory stays flat on long calls.

    Parameters
    ----------
    samples : np.ndarray
        16 kHz mono audio.
    probs : np.ndarray
        Silero probabilities per 32 ms frame of the same audio.
    regions : list of (start, end)
        Speech regions (seconds) that set the speech level.

    Returns
    -------
    list of (start, end)
        Breaths in seconds, sorted.

    Examples
    --------
    >>> sr = 16000; rng = np.random.default_rng(0); t = np.arange(4 * sr) / sr
    >>> voice = sum(0.1 * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 8)) * (t < 2)
    >>> from scipy.signal import butter, sosfilt
    >>> hiss = sosfilt(butter(2, [300, 2500], "bandpass", fs=sr, output="sos"), rng.normal(0, 0.1, len(t)))
    >>> x = (voice + hiss * ((t > 2.5) & (t < 3.0)) + rng.normal(0, 1e-4, len(t))).astype(np.float32)
    >>> p = np.where(np.arange(125) < 62, 0.9, 0.05)  # Silero: speech for the first 2 s only
    >>> [(round(s, 1), round(e, 1)) for s, e in breath_regions(x, p, [(0.0, 2.0), (2.4, 3.1)])]
    [(2.5, 3.0)]
    """
    import soxr

    from speechpipe.audio.acoustics import HOP, SR, BreathConfig, detect_breaths, frame_features, span_mask

    x = np.asarray(samples, dtype=np.float32)
    probs = np.asarray(probs)
    if not regions or len(x) == 0 or len(probs) == 0:
        return []
    step = int(block_s * SAMPLE_RATE) // (2 * HOP) * (2 * HOP)  # whole 8 kHz frames per block
    parts = []
    for a in range(0, len(x), step):
        f = frame_features(soxr.resample(x[a:a + step], SAMPLE_RATE, SR, quality="HQ").astype(np.float32))
        # the last frame of a block is centred where the next block's first frame is
        last = a + step >= len(x)
        parts.append({k: v if last else v[:-1] for k, v in f.items() if k != "times"})
    feats = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    e = feats["energy_db"]
    inside = span_mask(len(e), regions)
    if not inside.any():
        return []
    level = float(np.percentile(e[inside], 95))
    out = []
    # the diariser's own, wider breath test (the prosody stage's events have stricter defaults)
    for b in detect_breaths(feats, [], level, BreathConfig(min_s=0.15, above_floor_db=6.0)):
        i, j = int(b["start"] / FRAME_S), int(np.ceil(b["end"] / FRAME_S)) + 1
        if probs[i:j].max(initial=0.0) < max_peak and b["re_speech_db"] >= min_re_speech_db:
            out.append((float(b["start"]), float(b["end"])))
    return out


def subtract_regions(
    regions: list[tuple[float, float]], holes: list[tuple[float, float]], min_s: float = 0.1
) -> list[tuple[float, float]]:
    """``regions`` minus ``holes`` (both sorted, disjoint), pieces shorter than ``min_s`` dropped.

    Examples
    --------
    >>> subtract_regions([(0.0, 2.0), (3.0, 4.0)], [(0.5, 1.0), (3.95, 5.0)])
    [(0.0, 0.5), (1.0, 2.0), (3.0, 3.95)]
    """
    out = []
    k = 0  # both lists are sorted: one pass over the holes (a 2-hour call has thousands of regions)
    for s, e in regions:
        while k < len(holes) and holes[k][1] <= s:
            k += 1
        cur, j = s, k
        while j < len(holes) and holes[j][0] < e:
            hs, he = holes[j]
            if hs - cur >= min_s:
                out.append((cur, hs))
            cur = max(cur, he)
            j += 1
        if e - cur >= min_s:
            out.append((cur, e))
    return out
