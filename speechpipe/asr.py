"""Speech recognition: faster-whisper (CTranslate2), Norwegian, word timestamps.

Models are only ever loaded from local directories: the embedded multilingual
base model (assembled from two PyPI data packages by :mod:`speechpipe.models`)
or any CTranslate2 Whisper directory the user passes (e.g. NB-Whisper).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .records import SAMPLE_RATE, Utterance, Word

# NAV vocabulary for `--nav-prompt`. Not the default: on the NPSC clips the prompt made
# Whisper base loop on a 3 s clip (WER 46.8 vs 0.6 without), see tests/test_asr.py.
NAV_PROMPT = (
    "Samtale med NAV kontaktsenter. NAV, nav.no, dagpenger, sykepenger, foreldrepenger, "
    "arbeidsavklaringspenger, AAP, meldekort, uføretrygd, barnetrygd, kontantstøtte, "
    "alderspensjon, veileder, Ja. Mm. Ikke sant."
)


class ASRError(Exception):
    pass


@dataclass
class ASRConfig:
    model: str | None = None  # local CTranslate2 directory; None → embedded base model
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str | None = None  # None → int8 on CPU, float16 on GPU
    language: str = "no"
    beam_size: int = 5
    # Greedy-only by default: temperature fallback makes Whisper loop on bad audio
    # (measured ~1.5× real time on the simulated calls) for no accuracy gain.
    temperature: tuple[float, ...] = (0.0,)
    initial_prompt: str | None = None
    vad_threshold: float = 0.5
    vad_min_silence_ms: int = 500
    vad_speech_pad_ms: int = 200
    cpu_threads: int = 0  # 0 → CTranslate2 default (all cores)
    batch_size: int = 16  # used by the batched GPU path
    extra: dict = field(default_factory=dict)


class Transcriber(Protocol):
    name: str

    def transcribe(self, samples: np.ndarray) -> list[Utterance]:
        """Recognise 16 kHz mono float32 audio into timed utterances with words."""


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when CTranslate2 sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:
        return "cpu"


def check_model_dir(path: str) -> str:
    """Fail clearly unless ``path`` is a CTranslate2 Whisper model directory."""
    if not os.path.isdir(path):
        raise ASRError(
            f"ASR model directory not found: {path} (pass a local CTranslate2 Whisper "
            "directory; nothing is downloaded)"
        )
    missing = [f for f in ("model.bin", "config.json") if not os.path.exists(os.path.join(path, f))]
    if missing:
        raise ASRError(f"{path} is not a CTranslate2 Whisper model: missing {', '.join(missing)}")
    if not any(os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "vocabulary.txt", "vocabulary.json")):
        raise ASRError(f"{path} is not a CTranslate2 Whisper model: no tokenizer.json or vocabulary file")
    return path


class WhisperTranscriber:
    """faster-whisper with Silero VAD and word timestamps.

    On CUDA it uses :class:`faster_whisper.BatchedInferencePipeline`, which
    decodes VAD chunks in parallel; on CPU the sequential decoder is faster.
    """

    def __init__(self, config: ASRConfig | None = None):
        from .models import ModelError, embedded_whisper_dir

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.config = cfg = config or ASRConfig()
        try:
            model_dir = check_model_dir(cfg.model) if cfg.model else embedded_whisper_dir()
        except ModelError as e:
            raise ASRError(str(e)) from e
        self.device = resolve_device(cfg.device)
        self.compute_type = cfg.compute_type or ("float16" if self.device == "cuda" else "int8")
        self.model = WhisperModel(
            model_dir,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=cfg.cpu_threads,
            local_files_only=True,
        )
        self.batched = BatchedInferencePipeline(self.model) if self.device == "cuda" else None
        self.model_dir = model_dir
        self.name = f"faster-whisper:{os.path.basename(os.path.normpath(model_dir))}:{self.device}:{self.compute_type}"

    def _options(self) -> dict:
        cfg = self.config
        return dict(
            language=cfg.language,
            beam_size=cfg.beam_size,
            temperature=list(cfg.temperature),
            initial_prompt=cfg.initial_prompt,
            word_timestamps=True,
            condition_on_previous_text=False,  # stops runaway repetition loops
            vad_filter=True,
            vad_parameters=dict(
                threshold=cfg.vad_threshold,
                min_silence_duration_ms=cfg.vad_min_silence_ms,
                speech_pad_ms=cfg.vad_speech_pad_ms,
            ),
            **cfg.extra,
        )

    def transcribe(self, samples: np.ndarray, progress=None) -> list[Utterance]:
        """Recognise one channel.

        Parameters
        ----------
        samples : np.ndarray
            1-D float32 audio at 16 kHz.
        progress : callable, optional
            Called with seconds of audio done, for progress bars.
        """
        from .audio import block_bounds

        bounds = block_bounds(samples)
        if len(bounds) > 2:  # long call: recognise block by block so memory stays flat
            out = []
            for a, b in zip(bounds[:-1], bounds[1:]):
                off = a / SAMPLE_RATE
                p = None if progress is None else (lambda s, off=off: progress(off + s))
                for u in self.transcribe(samples[a:b], progress=p):
                    u.start, u.end = u.start + off, u.end + off
                    for w in u.words:
                        w.start, w.end = w.start + off, w.end + off
                    out.append(u)
            return out
        opts = self._options()
        if self.batched is not None:
            opts.pop("condition_on_previous_text")
            segments, _info = self.batched.transcribe(samples, batch_size=self.config.batch_size, **opts)
        else:
            segments, _info = self.model.transcribe(samples, **opts)
        out = []
        for seg in segments:  # a generator: decoding happens while we iterate
            words = [Word(w.word.strip(), float(w.start), float(w.end), float(w.probability)) for w in seg.words or []]
            words = [w for w in words if w.text]
            text = seg.text.strip()
            if not text:
                continue
            start = words[0].start if words else float(seg.start)
            end = words[-1].end if words else float(seg.end)
            out.append(Utterance(speaker="unknown", start=start, end=end, text=text, words=words))
            if progress is not None:
                progress(float(seg.end))
        if progress is not None:
            progress(len(samples) / SAMPLE_RATE)
        return out
