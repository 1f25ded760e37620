"""The transcriber interface the pipeline calls (faster-whisper implements it; tests may pass their own)."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from speechpipe.records import Utterance

Speech = list[tuple[float, float]]  # speech regions, (start, end) seconds


class Transcriber(Protocol):
    """Speech to timed words. ``workers``: how many calls it can recognise at once."""

    name: str
    workers: int

    def speech_regions(self, samples: np.ndarray, probs: np.ndarray | None = None) -> Speech:
        """Where to decode: speech regions of 16 kHz mono audio (from Silero probabilities when given)."""
        ...

    def transcribe(self, samples: np.ndarray, progress: Callable[[float], None] | None = None,
                   speech: Speech | None = None) -> list[Utterance]:
        """Recognise 16 kHz mono float32 audio into timed utterances with words."""
        ...
