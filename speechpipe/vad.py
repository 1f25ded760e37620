"""Voice activity: the Silero VAD model that ships with faster-whisper.

Pure functions on 16 kHz mono float32 arrays, so the ASR and diarisation
stages can share one pass (see :func:`speech_probabilities`).
"""

from __future__ import annotations

import numpy as np

from .records import SAMPLE_RATE

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
