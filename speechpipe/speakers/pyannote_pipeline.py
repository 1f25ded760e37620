"""A user's own pyannote.audio pipeline directory (``config.yaml`` + checkpoints), loaded offline."""

from __future__ import annotations

import os
from pathlib import Path

from pyannote.core import Annotation

from speechpipe.records import SAMPLE_RATE, AudioData, Utterance
from speechpipe.speakers.base import DiarizationError, as_audio


class PyannoteDiarizer:
    """A local pyannote.audio pipeline directory (``config.yaml`` + model checkpoints)."""

    def __init__(self, pipeline_dir: str | os.PathLike, device: str = "cpu"):
        from speechpipe import offline

        offline.enforce_env()  # telemetry off, hub offline, before pyannote is imported
        path = Path(pipeline_dir)
        if not (path / "config.yaml").is_file():
            raise DiarizationError(f"{path}: not a pyannote pipeline directory (no config.yaml)")
        try:
            from pyannote.audio import Pipeline

            pipe = Pipeline.from_pretrained(path)
        except Exception as e:  # noqa: BLE001 - one clear line for the user
            raise DiarizationError(f"{path}: cannot load pyannote pipeline: {type(e).__name__}: {e}") from e
        if pipe is None:
            raise DiarizationError(f"{path}: cannot load pyannote pipeline")
        import torch

        pipe.to(torch.device(device))
        self.pipeline = pipe
        self.name = f"pyannote:{path.name}"

    def diarize(self, audio, speech_probs=None) -> Annotation:
        import torch

        audio = as_audio(audio)
        out = self.pipeline({"waveform": torch.from_numpy(audio.mono[None, :].copy()), "sample_rate": SAMPLE_RATE,
                             "uri": Path(audio.path).stem})
        # pyannote.audio 4 returns DiarizeOutput; 3.x an Annotation
        ann = getattr(out, "exclusive_speaker_diarization", None) or getattr(out, "speaker_diarization", out)
        return ann

    def assign(self, audio: AudioData, utterances: list[Utterance], counsellor_channel: str = "auto",
               speech_probs=None):
        """Old entry point, kept for callers: the pipeline's shared word and role step on this diariser."""
        from speechpipe.speakers.assign import assign_words

        utts, _, roles = assign_words(self, audio, utterances, counsellor_channel, speech_probs)
        return utts, roles
