"""Stereo calls: one party per channel, crosstalk suppressed, roles from evidence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyannote.core import Annotation

from speechpipe.audio.acoustics import frame_levels_db, level_difference  # noqa: F401  (re-exported)
from speechpipe.audio.vad import FRAME, probabilities_to_regions, speech_probabilities
from speechpipe.records import SAMPLE_RATE, AudioData, Utterance
from speechpipe.speakers.assign import _regions_to_annotation
from speechpipe.speakers.base import CHANNEL_NAMES, DiarizationError, as_audio


@dataclass
class StereoConfig:
    # Silero's default 0.5 misses 27 % of the robotic sim-call speech; 0.15 misses ~1 %
    vad_threshold: float = 0.15
    min_silence_s: float = 0.25
    pad_s: float = 0.1
    # a channel more than this far below the other in a frame only hears the other's leak
    crosstalk_db: float = 12.0
    # Silero scores short isolated words near 0 («Ja.», «Nei?» alone on a clean channel: 7 of the 45
    # dev backchannels had no region at all) although they are 30 dB above the floor: loud stretches
    # of the channel's own (not leaked) sound count as speech too.
    loud_rescue: bool = True
    loud_below_p95_db: float = 10.0  # breaths are 15-20 dB below speech: they stay out
    loud_above_floor_db: float = 20.0
    loud_min_s: float = 0.12
    # Silero's probability decays slowly after speech: at the low threshold above, regions run on
    # into the silence after a turn (3.5 % false alarm on the stereo sim calls). Each region is
    # trimmed to where the channel's own sound is above the floor, and split at quiet gaps.
    trim_to_sound: bool = True
    sound_above_floor_db: float = 12.0
    sound_pad_s: float = 0.1  # chosen with the two below on the 6 stereo dev calls: DER 4.9 -> 1.1 %
    split_gap_s: float = 0.5
    # a second voice on one channel (a relative on the caller's phone): speakers/channel_voices.py runs the
    # mono neural diariser on each channel with >= 20 s of speech; the second voice's turns and words become
    # `other`. On the 6 stereo sim calls no channel is split (DER 1.05 % either way).
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
            own = diff if c == 0 else -diff
            if cfg.trim_to_sound:
                regions = self._trim(regions, audio.samples[c], own, audio.duration)
            if cfg.loud_rescue:
                regions = _union(regions, self._loud_regions(audio.samples[c], own, audio.duration))
            part = _regions_to_annotation(regions, CHANNEL_NAMES[c], Annotation(uri=ann.uri))
            if cfg.split_voices:
                from speechpipe.speakers.channel_voices import split_channel

                part, info = split_channel(self.neural, audio.samples[c], own > -cfg.crosstalk_db, FRAME,
                                           CHANNEL_NAMES[c], part)
                self.voices.append(info)
            ann.update(part, copy=False)
        return ann

    def _trim(self, regions, x: np.ndarray, own_minus_other: np.ndarray, duration: float):
        """Regions cut down to the stretches of the channel's own sound in them (see ``trim_to_sound``)."""
        from speechpipe.audio.acoustics import close_gaps, runs

        cfg = self.config
        lv = frame_levels_db(x)[: len(own_minus_other)]
        if not len(lv):
            return regions
        fs = FRAME / SAMPLE_RATE
        sound = (lv > float(np.percentile(lv, 10)) + cfg.sound_above_floor_db) & (own_minus_other > -cfg.crosstalk_db)
        sound = close_gaps(sound, int(cfg.split_gap_s / fs))
        out = []
        for s, e in regions:
            a, b = int(s / fs), min(len(sound), int(np.ceil(e / fs)))
            for i, j in zip(*runs(sound[a:b])):
                out.append((max(0.0, (a + i) * fs - cfg.sound_pad_s), min(duration, (a + j) * fs + cfg.sound_pad_s)))
        return [(float(s), float(e)) for s, e in out if e - s >= 0.1]

    def _loud_regions(self, x: np.ndarray, own_minus_other: np.ndarray, duration: float) -> list[tuple[float, float]]:
        """Stretches of the channel's own sound near speech level (see ``StereoConfig.loud_rescue``)."""
        from speechpipe.audio.acoustics import close_gaps, runs

        cfg = self.config
        lv = frame_levels_db(x)[: len(own_minus_other)]
        if not len(lv):
            return []
        thr = max(float(np.percentile(lv, 10)) + cfg.loud_above_floor_db,
                  float(np.percentile(lv, 95)) - cfg.loud_below_p95_db)
        loud = close_gaps((lv > thr) & (own_minus_other > -cfg.crosstalk_db), 3)
        fs = FRAME / SAMPLE_RATE
        return [(max(0.0, float(a * fs - cfg.pad_s)), min(duration, float(b * fs + cfg.pad_s)))
                for a, b in zip(*runs(loud)) if (b - a) * fs >= cfg.loud_min_s]

    def assign(self, audio: AudioData, utterances: list[Utterance], counsellor_channel: str = "auto",
               speech_probs=None):
        """Old entry point, kept for callers: the pipeline's shared word and role step on this diariser."""
        from speechpipe.speakers.assign import assign_words

        utts, _, roles = assign_words(self, audio, utterances, counsellor_channel, speech_probs)
        return utts, roles


def _union(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of two region lists, merged where they touch."""
    out: list[list[float]] = []
    for s, e in sorted(a + b):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]
