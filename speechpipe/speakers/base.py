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
    """Who spoke when, from the audio alone. Words, turns and roles are the pipeline's
    (:func:`speechpipe.speakers.assign.assign_words`), written once for every diariser."""

    name: str

    def diarize(self, audio, speech_probs=None) -> Annotation:
        """Speaker turns (overlap allowed; labels are anonymous clusters, or ``left``/``right``
        channels for stereo). ``speech_probs``: Silero probabilities already computed (the mono
        array, or one per channel for stereo), or None to compute them."""
        ...


def as_audio(audio) -> AudioData:
    """An :class:`AudioData` from itself or a bare 16 kHz array."""
    if isinstance(audio, AudioData):
        return audio
    x = np.asarray(audio, dtype=np.float32)
    return AudioData(path="<array>", samples=x[None, :] if x.ndim == 1 else x, orig_sample_rate=SAMPLE_RATE)


def label_of(u) -> str | None:
    """The diarisation label an utterance hangs on: its channel name (stereo) or cluster (mono).

    A second voice on a stereo channel is labelled ``<channel>+1`` (``speakers.channel_voices``).
    """
    if u.channel is not None:
        name = CHANNEL_NAMES[u.channel]
        return u.cluster if u.cluster and u.cluster.startswith(name + "+") else name
    return u.cluster


def channel_of(label: str) -> int | None:
    """The channel index of a stereo label (``left``, ``right``, ``right+1`` …), or None.

    >>> channel_of("right+1"), channel_of("left"), channel_of("SPEAKER_00")
    (1, 0, None)
    """
    name = str(label).split("+", 1)[0]
    return CHANNEL_NAMES.index(name) if name in CHANNEL_NAMES else None
