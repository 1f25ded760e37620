"""Speaker embeddings from the GE2E encoder that ships inside ``resemblyzer``.

No download: the 17 MB weights are part of the PyPI package. Audio is
embedded window by window, region by region, so memory stays flat however
long the call is.
"""

from __future__ import annotations

import functools

import numpy as np

from speechpipe.records import SAMPLE_RATE

MEL_HOP_S = 0.01  # resemblyzer's mel frames are 10 ms apart
TARGET_DBFS = -30.0  # the level resemblyzer's encoder was trained on


@functools.lru_cache(maxsize=2)
def _encoder(device: str = "cpu"):
    from resemblyzer import VoiceEncoder

    return VoiceEncoder(device=device, verbose=False)


def call_gain(samples: np.ndarray, regions: list[tuple[float, float]]) -> float:
    """Gain that brings the speech of a call to -30 dBFS (resemblyzer's level).

    Uses one gain per call, not per window, so loudness differences between
    speakers stay in the features.

    Examples
    --------
    >>> round(call_gain(np.full(16000, 0.01, np.float32), [(0.0, 1.0)]), 2)
    3.16
    """
    # Sum region by region: concatenating a 2-hour call's speech would copy ~0.5 GB.
    spans = [(int(s * SAMPLE_RATE), int(e * SAMPLE_RATE)) for s, e in regions] or [(0, len(samples))]
    energy = sum(float(np.dot(samples[a:b].astype(np.float64), samples[a:b])) for a, b in spans)
    count = sum(max(0, min(b, len(samples)) - a) for a, b in spans)
    rms = np.sqrt(energy / max(count, 1) + 1e-12)
    return float(10 ** (TARGET_DBFS / 20) / rms)


def mel_frames(samples: np.ndarray) -> np.ndarray:
    """resemblyzer's (not log) 40-band mel spectrogram, ``(frames, 40)``, 10 ms hop."""
    from resemblyzer.audio import wav_to_mel_spectrogram

    return wav_to_mel_spectrogram(np.asarray(samples, dtype=np.float32))


class ResemblyzerEmbedder:
    """Windowed GE2E speaker embeddings (256-d, unit norm).

    Examples
    --------
    >>> emb = ResemblyzerEmbedder()                                   # doctest: +SKIP
    >>> t, e = emb.embed_windows(samples, [(0.0, 3.0)], win=1.0, hop=0.25)  # doctest: +SKIP
    >>> e.shape                                                        # doctest: +SKIP
    (9, 256)
    """

    name = "resemblyzer-ge2e"
    dim = 256

    def __init__(self, device: str = "cpu", batch: int = 64):
        self.device = device
        self.batch = batch

    def _forward(self, mels: list[np.ndarray]) -> np.ndarray:
        import torch

        enc = _encoder(self.device)
        out = []
        # Windows of equal length batch together; sort by length to keep batches dense.
        order = np.argsort([len(m) for m in mels], kind="stable")
        res = np.zeros((len(mels), self.dim), np.float32)
        i = 0
        with torch.inference_mode():
            while i < len(order):
                n = len(mels[order[i]])
                j = i
                while j < len(order) and j - i < self.batch and len(mels[order[j]]) == n:
                    j += 1
                x = torch.from_numpy(np.stack([mels[k] for k in order[i:j]])).to(enc.device)
                res[order[i:j]] = enc(x).cpu().numpy()
                i = j
        del out
        return res

    def embed_segments(self, samples: np.ndarray, segments: list[tuple[float, float]], gain: float = 1.0,
                       max_s: float = 10.0) -> np.ndarray:
        """One embedding per ``(start, end)`` segment (long ones are capped at ``max_s``
        around their centre; very short ones are padded with their own context)."""
        mels = []
        dur = len(samples) / SAMPLE_RATE
        for s, e in segments:
            if e - s > max_s:
                c = (s + e) / 2
                s, e = c - max_s / 2, c + max_s / 2
            if e - s < 0.4:  # the encoder needs a few syllables' worth of frames
                c = (s + e) / 2
                s, e = max(0.0, c - 0.2), min(dur, c + 0.2)
            x = samples[int(s * SAMPLE_RATE): int(e * SAMPLE_RATE)] * gain
            mels.append(mel_frames(x))
        if not mels:
            return np.zeros((0, self.dim), np.float32)
        return self._forward(mels)

    def embed_windows(self, samples: np.ndarray, regions: list[tuple[float, float]], win: float = 1.0,
                      hop: float = 0.25, gain: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Sliding-window embeddings inside speech regions.

        Returns ``(spans, embeddings)``: ``spans`` is ``(n, 2)`` window start/end
        seconds. A region shorter than ``win`` gets one window covering it.
        Each region is featurised on its own, so memory is bounded by the
        longest region (a few seconds to a minute), not by the call.
        """
        nwin, nhop = int(round(win / MEL_HOP_S)), int(round(hop / MEL_HOP_S))
        spans, embs = [], []
        pending_m, pending_s = [], []
        for s, e in regions:
            x = samples[int(s * SAMPLE_RATE): int(e * SAMPLE_RATE)] * gain
            if len(x) < 400:
                continue
            m = mel_frames(x)
            if len(m) <= nwin:
                pending_m.append(m)
                pending_s.append((s, e))
            else:
                starts = list(range(0, len(m) - nwin + 1, nhop))
                if starts[-1] != len(m) - nwin:
                    starts.append(len(m) - nwin)
                for k in starts:
                    pending_m.append(m[k: k + nwin])
                    pending_s.append((s + k * MEL_HOP_S, s + (k + nwin) * MEL_HOP_S))
            if len(pending_m) >= 512:
                embs.append(self._forward(pending_m))
                spans.extend(pending_s)
                pending_m, pending_s = [], []
        if pending_m:
            embs.append(self._forward(pending_m))
            spans.extend(pending_s)
        if not embs:
            return np.zeros((0, 2)), np.zeros((0, self.dim), np.float32)
        return np.asarray(spans, dtype=np.float64), np.concatenate(embs)
