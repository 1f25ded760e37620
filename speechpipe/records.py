"""Typed records that flow one way through the pipeline.

``AudioData`` (decoded audio) → ``Utterance``/``Word`` (ASR, diarisation) →
``Event`` (prosody) → ``CallResult`` (tagger, summary) → writers.

``CallResult.to_dict`` produces exactly the call JSON of ``output-contract.md``
(``schema: speechpipe.call/1``); ``CallResult.from_dict`` reads it back, so
every later tool (report, exports, batch tables) can start from the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechpipe.summary import CallSummary, as_summary
from speechpipe.vocabulary import ACTS, INTONATIONS, PHASES, SPEAKERS  # noqa: F401  (re-exported)

SCHEMA = "speechpipe.call/1"
SAMPLE_RATE = 16000  # every stage works on 16 kHz float32


@dataclass
class AudioData:
    """Decoded audio, resampled once to 16 kHz float32.

    ``samples`` has shape ``(channels, n)`` with 1 or 2 channels kept apart,
    because stereo call recordings put each party on its own channel.
    """

    path: str
    samples: np.ndarray
    orig_sample_rate: int
    sample_rate: int = SAMPLE_RATE
    # set by speechpipe.audio.layout: mono | two_party | duplicated | one_silent; a duplicated or
    # one-silent stereo file is processed as mono, and ``source_channels`` keeps the file's count
    channel_layout: str | None = None
    source_channels: int | None = None
    layout_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def mono(self) -> np.ndarray:
        """Down-mix (mean of channels) as a 1-D float32 array."""
        if self.channels == 1:
            return self.samples[0]
        return self.samples.mean(axis=0).astype(np.float32)

    def info(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "duration": round(self.duration, 3),
            "sample_rate": self.orig_sample_rate,
            "channels": self.source_channels or self.channels,
        }
        if self.channel_layout is not None:
            out["channel_layout"] = self.channel_layout
            if self.layout_stats:
                out["channel_layout_stats"] = self.layout_stats
        return out


@dataclass
class Word:
    text: str
    start: float
    end: float
    prob: float = 1.0


@dataclass(slots=True)
class Utterance:
    """One speaker's stretch of speech.

    ``channel`` is the source channel (stereo) and ``cluster`` the diariser's
    anonymous label (mono); both are kept for provenance, ``speaker`` is the role.
    ``transcribed`` is False for a stretch of a speaker's turn in which the
    recogniser wrote no word (a «mm» Whisper left out): it is kept, with empty
    text, so speech is never dropped. The JSON carries ``"transcribed": false``
    only on those (absent means true, so earlier outputs read back unchanged).
    """

    speaker: str
    start: float | None
    end: float | None
    text: str
    words: list[Word] = field(default_factory=list)
    acts: list[str] = field(default_factory=list)
    phase: str | None = None
    intonation: str | None = None
    pitch_change_st: float | None = None
    prosody: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)
    channel: int | None = None
    cluster: str | None = None
    act_confidence: dict[str, float] = field(default_factory=dict)  # act → calibrated probability (tagger-v3)
    transcribed: bool = True


@dataclass
class Turn:
    """A stretch of one speaker's speech found in the audio (channel VAD or diariser), words or not.

    Turns may overlap (both parties talking); utterances hang on them. ``channel``
    (stereo) or ``cluster`` (mono diariser label) says where it came from.
    """

    speaker: str
    start: float
    end: float
    channel: int | None = None
    cluster: str | None = None
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"speaker": self.speaker, "start": _round(self.start), "end": _round(self.end)}
        if self.channel is not None:
            d["channel"] = self.channel
        if self.cluster is not None:
            d["cluster"] = self.cluster
        if self.confidence is not None:
            d["confidence"] = _round(self.confidence)
        return d


@dataclass
class Event:
    type: str
    speaker: str
    start: float
    end: float
    heavy: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _round(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


@dataclass
class CallResult:
    call_id: str
    utterances: list[Utterance]
    audio: dict[str, Any] | None = None
    models: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    summary: CallSummary = field(default_factory=CallSummary)  # a dict is accepted and converted
    roles: dict[str, Any] = field(default_factory=dict)
    redaction: dict[str, Any] | None = None
    turns: list[Turn] = field(default_factory=list)
    schema: str = SCHEMA

    def __post_init__(self) -> None:
        self.summary = as_summary(self.summary)

    def __setattr__(self, name: str, value: Any) -> None:
        # `result.summary = {...}` (as older code does) still gives a typed summary
        object.__setattr__(self, name, as_summary(value) if name == "summary" else value)

    def to_dict(self) -> dict[str, Any]:
        utts = []
        for u in self.utterances:
            d = {
                "speaker": u.speaker,
                "start": _round(u.start),
                "end": _round(u.end),
                "text": u.text,
                "words": [
                    {"text": w.text, "start": _round(w.start), "end": _round(w.end), "prob": _round(w.prob)}
                    for w in u.words
                ],
                "acts": list(u.acts),
                "phase": u.phase,
                "intonation": u.intonation,
                "pitch_change_st": _round(u.pitch_change_st, 2),
                "prosody": u.prosody,
                "evidence": u.evidence,
                "act_confidence": u.act_confidence,
            }
            if u.channel is not None:
                d["channel"] = u.channel
            if u.cluster is not None:
                d["cluster"] = u.cluster
            if not u.transcribed:
                d["transcribed"] = False
            utts.append(d)
        out: dict[str, Any] = {
            "schema": self.schema,
            "call_id": self.call_id,
            "audio": self.audio,
            "models": self.models,
            "utterances": utts,
            **({"turns": [t.to_dict() for t in self.turns]} if self.turns else {}),
            "events": [
                {"type": e.type, "speaker": e.speaker, "start": _round(e.start), "end": _round(e.end),
                 "heavy": e.heavy, **e.extra}
                for e in self.events
            ],
            "summary": self.summary.to_dict(),
        }
        if self.roles:
            out["roles"] = self.roles
        if self.redaction is not None:
            out["redaction"] = self.redaction
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CallResult":
        utts = []
        for u in d.get("utterances", []):
            utts.append(
                Utterance(
                    speaker=u.get("speaker", "other"),
                    start=u.get("start"),
                    end=u.get("end"),
                    text=u.get("text", ""),
                    words=[Word(w["text"], w["start"], w["end"], w.get("prob", 1.0)) for w in u.get("words") or []],
                    acts=list(u.get("acts") or []),
                    phase=u.get("phase"),
                    intonation=u.get("intonation"),
                    pitch_change_st=u.get("pitch_change_st"),
                    prosody=dict(u.get("prosody") or {}),
                    evidence=dict(u.get("evidence") or {}),
                    act_confidence=dict(u.get("act_confidence") or {}),  # absent in JSON written before tagger-v3
                    channel=u.get("channel"),
                    cluster=u.get("cluster"),
                    transcribed=bool(u.get("transcribed", True)),
                )
            )
        events = []
        for e in d.get("events", []):
            extra = {k: v for k, v in e.items() if k not in {"type", "speaker", "start", "end", "heavy"}}
            events.append(
                Event(e["type"], e.get("speaker", "other"), e["start"], e["end"], bool(e.get("heavy")), extra)
            )
        return cls(
            call_id=d["call_id"],
            utterances=utts,
            audio=d.get("audio"),
            models=dict(d.get("models") or {}),
            events=events,
            summary=CallSummary.from_dict(d.get("summary")),
            roles=dict(d.get("roles") or {}),
            redaction=d.get("redaction"),
            turns=[Turn(t["speaker"], t["start"], t["end"], t.get("channel"), t.get("cluster"), t.get("confidence"))
                   for t in d.get("turns") or []],
            schema=d.get("schema", SCHEMA),
        )


def call_id_for(path: str | Path) -> str:
    """Default call id, as the output contract says: the file stem."""
    return Path(path).stem
