"""Stereo calls: one party per channel, crosstalk suppressed, roles from evidence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyannote.core import Annotation

from speechpipe.audio.vad import FRAME, probabilities_to_regions, speech_probabilities
from speechpipe.records import SAMPLE_RATE, AudioData, Utterance
from speechpipe.speakers.assign import _copy_utt, _regions_to_annotation, _turns, split_by_speaker
from speechpipe.speakers.base import CHANNEL_NAMES, DiarizationError, as_audio
from speechpipe.speakers.roles import assign_roles


def frame_levels_db(x: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """RMS level in dB per ``frame`` samples (aligned with the Silero frames).

    Examples
    --------
    >>> frame_levels_db(np.full(1024, 0.1, np.float32)).round(1).tolist()
    [-20.0, -20.0]
    """
    x = np.pad(np.asarray(x, np.float32), (0, (-len(x)) % frame)).reshape(-1, frame)
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2, axis=1) + 1e-10)


@dataclass
class StereoConfig:
    # Silero's default 0.5 misses 27 % of the robotic sim-call speech; 0.15 misses ~1 %
    vad_threshold: float = 0.15
    min_silence_s: float = 0.25
    pad_s: float = 0.1
    # a channel more than this far below the other in a frame only hears the other's leak
    crosstalk_db: float = 12.0
    # a second voice on one channel (a relative on the caller's phone): speakers/channel_voices.py
    split_voices: bool = True


class StereoDiarizer:
    """Stereo calls: one party per channel, crosstalk suppressed, roles from evidence."""

    name = "stereo-channels"

    def __init__(self, config: StereoConfig | None = None, device: str = "auto"):
        self.config = config or StereoConfig()
        self.device = device
        self._neural = None
        self.voices: list[dict] = []  # what the last diarize() measured per channel

    @property
    def neural(self):
        if self._neural is None:
            from speechpipe.speakers.neural import NeuralDiarizer

            self._neural = NeuralDiarizer(device=self.device)
        return self._neural

    def _own_speech(self, audio: AudioData, speech_probs=None) -> tuple[list[np.ndarray], np.ndarray]:
        """Per-channel frame masks of the channel's *own* speech, and the level difference (dB)."""
        cfg = self.config
        levels = [frame_levels_db(audio.samples[c]) for c in range(2)]
        n = min(len(levels[0]), len(levels[1]))
        diff = levels[0][:n] - levels[1][:n]  # >0: left louder
        masks = []
        for c in range(2):
            p = speech_probs[c] if speech_probs is not None else speech_probabilities(audio.samples[c])
            p = np.asarray(p)[:n].copy()
            dominated = (diff if c == 1 else -diff) > cfg.crosstalk_db
            p[dominated] = 0.0  # the other channel is far louder: this is its echo
            masks.append(p)
        return masks, diff

    def diarize(self, audio, speech_probs=None) -> Annotation:
        """Who spoke when, labels ``left`` / ``right`` (overlap allowed)."""
        audio = as_audio(audio)
        if audio.channels != 2:
            raise DiarizationError(f"{audio.path}: stereo diarisation needs 2 channels, got {audio.channels}")
        cfg = self.config
        masks, diff = self._own_speech(audio, speech_probs)
        ann = Annotation(uri=Path(audio.path).stem)
        self.voices = []
        for c in range(2):
            regions = probabilities_to_regions(masks[c], cfg.vad_threshold, cfg.min_silence_s, 0.1, cfg.pad_s,
                                               audio.duration)
            part = _regions_to_annotation(regions, CHANNEL_NAMES[c], Annotation(uri=ann.uri))
            if cfg.split_voices:
                from speechpipe.speakers.channel_voices import split_channel

                own = (diff if c == 0 else -diff) > -cfg.crosstalk_db
                part, info = split_channel(self.neural, audio.samples[c], own, FRAME, CHANNEL_NAMES[c], part)
                self.voices.append(info)
            ann.update(part, copy=False)
        return ann

    def drop_crosstalk(self, audio: AudioData, utterances: list[Utterance], diff: np.ndarray) -> list[Utterance]:
        """Drop words whose span is dominated by the other channel (its leak), and
        utterances left empty."""
        fs = FRAME / SAMPLE_RATE
        out = []
        for u in utterances:
            if u.channel is None:
                out.append(u)
                continue
            sign = 1.0 if u.channel == 0 else -1.0

            def own(s, e):
                a, b = int(s / fs), max(int(s / fs) + 1, int(np.ceil(e / fs)))
                d = diff[a:b] * sign
                return d.size == 0 or np.median(d) > -self.config.crosstalk_db

            if u.words:
                words = [w for w in u.words if own(w.start, w.end)]
                if not words:
                    continue
                if len(words) != len(u.words):
                    u = _copy_utt(u, words, " ".join(w.text for w in words), u.cluster, words[0].start, words[-1].end)
                out.append(u)
            elif own(u.start or 0.0, u.end or 0.0):
                out.append(u)
        return out

    def assign(self, audio: AudioData, utterances: list[Utterance], counsellor_channel: str = "auto",
               speech_probs=None):
        masks, diff = self._own_speech(audio, speech_probs)
        ann = self.diarize(audio, speech_probs=masks)  # masks are already crosstalk-free
        utterances = self.drop_crosstalk(audio, utterances, diff)
        extra = [lab for lab in ann.labels() if lab not in CHANNEL_NAMES]
        if extra:  # a channel holds a second voice: its words go to whichever voice speaks them
            utterances = self._split_extra(utterances, ann)
            ann = ann.subset(CHANNEL_NAMES)
        forced = counsellor_channel if counsellor_channel in CHANNEL_NAMES else None

        def party(u):
            return CHANNEL_NAMES[u.channel] if u.channel is not None and u.cluster not in extra else None

        decision = assign_roles(ann, _turns(utterances, party), counsellor=forced)
        if decision.counsellor is None:  # silent call: fall back to left
            decision.roles = {"left": "counsellor", "right": "caller"}
            decision.counsellor = "left"
        decision.roles.setdefault("left", "caller" if decision.counsellor == "right" else "counsellor")
        decision.roles.setdefault("right", "caller" if decision.counsellor == "left" else "counsellor")
        for u in utterances:
            u.speaker = decision.roles[party(u)] if party(u) is not None else "other"
        utterances.sort(key=lambda u: ((u.start or 0.0), (u.end or 0.0)))
        roles = {"method": "stereo-" + ("forced" if forced else "auto"), "counsellor": decision.counsellor,
                 "confidence": decision.confidence, "evidence": decision.evidence}
        if extra:
            roles["extra_voices"] = extra
        return utterances, roles

    @staticmethod
    def _split_extra(utterances: list[Utterance], ann: Annotation) -> list[Utterance]:
        """Split each channel's utterances between that channel's voices (``cluster``: the voice label)."""
        out = []
        for c, name in enumerate(CHANNEL_NAMES):
            mine = [u for u in utterances if u.channel == c]
            labels = [lab for lab in ann.labels() if lab == name or lab.startswith(name + "+")]
            out += split_by_speaker(mine, ann.subset(labels)) if len(labels) > 1 and mine else mine
        return out + [u for u in utterances if u.channel is None]
