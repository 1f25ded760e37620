"""The call pipeline: audio → ASR → speakers/roles → prosody → tagger → outputs.

Each stage sits behind a small interface and is built once per
:class:`Pipeline` (models load once per worker, never per file).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .asr import ASRConfig
from .records import AudioData, CallResult, Utterance, call_id_for


@dataclass
class PipelineConfig:
    asr: ASRConfig = field(default_factory=ASRConfig)
    diarizer: str = "auto"  # auto | stereo | embedded | pyannote
    pyannote_pipeline: str | None = None
    counsellor_channel: str = "auto"  # left | right | auto
    prosody: bool = True
    tag: bool = True
    redact: bool = False

    def describe(self) -> dict:
        """Settings that change outputs; stored with every result (and batch manifests)."""
        a = self.asr
        return {
            "asr_model": a.model or "embedded:whisper-base",
            "device": a.device,
            "compute_type": a.compute_type,
            "language": a.language,
            "beam_size": a.beam_size,
            "initial_prompt": a.initial_prompt,
            "vad": [a.vad_threshold, a.vad_min_silence_ms, a.vad_speech_pad_ms],
            "diarizer": self.diarizer,
            "pyannote_pipeline": self.pyannote_pipeline,
            "counsellor_channel": self.counsellor_channel,
            "prosody": self.prosody,
            "tag": self.tag,
            "redact": self.redact,
        }


class Pipeline:
    """Process call recordings into :class:`CallResult` records.

    Examples
    --------
    >>> pipe = Pipeline(PipelineConfig())           # doctest: +SKIP
    >>> result = pipe.process("demo/demo-call.flac")  # doctest: +SKIP
    >>> result.utterances[0].speaker                  # doctest: +SKIP
    'counsellor'
    """

    def __init__(self, config: PipelineConfig | None = None):
        self.config = config or PipelineConfig()
        self._asr = None
        self._diarizer = None
        self._prosody = None
        self._tagger = None

    # Stages are built lazily so `tag`-only runs never load Whisper.
    @property
    def asr(self):
        if self._asr is None:
            from .asr import WhisperTranscriber

            self._asr = WhisperTranscriber(self.config.asr)
        return self._asr

    @property
    def diarizer(self):
        if self._diarizer is None:
            from .diarization import build_diarizer

            self._diarizer = build_diarizer(self.config)
        return self._diarizer

    @property
    def prosody(self):
        if self._prosody is None:
            from .prosody import ProsodyAnalyzer

            self._prosody = ProsodyAnalyzer()
        return self._prosody

    @property
    def tagger(self):
        if self._tagger is None:
            from .tagger import load_tagger

            self._tagger = load_tagger()
        return self._tagger

    def process(
        self,
        path: str | Path,
        call_id: str | None = None,
        progress: Callable[[float, float], None] | None = None,
        counsellor_channel: str | None = None,
    ) -> CallResult:
        """Run every stage on one recording.

        ``progress(done_seconds, total_seconds)`` is called during recognition.
        ``counsellor_channel`` overrides the configured one (per-call metadata).
        """
        from .audio import load_audio

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        audio = path if isinstance(path, AudioData) else load_audio(path)  # batch engines pre-decode
        timings["decode"] = time.perf_counter() - t0

        t = time.perf_counter()
        utterances: list[Utterance] = []
        total = audio.duration * audio.channels
        for ch in range(audio.channels):
            base = ch * audio.duration

            def _p(sec, base=base):
                if progress:
                    progress(min(total, base + sec), total)

            for u in self.asr.transcribe(audio.samples[ch], progress=_p):
                if audio.channels == 2:
                    u.channel = ch
                utterances.append(u)
        utterances.sort(key=lambda u: (u.start, u.end))
        timings["asr"] = time.perf_counter() - t

        t = time.perf_counter()
        utterances, roles = self.diarizer.assign(
            audio, utterances, counsellor_channel=counsellor_channel or self.config.counsellor_channel
        )
        timings["diarization"] = time.perf_counter() - t

        events = []
        if self.config.prosody:
            t = time.perf_counter()
            events = self.prosody.analyse(audio, utterances)
            timings["prosody"] = time.perf_counter() - t

        summary: dict = {}
        if self.config.tag:
            t = time.perf_counter()
            summary = self.tagger.tag_call(utterances)
            timings["tagger"] = time.perf_counter() - t
        # Intonation belongs to backchannels only (output contract).
        for u in utterances:
            if "backchannel" not in u.acts:
                u.intonation = None
                u.pitch_change_st = None
        if self.config.prosody and hasattr(self.prosody, "summarise"):
            summary.update(self.prosody.summarise(utterances, events))

        result = CallResult(
            call_id=call_id or call_id_for(audio.path),
            utterances=utterances,
            audio=audio.info(),
            models={
                "asr": self.asr.name,
                "diarizer": getattr(self.diarizer, "name", None),
                "tagger": getattr(self._tagger, "name", None),
                "prosody": getattr(self._prosody, "name", None),
            },
            events=events,
            summary=summary,
            roles=roles,
        )
        if self.config.redact:
            from .redact import redact_call

            result = redact_call(result)
        timings["total"] = time.perf_counter() - t0
        result.models["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        return result
