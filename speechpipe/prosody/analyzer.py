"""Prosody stage: backchannel rise/fall, breathing events and per-turn stress cues.

Runs after speakers are known and before the tagger. Everything is measured
per speaker: on its own channel for stereo calls, on the utterance times for
mono. The outputs are measurements for a person to look at, never a diagnosis.

* **Pitch** — a swappable :class:`~speechpipe.prosody.pitch.PitchTracker` (Praat AC by
  default) on 8 kHz audio (calls are telephone band; nothing above 4 kHz is needed), with a
  two-pass speaker range: a wide pass on up to ``range_probe_s`` seconds of the
  speaker's turns gives floor/ceiling, the second pass tracks every turn.
* **Backchannel intonation** — on every backchannel *candidate*
  (:func:`is_backchannel_candidate`): the final movement of the last voiced
  stretch (bridging stop closures under 300 ms, so «akkurat», «ja, takk» are
  one contour), end level vs the extreme of the preceding 500 ms, in
  semitones; rise/fall from 1.5 st and above the glissando threshold.
* **Breaths** — no pretrained model: frames that are unvoiced, noise-like,
  well above the noise floor but well below speech, centred in the low-mid
  band, in runs of 150–1000 ms outside every word (see :func:`detect_breaths`).
* **Stress cues** — per turn: F0 median and range, loudness, speech rate,
  pause and breath rate, HNR, jitter/shimmer (≥ 1 s voiced), each also as a
  z-score against the same speaker's turns in the call.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np

from speechpipe.audio.acoustics import (
    HOP,
    SR,
    BreathConfig,
    detect_breaths,
    frame_features,
    noise_floor_db,
    runs,
    span_mask,
)
from speechpipe.prosody.backchannel import acoustic_verdict
from speechpipe.prosody.pitch import (
    WIDE_CEILING,
    WIDE_FLOOR,
    PitchTracker,
    build_tracker,
    hz_to_st,
    repair_octaves,
    speaker_range,
)
from speechpipe.records import Event, Utterance
from speechpipe.vocabulary import count_syllables, is_backchannel_candidate

VERSION = "1"
WORD_ONSET_SLACK_S = 0.1


@dataclass
class ProsodyConfig:
    tracker: str | PitchTracker = "praat"
    range_probe_s: float = 20.0  # first-pass audio per speaker for the range rule
    # intonation
    final_window_s: float = 0.50
    end_level_s: float = 0.04
    movement_st: float = 1.5  # |change| ≥ this is a rise/fall …
    glissando: float = 0.16  # … and |Δst|·T ≥ 0.16 ('t Hart's glissando threshold 0.16/T² st/s)
    min_voiced_frames: int = 6
    blip_gap_s: float = 0.10  # a pause this long before a final voiced blip (< min_voiced_frames) ends the contour
    stretch_gap_s: float = 0.30  # a longer unvoiced gap ends a voiced stretch (stop closures do not)
    # breaths
    breath: BreathConfig = field(default_factory=BreathConfig)
    heavy_long_s: float = 0.5
    heavy_loud_db: float = -14.0  # mean breath level re the speaker's 95th-percentile speech level
    heavy_frequent_per_min: float = 12.0  # breaths per minute of the speaker's own talk time
    # turns
    pause_min_s: float = 0.2
    voice_quality_min_voiced_s: float = 1.0
    z_min_turns: int = 3


def final_pitch_movement(
    times: np.ndarray, f0: np.ndarray, anchor_st: float | None = None, config: ProsodyConfig | None = None
) -> tuple[str | None, float | None, str]:
    """Label the final pitch movement of an utterance ``rise``, ``fall`` or ``level``.

    Takes the last voiced stretch, repairs octave jumps, and compares the end
    level (mean of the last ``end_level_s``) with the extreme of the preceding
    ``final_window_s``: the larger of (end − minimum) and (maximum − end) is
    the movement, signed. It is a rise/fall when ≥ ``movement_st`` semitones
    and above the glissando threshold, else level. Returns
    ``(label, change_st, reason)``; label and change are ``None`` with a
    reason when too few frames are voiced.

    Examples
    --------
    >>> t = np.arange(40) * 0.01
    >>> label, st, _ = final_pitch_movement(t, 200 * 2 ** (-np.linspace(0, 4, 40) / 12))
    >>> label, round(st, 1)
    ('fall', -3.8)
    """
    c = config or ProsodyConfig()
    v = np.isfinite(f0)
    if v.sum() < c.min_voiced_frames:
        return None, None, f"too few voiced frames ({int(v.sum())} < {c.min_voiced_frames})"
    t, st = times[v], hz_to_st(f0[v])
    # A voiced blip at the end, too short to carry a contour and after a pause, is the next speaker's
    # onset at a short turn's edge (mono), a creaky tail or noise: a stop closure is followed by a whole vowel.
    while len(t) >= c.min_voiced_frames:
        cut = np.flatnonzero(np.diff(t) > c.blip_gap_s)
        if not len(cut) or len(t) - cut[-1] - 1 >= c.min_voiced_frames:
            break
        t, st = t[: cut[-1] + 1], st[: cut[-1] + 1]
    if len(t) < c.min_voiced_frames:
        return None, None, f"too few voiced frames ({len(t)} < {c.min_voiced_frames})"
    # last voiced stretch: split where the gap between voiced frames is long (the loop above left it
    # at least min_voiced_frames long)
    breaks = np.flatnonzero(np.diff(t) > c.stretch_gap_s)
    first = breaks[-1] + 1 if len(breaks) else 0
    t, st = t[first:], repair_octaves(st[first:], anchor_st)
    win = t >= t[-1] - c.final_window_s
    tw, sw = t[win], st[win]
    endm = tw >= tw[-1] - c.end_level_s
    end = float(np.mean(sw[endm]))
    body = sw[~endm] if (~endm).sum() else sw
    tb = tw[~endm] if (~endm).sum() else tw
    i_lo, i_hi = int(np.argmin(body)), int(np.argmax(body))
    rise, fall = end - body[i_lo], body[i_hi] - end
    if rise >= fall:
        change, dt = float(rise), float(tw[-1] - tb[i_lo])
    else:
        change, dt = -float(fall), float(tw[-1] - tb[i_hi])
    if abs(change) >= c.movement_st and abs(change) * max(dt, 0.01) >= c.glissando:
        return ("rise" if change > 0 else "fall"), change, "ok"
    return "level", change, "ok"


# ---------------------------------------------------------------------------
# The stage


def _zscores(values: list[float | None], min_n: int) -> list[float | None]:
    arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    ok = np.isfinite(arr)
    if ok.sum() < min_n:
        return [None] * len(values)
    mu, sd = arr[ok].mean(), arr[ok].std()
    if sd <= 1e-9:
        return [None if not k else 0.0 for k in ok]
    return [round(float((a - mu) / sd), 2) if k else None for a, k in zip(arr, ok)]


def _r(x, nd=2):
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


class ProsodyAnalyzer:
    """Prosody stage: per-word/turn measurements and breath events, per speaker.

    Examples
    --------
    >>> from speechpipe.audio import load_audio             # doctest: +SKIP
    >>> audio = load_audio("call.flac")                      # doctest: +SKIP
    >>> events = ProsodyAnalyzer().analyse(audio, utterances)  # doctest: +SKIP
    >>> utterances[3].intonation, utterances[3].prosody["f0_median_hz"]  # doctest: +SKIP
    ('fall', 96.2)
    """

    def __init__(self, config: ProsodyConfig | None = None):
        self.config = config or ProsodyConfig()
        self.tracker = build_tracker(self.config.tracker)
        # The first (range) pass only needs F0 quantiles: every third frame is enough and 3× cheaper.
        self.probe_tracker = copy.copy(self.tracker)
        if hasattr(self.probe_tracker, "time_step"):
            self.probe_tracker.time_step = 3 * self.tracker.time_step
        self.name = f"speechpipe-prosody/{VERSION}+{self.tracker.name}"
        self.last_timings: dict[str, float] = {}

    # -- helpers ----------------------------------------------------------
    def _track(self, x: np.ndarray, start: float, end: float, floor: float, ceiling: float, tracker=None):
        tracker = tracker or self.tracker
        pad = 0.1
        a, b = max(0, int((start - pad) * SR)), min(len(x), int((end + pad) * SR))
        seg = x[a:b]
        pitch = None
        if hasattr(tracker, "pitch_object") and len(seg) >= int(3.2 * SR / floor):
            pitch = tracker.pitch_object(seg, SR, floor, ceiling)
            t, f0 = tracker.to_arrays(pitch)
        else:
            t, f0 = tracker.track(seg, SR, floor, ceiling)
        t = t + a / SR
        keep = (t >= start) & (t <= end + 0.03)
        return t[keep], f0[keep], (pitch, seg)

    def _ranges(self, x: np.ndarray, utts: list[Utterance]) -> tuple[float, float, float | None]:
        """Two-pass rule, first pass: wide range on a spread sample of the speaker's turns."""
        utts = [u for u in utts if u.end - u.start > 0.2]
        if not utts:
            return WIDE_FLOOR, WIDE_CEILING, None
        total = sum(u.end - u.start for u in utts)
        k = max(1, int(np.ceil(len(utts) * min(1.0, self.config.range_probe_s / max(total, 1e-6)))))
        pick = [utts[i] for i in np.unique(np.linspace(0, len(utts) - 1, k).round().astype(int))]
        f0s = [self._track(x, u.start, u.end, WIDE_FLOOR, WIDE_CEILING, self.probe_tracker)[1] for u in pick]
        f0 = np.concatenate(f0s) if f0s else np.zeros(0)
        floor, ceiling = speaker_range(f0)
        v = f0[np.isfinite(f0)]
        anchor = float(np.median(hz_to_st(v))) if len(v) else None
        return floor, ceiling, anchor

    def _voice_quality(self, pitch, seg) -> tuple[float | None, float | None]:
        import parselmouth
        from parselmouth.praat import call

        try:
            snd = parselmouth.Sound(np.asarray(seg, np.float64), SR)
            pp = call([snd, pitch], "To PointProcess (cc)")
            jit = call(pp, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3)
            shim = call([snd, pp], "Get shimmer (local)", 0, 0, 0.0001, 0.02, 1.3, 1.6)
            return _r(jit, 4), _r(shim, 4)
        except parselmouth.PraatError:
            return None, None

    # -- main -------------------------------------------------------------
    def analyse(self, audio, utterances: list[Utterance]) -> list[Event]:
        """Fill ``intonation``/``pitch_change_st`` (backchannel candidates) and ``prosody`` (all turns);
        return breath events."""
        import soxr

        c = self.config
        clock = time.process_time
        tm = {"features": 0.0, "pitch_range": 0.0, "pitch": 0.0, "breaths": 0.0, "voice_quality": 0.0, "turns": 0.0}
        t0 = clock()
        timed = [u for u in utterances if u.start is not None and u.end is not None and u.end > u.start]
        stereo = audio.channels == 2
        chans = range(audio.channels) if stereo else [0]
        x8 = {
            ch: soxr.resample(
                audio.samples[ch] if stereo else audio.mono, audio.sample_rate, SR, quality="HQ"
            ).astype(np.float32)
            for ch in chans
        }
        feats = {ch: frame_features(x8[ch]) for ch in chans}
        tm["features"] = clock() - t0
        floors = {ch: noise_floor_db(feats[ch]["energy_db"]) for ch in chans}

        def chan_of(u):
            return (u.channel if u.channel in x8 else 0) if stereo else 0

        # Speaker groups: stereo by (channel, speaker), mono by speaker.
        groups: dict[tuple, list[Utterance]] = {}
        for u in timed:
            groups.setdefault((chan_of(u), u.speaker), []).append(u)

        track: dict[int, tuple] = {}
        ranges: dict[tuple, tuple] = {}
        for key, us in groups.items():
            x = x8[key[0]]
            t1 = clock()
            floor, ceiling, anchor = self._ranges(x, us)
            ranges[key] = (floor, ceiling, anchor)
            t2 = clock()
            for u in us:
                track[id(u)] = self._track(x, u.start, u.end, floor, ceiling)
            tm["pitch_range"] += t2 - t1
            tm["pitch"] += clock() - t2

        # Speech level per speaker: 95th percentile of frame levels in their turns
        # (a peak level; robust to how much of a turn is pauses).
        levels: dict[tuple, float] = {}
        for key, us in groups.items():
            e = feats[key[0]]["energy_db"]
            m = span_mask(len(e), [(u.start, u.end) for u in us])
            levels[key] = float(np.percentile(e[m], 95)) if m.sum() > 10 else floors[key[0]] + 30.0

        t1 = clock()
        events = self._breaths(audio, timed, feats, levels, groups, chan_of)
        tm["breaths"] = clock() - t1
        t1 = clock()

        # Per-turn measurements.
        step = HOP / SR
        for key, us in groups.items():
            f = feats[key[0]]
            e = f["energy_db"]
            floor_db = floors[key[0]]
            quiet_thr = max(floor_db + 6.0, levels[key] - 25.0)
            sp_breaths = [ev for ev in events if ev.speaker == key[1]]
            for u in us:
                t, f0, (pitch, seg) = track[id(u)]
                v = np.isfinite(f0)
                p: dict = {}
                if v.sum() >= c.min_voiced_frames:
                    st = repair_octaves(hz_to_st(f0[v]), ranges[key][2])
                    q5, q50, q95 = np.percentile(st, [5, 50, 95])
                    p["f0_median_hz"] = _r(100 * 2 ** (q50 / 12), 1)
                    p["f0_median_st"] = _r(q50)
                    p["f0_range_st"] = _r(q95 - q5)
                else:
                    p["f0_median_hz"] = p["f0_median_st"] = p["f0_range_st"] = None
                a, b = int(u.start / step), min(len(e), int(np.ceil(u.end / step)) + 1)
                seg_e = e[a:b]
                active = seg_e > quiet_thr
                p["loudness_db"] = _r(10 * np.log10(np.mean(10 ** (seg_e[active] / 10)))) if active.sum() else None
                # pauses: quiet runs inside the turn (not at its edges)
                s_idx, e_idx = runs(~active)
                inner = (s_idx > 0) & (e_idx < len(active)) & ((e_idx - s_idx) * step >= c.pause_min_s)
                pause_s = float(((e_idx - s_idx)[inner]).sum() * step)
                dur = u.end - u.start
                p["pauses"] = int(inner.sum())
                p["pause_rate"] = _r(inner.sum() / dur * 60.0)  # per minute
                syl = count_syllables(u.text)
                p["rate_syll_s"] = _r(syl / max(dur - pause_s, 0.1)) if syl else None
                nb = sum(1 for ev in sp_breaths if u.start - 1.0 <= ev.start <= u.end)
                p["breaths"] = nb
                p["breath_rate"] = _r(nb / (dur + 1.0) * 60.0)  # per minute, turn + the second before it
                # HNR from the autocorrelation peak on the tracker's voiced frames (Praat's definition)
                if v.sum() >= c.min_voiced_frames:
                    idx = np.clip(np.round(t[v] / step).astype(int), 0, len(e) - 1)
                    r = np.clip(f["periodicity"][idx], 1e-3, 0.999)
                    p["hnr_db"] = _r(float(np.median(10 * np.log10(r / (1 - r)))), 1)
                else:
                    p["hnr_db"] = None
                p["jitter"] = p["shimmer"] = None
                if pitch is not None and v.sum() * step >= c.voice_quality_min_voiced_s:
                    t2 = clock()
                    p["jitter"], p["shimmer"] = self._voice_quality(pitch, seg)
                    tm["voice_quality"] += clock() - t2
                u.prosody.update(p)
                short = u.prosody.get("short_turn")
                if short or is_backchannel_candidate(u.text):
                    label, change, reason = final_pitch_movement(t, f0, ranges[key][2], c)
                    u.intonation = label
                    u.pitch_change_st = _r(change)
                    u.prosody["intonation_reason"] = reason
                    if short:  # a short listener turn: a voiced minimal response, or a breath/cough/laugh?
                        ok, m = acoustic_verdict(t, f0, u.start, u.end)
                        if ok and label is not None:
                            u.prosody["acoustic_backchannel"] = True
                            u.prosody["backchannel_evidence"] = {
                                "source": "acoustic:short_turn", **short, **m, "intonation": label,
                                "change_st": _r(change)}
                        else:
                            u.prosody["acoustic_backchannel_rejected"] = m.get("reason", reason)

            # z-scores against the same speaker's turns in this call
            for src, dst in (
                ("f0_median_st", "f0_z"), ("f0_range_st", "f0_range_z"), ("loudness_db", "loudness_z"),
                ("rate_syll_s", "rate_z"), ("pause_rate", "pause_rate_z"), ("breath_rate", "breath_rate_z"),
                ("hnr_db", "hnr_z"), ("jitter", "jitter_z"), ("shimmer", "shimmer_z"),
            ):
                for u, z in zip(us, _zscores([u.prosody.get(src) for u in us], c.z_min_turns)):
                    u.prosody[dst] = z
        tm["turns"] = clock() - t1 - tm["voice_quality"]
        tm["total"] = clock() - t0
        self.last_timings = {k: round(v, 4) for k, v in tm.items()}  # CPU seconds of the last call, for benchmarks
        return events

    def _breaths(self, audio, timed, feats, levels, groups, chan_of) -> list[Event]:
        c = self.config
        found: list[tuple[str, dict]] = []
        if audio.channels == 2:
            for ch in feats:
                keys = [k for k in groups if k[0] == ch]
                if not keys:
                    continue
                key = max(keys, key=lambda k: len(groups[k]))
                spans = [s for k in keys for u in groups[k] for s in _word_spans(u)]
                for b in detect_breaths(feats[ch], spans, levels[key], c.breath):
                    found.append((key[1], b))
        else:
            spans = [s for u in timed for s in _word_spans(u)]
            # One speech level for the mixed channel: the quieter speaker's, so no speaker's breaths are cut.
            lvl = min(levels.values()) if levels else noise_floor_db(feats[0]["energy_db"]) + 30
            for b in detect_breaths(feats[0], spans, lvl, c.breath):
                who = _owner(b, timed)
                key = (0, who)
                if key in levels:
                    b["re_speech_db"] = round(b["level_db"] - levels[key], 1)
                found.append((who, b))
        # heavy: loud or long, or frequent for this speaker (per minute of own talk time)
        talk = {}
        for (_, spk), us in groups.items():
            talk[spk] = talk.get(spk, 0.0) + sum(u.end - u.start for u in us)
        counts: dict[str, int] = {}
        for spk, _ in found:
            counts[spk] = counts.get(spk, 0) + 1
        events = []
        for spk, b in sorted(found, key=lambda sb: sb[1]["start"]):
            rate = counts[spk] / max(talk.get(spk, 0.0), 30.0) * 60.0
            reasons = []
            if b["end"] - b["start"] >= c.heavy_long_s:
                reasons.append("long")
            if b["re_speech_db"] >= c.heavy_loud_db:
                reasons.append("loud")
            if rate >= c.heavy_frequent_per_min:
                reasons.append("frequent")
            extra = {k: v for k, v in b.items() if k not in ("start", "end")}
            extra.update(speaker_rate_per_min=round(rate, 2), heavy_reasons=reasons)
            events.append(Event("breath", spk, b["start"], b["end"], heavy=bool(reasons), extra=extra))
        return events

    def summarise(self, utterances: list[Utterance], events: list[Event]) -> dict:
        """Call-summary keys: breathing per speaker and ``heavy_breathing`` (≥ 3 heavy breaths by one speaker)."""
        talk: dict[str, float] = {}
        for u in utterances:
            if u.start is not None and u.end is not None:
                talk[u.speaker] = talk.get(u.speaker, 0.0) + (u.end - u.start)
        out: dict[str, dict] = {}
        for spk in sorted(set(talk) | {e.speaker for e in events if e.type == "breath"}):
            br = [e for e in events if e.type == "breath" and e.speaker == spk]
            out[spk] = {
                "breaths": len(br),
                "heavy": sum(e.heavy for e in br),
                "per_min_talk": round(len(br) / max(talk.get(spk, 0.0), 1.0) * 60.0, 2),
            }
        return {"breathing": out, "heavy_breathing": any(v["heavy"] >= 3 for v in out.values())}


def _word_spans(u: Utterance) -> list[tuple[float, float]]:
    """Where the recogniser heard words: word times when present, else the utterance span."""
    if u.words:
        # Whisper often starts a word on the inhalation before it (4 of the 7 reference breaths missed
        # end to end on the stereo sim calls): the first WORD_ONSET_SLACK_S of a word is not masked
        return [(w.start + WORD_ONSET_SLACK_S if w.end - w.start > 2 * WORD_ONSET_SLACK_S else w.start, w.end)
                for w in u.words if w.start is not None and w.end is not None]
    if not u.transcribed:
        # speech the recogniser wrote nothing for: its turn includes the inhalation before it (the
        # turn is trimmed to sound, and a breath is sound), so masking it would hide the breaths;
        # the detector's voicing and level tests keep the speech itself out
        return []
    return [(u.start, u.end)]


def _owner(b: dict, utts: list[Utterance]) -> str:
    """Mono: a breath belongs to the turn it is in, else the turn it precedes (≤ 1 s), else the nearest."""
    mid = 0.5 * (b["start"] + b["end"])
    inside = [u for u in utts if u.start <= mid <= u.end]
    if inside:
        return inside[0].speaker
    after = [u for u in utts if 0 <= u.start - b["end"] <= 1.0]
    if after:
        return min(after, key=lambda u: u.start).speaker
    if not utts:
        return "other"
    return min(utts, key=lambda u: min(abs(u.start - mid), abs(u.end - mid))).speaker
