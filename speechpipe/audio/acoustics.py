"""Frame features of telephone-band audio and a model-free breath detector (pure functions on arrays).

Shared by the speakers stage (loud breaths between turns are not speech) and the
prosody stage (breath events), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SR = 8000  # analysis rate: telephone band
HOP = 80  # 10 ms frames
N_FFT = 512  # zero-padded: linear (not circular) autocorrelation for lags < WIN
WIN = 256  # 32 ms


@dataclass
class BreathConfig:
    """What counts as an audible breath (see :func:`detect_breaths`)."""

    # An audible inhalation stands clear of the line noise and lasts. Shorter or fainter unvoiced runs
    # are mostly fricatives and stop releases inside speech the recogniser did not transcribe (end to
    # end on the 6 stereo sim calls: 18 of 31 detections were such 0.15-0.21 s runs 10-15 dB above
    # the floor). Chosen on the dev sim calls (0.2 s / 12 dB cost a third of the breaths on reference
    # boundaries; 0.18 s / 10 dB keeps F1 0.95 there).
    min_s: float = 0.18
    max_s: float = 1.0
    above_floor_db: float = 10.0
    # A breath swells and fades: its core stands 10 dB clear of the floor, its onset and release do not.
    # Opt-in: a run of breath-like frames this far above the floor counts, with its length, when it holds
    # a core of min_core_s and averages mean_above_floor_db. End to end it found the faint breaths on the
    # mono sim calls (F1 0.92 → 0.94) but on the stereo ones, whose per-party channels have a far lower
    # floor, it took in faint noise runs (F1 0.91 → 0.78), so it is off.
    extend_above_floor_db: float | None = None
    min_core_s: float = 0.08
    mean_above_floor_db: float | None = None
    below_speech_db: float = 4.0  # re the speaker's 95th-percentile level
    max_periodicity: float = 0.5
    min_flatness: float = 0.1
    centroid_hz: tuple[float, float] = (600.0, 2600.0)
    word_pad_s: float = 0.0
    # A recognised word masks from its first voiced frame on: Whisper often starts the word that follows
    # a breath on the breath itself (end to end on dev-002/003 mono the two breaths missed were 50-85 %
    # under word times), and what comes before the voicing is not the word's vowel. A word with no
    # voicing stays masked whole: an inhaled «ja» (a Norwegian backchannel) is no breath event.
    mask_from_voicing: bool = True


# ---------------------------------------------------------------------------
# Frame features (vectorised; one STFT per channel)


def frame_features(x: np.ndarray, sr: int = SR, block_s: float = 60.0) -> dict[str, np.ndarray]:
    """Per-frame level, spectral flatness, centroid and periodicity of a telephone-band signal.

    Frames are 32 ms every 10 ms, centred at ``i * 0.01`` s. ``energy_db``
    is the 250–3400 Hz band level (dB re full scale), ``flatness`` and
    ``centroid`` are computed on the same band (as librosa's), ``periodicity``
    is the largest window-corrected normalised autocorrelation for F0
    50–500 Hz (Praat's harmonicity estimate, taken from the same spectrum).
    The signal is processed in blocks of ``block_s`` so memory stays flat
    for hour-long recordings.

    Examples
    --------
    >>> t = np.arange(SR) / SR
    >>> f = frame_features(0.1 * np.sin(2 * np.pi * 200 * t).astype(np.float32))
    >>> bool(np.median(f["periodicity"]) > 0.9)
    True
    """
    x = np.asarray(x, dtype=np.float32)
    n_frames = 1 + len(x) // HOP
    # Same framing as librosa.stft(center=True, pad_mode="constant"): frame i is centred on sample i·HOP.
    xp = np.pad(x, (N_FFT // 2, N_FFT // 2 + HOP))
    per_block = max(1, int(block_s * sr / HOP))
    parts = [_frame_block(xp[i * HOP : (min(i + per_block, n_frames) - 1) * HOP + N_FFT], sr)
             for i in range(0, n_frames, per_block)]
    out = {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in parts[0]}
    out["times"] = np.arange(n_frames) * HOP / sr
    return out


_WINDOW = np.hanning(WIN + 2)[1:-1].astype(np.float32)
# The analysis window centred in an N_FFT frame (zero-padded both sides), as librosa.stft does.
_FRAME_WINDOW = np.zeros(N_FFT, np.float32)
_FRAME_WINDOW[(N_FFT - WIN) // 2 : (N_FFT + WIN) // 2] = _WINDOW


def _frame_block(xb: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """Features of every full N_FFT frame (hop HOP) of ``xb``; rows are frames."""
    import scipy.fft

    # A strided view, one rfft over the frame axis: librosa.stft's result, without its slow import
    # and already laid out frames × bins for the autocorrelation below.
    frames = np.lib.stride_tricks.sliding_window_view(xb, N_FFT)[::HOP]
    spec = scipy.fft.rfft(frames * _FRAME_WINDOW, axis=1, workers=1)
    power = spec.real**2 + spec.imag**2  # float32, (frames, bins)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr).astype(np.float32)
    band = (freqs >= 250) & (freqs <= 3400)
    pb = power[:, band]
    norm = float(_WINDOW.sum() ** 2) / 4.0  # full-scale sine → ~0 dB
    tot = pb.sum(axis=1)
    energy_db = 10.0 * np.log10(tot / norm + 1e-10)
    # spectral flatness (geometric / arithmetic mean), as librosa.feature.spectral_flatness
    flatness = np.exp(np.log(pb + 1e-10).mean(axis=1)) / (tot / pb.shape[1] + 1e-10)
    centroid = (pb @ freqs[band]) / (tot + 1e-12)
    # Autocorrelation from the power spectrum, corrected for the window's own decay (Praat's HNR estimate).
    lo, hi = int(sr / 500), min(int(sr / 50), WIN - 32)
    ac = scipy.fft.irfft(power, n=N_FFT, axis=1, workers=1)[:, :hi]
    wac = np.fft.irfft(np.abs(np.fft.rfft(_WINDOW, n=N_FFT)) ** 2, n=N_FFT)
    r = (ac[:, lo:hi] * (wac[0] / wac[None, lo:hi]).astype(np.float32)).max(axis=1)
    periodicity = np.clip(r / (ac[:, 0] + 1e-12), 0.0, 1.0)
    periodicity[energy_db < -90] = 0.0
    return {"energy_db": energy_db, "flatness": flatness, "centroid": centroid, "periodicity": periodicity}


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the True runs of a boolean array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def close_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill False runs of at most ``max_gap`` frames between True runs."""
    s, e = runs(~mask)
    inner = (s > 0) & (e < len(mask)) & (e - s <= max_gap)
    out = mask.copy()
    for a, b in zip(s[inner], e[inner]):  # loop over gaps, not frames
        out[a:b] = True
    return out


def span_mask(n: int, spans, pad: float = 0.0, step: float = HOP / SR) -> np.ndarray:
    """Boolean frame mask covering ``spans`` (seconds), vectorised via a difference array."""
    acc = np.zeros(n + 1, np.int32)
    if len(spans):
        sp = np.asarray(spans, dtype=np.float64)
        a = np.clip(np.floor((sp[:, 0] - pad) / step).astype(int), 0, n)
        b = np.clip(np.ceil((sp[:, 1] + pad) / step).astype(int) + 1, 0, n)
        np.add.at(acc, a, 1)
        np.add.at(acc, b, -1)
    return np.cumsum(acc)[:n] > 0


def noise_floor_db(energy_db: np.ndarray) -> float:
    """Channel noise floor: the 10th percentile of frame levels."""
    return float(np.percentile(energy_db, 10)) if len(energy_db) else -100.0


def detect_breaths(
    feats: dict[str, np.ndarray],
    word_spans,
    speech_level_db: float,
    config: BreathConfig | None = None,
) -> list[dict]:
    """Audible breaths on one channel, without a model.

    A frame is breath-like when it is unvoiced (low periodicity), noise-like
    (spectral flatness), ``above_floor_db`` above the noise floor yet
    ``below_speech_db`` below ``speech_level_db``, with its centroid in
    the low-mid band, and outside every word in ``word_spans``; runs of such
    frames (gaps ≤ 30 ms closed) lasting ``min_s``–``max_s`` are breaths. With
    ``extend_above_floor_db`` a run is taken at that lower level (onset and
    release included) and kept when it holds ``min_core_s`` above ``above_floor_db``. An inhaled
    «ja» looks the same, which is why words heard by the recogniser are masked.

    Returns dicts with ``start``, ``end`` and measurements (``level_db``,
    ``above_floor_db``, ``re_speech_db``, ``flatness``, ``centroid_hz``).
    """
    c = config or BreathConfig()
    e = feats["energy_db"]
    n = len(e)
    if n == 0:
        return []
    floor = noise_floor_db(e)
    lo_c, hi_c = c.centroid_hz
    like = (
        (feats["periodicity"] < c.max_periodicity)
        & (feats["flatness"] >= c.min_flatness)
        & (e <= speech_level_db - c.below_speech_db)
        & (feats["centroid"] >= lo_c)
        & (feats["centroid"] <= hi_c)
    )
    if c.mask_from_voicing and len(word_spans):
        word_spans = _from_voicing(word_spans, feats["periodicity"] >= c.max_periodicity)
    words = span_mask(n, word_spans, pad=c.word_pad_s)
    core = close_gaps(like & (e >= floor + c.above_floor_db), 3) & ~words
    if c.extend_above_floor_db is None or c.extend_above_floor_db >= c.above_floor_db:
        cand = core
    else:
        cand = close_gaps(like & (e >= floor + c.extend_above_floor_db), 3) & ~words
        # keep the extended runs that hold a core of at least min_core_s
        cum = np.concatenate([[0], np.cumsum(core)])
        need = int(round(c.min_core_s * SR / HOP))
        keep = np.zeros(n, bool)
        for a, b in zip(*runs(cand)):
            if cum[b] - cum[a] >= need:
                keep[a:b] = True
        cand = keep
    step = HOP / SR
    out = []
    for a, b in zip(*runs(cand)):
        dur = (b - a) * step
        if not (c.min_s <= dur <= c.max_s):
            continue
        lvl = float(10 * np.log10(np.mean(10 ** (e[a:b] / 10))))
        if c.mean_above_floor_db is not None and lvl < floor + c.mean_above_floor_db:
            continue
        out.append(
            {
                "start": round(a * step, 3),
                "end": round(b * step, 3),
                "level_db": round(lvl, 1),
                "above_floor_db": round(lvl - floor, 1),
                "re_speech_db": round(lvl - speech_level_db, 1),
                "flatness": round(float(np.mean(feats["flatness"][a:b])), 3),
                "centroid_hz": round(float(np.mean(feats["centroid"][a:b])), 0),
            }
        )
    return out


def _from_voicing(spans, voiced: np.ndarray, step: float = HOP / SR) -> list[tuple[float, float]]:
    """Each span from its first 30 ms of voicing (after its first 30 ms) on; a span with none stays whole."""
    v = np.asarray(voiced, bool)
    idx = np.flatnonzero(v[:-2] & v[1:-1] & v[2:]) if len(v) > 2 else np.zeros(0, int)  # 30 ms of voicing
    sp = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    a = np.floor(sp[:, 0] / step).astype(int)
    b = np.ceil(sp[:, 1] / step).astype(int)
    k = np.searchsorted(idx, a + 3)  # the first 30 ms may still be the previous word's voicing
    first = idx[np.minimum(k, len(idx) - 1)] if len(idx) else np.zeros(len(a), int)
    ok = (k < len(idx)) & (first <= b)
    starts = np.where(ok, np.maximum(sp[:, 0], first * step), sp[:, 0])
    return list(zip(starts.tolist(), sp[:, 1].tolist()))


# ---------------------------------------------------------------------------
# Intonation


def frame_levels_db(x: np.ndarray, frame: int = 512) -> np.ndarray:
    """RMS level in dB per ``frame`` samples (512 at 16 kHz: aligned with the Silero frames).

    Examples
    --------
    >>> frame_levels_db(np.full(1024, 0.1, np.float32)).round(1).tolist()
    [-20.0, -20.0]
    """
    x = np.pad(np.asarray(x, np.float32), (0, (-len(x)) % frame)).reshape(-1, frame)
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2, axis=1) + 1e-10)


def level_difference(audio) -> np.ndarray:
    """Left minus right level (dB) per Silero frame of two-channel :class:`~speechpipe.records.AudioData`."""
    levels = [frame_levels_db(audio.samples[c]) for c in range(2)]
    n = min(len(levels[0]), len(levels[1]))
    return levels[0][:n] - levels[1][:n]
