"""Audio input: decode any common call-recording format once, resample once.

WAV (PCM, G.711 μ-law/A-law, float), FLAC and OGG go through libsndfile
(``soundfile``); MP3 and anything libsndfile refuses go through FFmpeg
(``PyAV``). The result is 16 kHz float32 with stereo channels kept apart.
Every failure is an :class:`AudioError` that names the file and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .records import SAMPLE_RATE, AudioData

MIN_DURATION = 0.3  # seconds; shorter clips hold no usable speech
MAX_CHANNELS = 2


class AudioError(Exception):
    """A file that cannot be used as a call recording."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _decode_soundfile(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return data.T, int(sr)  # (channels, n)


def _decode_av(path: str) -> tuple[np.ndarray, int]:
    import av

    with av.open(path, metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioError(path, "no audio stream in file")
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels or stream.channels
        if channels > MAX_CHANNELS:
            raise AudioError(path, f"{channels} channels; expected mono or stereo")
        sr = stream.codec_context.sample_rate or stream.sample_rate
        # Ask FFmpeg for planar float at the native rate: resampling happens once, in soxr.
        layout = "stereo" if channels == 2 else "mono"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sr)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        return np.zeros((channels or 1, 0), np.float32), int(sr or SAMPLE_RATE)
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), int(sr)


def resample(x: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample ``(channels, n)`` float32 audio with soxr (high quality).

    Examples
    --------
    >>> y = resample(np.zeros((1, 8000), np.float32), 8000)
    >>> y.shape
    (1, 16000)
    """
    if sr == target:
        return np.ascontiguousarray(x, dtype=np.float32)
    import soxr

    y = soxr.resample(x.T, sr, target, quality="HQ")
    y = y.reshape(-1, x.shape[0]) if y.ndim == 1 else y
    return np.ascontiguousarray(y.T, dtype=np.float32)


def load_audio(path: str | os.PathLike) -> AudioData:
    """Decode, validate and resample one recording to 16 kHz.

    Parameters
    ----------
    path : str or PathLike
        Any WAV/FLAC/OGG/MP3 file, 8–96 kHz, mono or stereo.

    Returns
    -------
    AudioData
        ``samples`` of shape ``(channels, n)`` at 16 kHz float32.

    Raises
    ------
    AudioError
        Missing, unreadable, empty, too short, more than two channels, or
        containing NaN/inf samples. The message names the file.

    Examples
    --------
    >>> audio = load_audio("demo/demo-call.wav")  # doctest: +SKIP
    >>> audio.channels, audio.sample_rate
    (2, 16000)
    """
    p = str(path)
    if not os.path.exists(p):
        reason = "dangling symbolic link" if os.path.islink(p) else "file not found"
        raise AudioError(p, reason)
    if os.path.isdir(p):
        raise AudioError(p, "is a directory, not an audio file")
    if os.path.getsize(p) == 0:
        raise AudioError(p, "empty file (0 bytes)")

    data = sr = None
    first_error = None
    if Path(p).suffix.lower() != ".mp3":
        try:
            data, sr = _decode_soundfile(p)
        except Exception as e:  # libsndfile refuses → try FFmpeg
            first_error = e
    if data is None:
        try:
            data, sr = _decode_av(p)
        except AudioError:
            raise
        except Exception as e:
            detail = str(first_error or e).strip().splitlines()[0] if str(first_error or e).strip() else type(e).__name__
            raise AudioError(p, f"cannot decode audio ({detail[:160]})") from e

    if data.shape[0] > MAX_CHANNELS:
        raise AudioError(p, f"{data.shape[0]} channels; expected mono or stereo")
    if data.shape[1] == 0:
        raise AudioError(p, "no audio samples (empty or truncated file)")
    if not np.isfinite(data).all():
        raise AudioError(p, "contains NaN or infinite samples")
    duration = data.shape[1] / sr
    if duration < MIN_DURATION:
        raise AudioError(p, f"too short ({duration:.2f} s < {MIN_DURATION} s)")
    return AudioData(path=p, samples=resample(data, sr), orig_sample_rate=int(sr))
