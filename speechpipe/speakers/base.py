"""What every diariser shares: its interface, its error, channel names, audio coercion."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from pyannote.core import Annotation

from speechpipe.records import SAMPLE_RATE, AudioData

CHANNEL_NAMES = ("left", "right")


class DiarizationError(Exception):
    """A diariser that cannot be built or run (bad pipeline directory, ...)."""


class Diarizer(Protocol):
    """Who spoke when. ``assign`` also puts ASR utterances on speakers and roles."""

    name: str

    def diarize(self, audio, speech_probs=None) -> Annotation:
        """Speaker turns of the audio alone (labels are anonymous clusters or channels)."""
        ...

    def assign(self, audio: AudioData, utterances: list, counsellor_channel: str = "auto", speech_probs=None):
        """``(utterances split and labelled with roles, roles record)``."""
        ...


def as_audio(audio) -> AudioData:
    """An :class:`AudioData` from itself or a bare 16 kHz array."""
    if isinstance(audio, AudioData):
        return audio
    x = np.asarray(audio, dtype=np.float32)
    return AudioData(path="<array>", samples=x[None, :] if x.ndim == 1 else x, orig_sample_rate=SAMPLE_RATE)
