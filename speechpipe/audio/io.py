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

from speechpipe.records import SAMPLE_RATE, AudioData

MIN_DURATION = 0.3  # seconds; shorter clips hold no usable speech
MAX_CHANNELS = 2


class AudioError(Exception):
    """A file that cannot be used as a call recording."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep path and reason when pickled (Ray workers, multiprocessing)
        return (type(self), (self.path, self.reason))


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


def _only_id3(path: str) -> bool:
    """True for a file that is an ID3v2 tag and nothing (or only padding) after it."""
    with open(path, "rb") as f:
        head = f.read(10)
        if len(head) < 10 or head[:3] != b"ID3":
            return False
        size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        f.seek(10 + size)
        return not f.read(4096).strip(b"\x00")


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


# Long recordings are recognised in blocks: faster-whisper builds the log-mel
# spectrogram of the whole array at once (~0.7 MB per second of audio with its
# STFT intermediates), so a 2-hour call would need ~5 GB. Blocks cut at the
# quietest point keep peak memory flat whatever the call length.
BLOCK_S = 300.0
BLOCK_SEARCH_S = 30.0


def block_bounds(
    x: np.ndarray, sr: int = SAMPLE_RATE, max_s: float = BLOCK_S, search_s: float = BLOCK_SEARCH_S
) -> list[int]:
    """Sample indices that cut ``x`` into blocks of at most ``max_s`` seconds.

    Each cut lies at the quietest 100 ms frame of the last ``search_s``
    seconds before the limit, so words are not split.

    Examples
    --------
    >>> block_bounds(np.zeros(16000 * 10, np.float32))
    [0, 160000]
    >>> len(block_bounds(np.ones(16000 * 700, np.float32))) - 1
    3
    """
    n = len(x)
    limit, search, hop = int(max_s * sr), int(search_s * sr), sr // 10
    bounds, start = [0], 0
    while n - start > limit:
        lo = start + limit - search
        seg = np.asarray(x[lo : start + limit], dtype=np.float32)
        m = len(seg) // hop
        energy = np.square(seg[: m * hop].reshape(m, hop)).mean(axis=1)
        start = lo + int(np.argmin(energy)) * hop + hop // 2
        bounds.append(start)
    bounds.append(n)
    return bounds


def _friendly(detail: str, path: str) -> str:
    """Short reason from a decoder message (without the path it repeats)."""
    d = detail.replace(f"'{path}'", "").replace(path, "").strip(" :.")
    low = d.lower()
    if "format not recognised" in low or "invalid data found" in low:
        return "not a recognised audio format (corrupt, or not audio despite its extension)"
    if "no 'data' chunk" in low or "psf_fseek" in low or "end of file" in low:
        return f"truncated or corrupt audio file ({d[:120]})"
    return f"cannot decode audio ({d[:160]})"


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
    >>> audio = load_audio("demo/demo-call.flac")  # the bundled demo call (run from the repository root)
    >>> audio.channels, audio.sample_rate, round(audio.duration)
    (2, 16000, 37)
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
            detail = (
                str(first_error or e).strip().splitlines()[0] if str(first_error or e).strip() else type(e).__name__
            )
            if _only_id3(p):
                raise AudioError(p, "MP3 with an ID3 tag but no audio frames") from e
            raise AudioError(p, _friendly(detail, p)) from e

    if data.shape[0] > MAX_CHANNELS:
        raise AudioError(p, f"{data.shape[0]} channels; expected mono or stereo")
    if data.shape[1] == 0:
        raise AudioError(p, "no audio samples (empty or truncated file)")
    if not np.isfinite(data).all():
        raise AudioError(p, "contains NaN or infinite samples")
    peak = float(np.abs(data).max())
    if peak > 1.0:
        # Float files may hold unnormalised samples; scale into [-1, 1] as PCM would be.
        data /= peak
    duration = data.shape[1] / sr
    if duration < MIN_DURATION:
        raise AudioError(p, f"too short ({duration:.2f} s < {MIN_DURATION} s)")
    return AudioData(path=p, samples=resample(data, sr), orig_sample_rate=int(sr))
