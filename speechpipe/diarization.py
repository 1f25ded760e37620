"""Speakers and roles: who spoke when, and who is the counsellor.

Three diarisers behind one interface (:func:`build_diarizer`):

- :class:`StereoDiarizer` — each party on its own channel: no clustering,
  per-channel VAD with crosstalk/echo suppression (a channel's faint copy of
  the other party is not speech).
- :class:`EmbeddedDiarizer` — mono, nothing downloaded: Silero VAD (shipped
  with faster-whisper) → windowed GE2E embeddings (``resemblyzer``) →
  spectral clustering with the number of speakers from the eigengap (and a
  time-consistency test for a third voice that sounds like another) →
  Viterbi resegmentation of window-to-centroid similarities, re-estimated
  twice, inside tight speech regions (pauses, Silero's slow decay and loud
  breaths between turns left out: :func:`speechpipe.vad.tight_speech_regions`,
  :func:`speechpipe.vad.breath_regions`), so turn boundaries are sharp and
  short backchannels survive.
- :class:`PyannoteDiarizer` — a local pyannote.audio pipeline directory.

Every diariser has ``diarize(audio) -> pyannote.core.Annotation`` (audio
alone, for DER evaluation) and ``assign(audio, utterances, ...)`` which puts
ASR words on speakers by time overlap, splits utterances at speaker changes
and maps labels to roles (:mod:`speechpipe.roles`).

Examples
--------
>>> from speechpipe.pipeline import PipelineConfig          # doctest: +SKIP
>>> d = build_diarizer(PipelineConfig(diarizer="embedded"))  # doctest: +SKIP
>>> ann = d.diarize(load_audio("call.wav"))                  # doctest: +SKIP
>>> ann.labels()                                             # doctest: +SKIP
['SPEAKER_00', 'SPEAKER_01']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment

from .records import SAMPLE_RATE, AudioData, Utterance, Word
from .roles import assign_roles
from .vad import (FRAME, breath_regions, probabilities_to_regions, speech_probabilities, subtract_regions,
                  tight_speech_regions)

CHANNEL_NAMES = ("left", "right")


class DiarizationError(Exception):
    """A diariser that cannot be built or run (bad pipeline directory, ...)."""


# ---------------------------------------------------------------- helpers


def _as_audio(audio) -> AudioData:
    if isinstance(audio, AudioData):
        return audio
    x = np.asarray(audio, dtype=np.float32)
    return AudioData(path="<array>", samples=x[None, :] if x.ndim == 1 else x, orig_sample_rate=SAMPLE_RATE)


def _regions_to_annotation(regions, label, ann: Annotation | None = None) -> Annotation:
    ann = ann if ann is not None else Annotation()
    for s, e in regions:
        if e > s:
            ann[Segment(s, e), len(ann)] = label
    return ann


def label_at(diarization: Annotation, start: float, end: float) -> str | None:
    """Label with the most overlap with ``[start, end]`` (nearest one within 1 s if none).

    Examples
    --------
    >>> ann = Annotation(); ann[Segment(0, 2)] = "A"; ann[Segment(2, 5)] = "B"
    >>> label_at(ann, 1.5, 2.8), label_at(ann, 5.5, 5.6), label_at(ann, 9, 9.5)
    ('B', 'B', None)
    """
    return LabelIndex(diarization)(start, end)


class LabelIndex:
    """:func:`label_at` for many queries: segments sorted once, each lookup a binary search.

    ``Annotation.crop`` scans the whole annotation, so labelling every word of a
    2-hour call that way grew quadratically (diarisation 77 s for 60 min, 205 s
    for 120 min); this keeps it linear and gives the same answers (on overlapping
    segments that tie, the earlier-starting one wins).
    """

    def __init__(self, diarization: Annotation):
        tracks = sorted((s.start, s.end, lab) for s, _, lab in diarization.itertracks(yield_label=True))
        self.starts = np.array([t[0] for t in tracks], float)
        self.ends = np.array([t[1] for t in tracks], float)
        self.labels = [t[2] for t in tracks]
        self.longest = float((self.ends - self.starts).max()) if tracks else 0.0

    def _span(self, a: float, b: float) -> tuple[int, int]:
        """Index range of the segments that may overlap ``(a, b)``."""
        lo = int(np.searchsorted(self.starts, a - self.longest, "left"))
        hi = int(np.searchsorted(self.starts, b, "left"))
        return lo, hi

    def __call__(self, start: float, end: float) -> str | None:
        end = max(end, start + 1e-3)
        lo, hi = self._span(start, end)
        if hi > lo:
            ov = np.minimum(self.ends[lo:hi], end) - np.maximum(self.starts[lo:hi], start)
            i = int(np.argmax(ov))  # the first of equal overlaps, as in time order
            if ov[i] > 0:
                return self.labels[lo + i]
        lo, hi = self._span(start - 1.0, end + 1.0)
        near = [(min(abs(self.ends[j] - start), abs(self.starts[j] - end)), self.labels[j])
                for j in range(lo, hi) if self.ends[j] > start - 1.0]
        return min(near)[1] if near else None


def split_by_speaker(utterances: list[Utterance], diarization: Annotation) -> list[Utterance]:
    """Exclusive diarisation of words: each word goes to the label it overlaps most;
    an utterance is split wherever the label changes. Sets ``u.cluster``.

    Examples
    --------
    >>> ann = Annotation(); ann[Segment(0, 1)] = "A"; ann[Segment(1, 3)] = "B"
    >>> u = Utterance("unknown", 0.1, 2.5, "ja hei der", [Word("ja", .1, .4), Word("hei", 1.2, 1.6), Word("der", 2, 2.5)])
    >>> [(v.cluster, v.text, v.start, v.end) for v in split_by_speaker([u], ann)]
    [('A', 'ja', 0.1, 0.4), ('B', 'hei der', 1.2, 2.5)]
    """
    out: list[Utterance] = []
    label_at = LabelIndex(diarization)
    for u in utterances:
        if not u.words:
            lab = label_at(u.start or 0.0, u.end or 0.0)
            out.append(_copy_utt(u, u.words, u.text, lab))
            continue
        labs = [label_at(w.start, w.end) for w in u.words]
        # a word in silence (no label) joins its neighbour's speaker
        for i in range(len(labs)):
            if labs[i] is None:
                labs[i] = next((x for x in labs[i::-1] if x is not None), None) or next(
                    (x for x in labs[i:] if x is not None), None)
        groups: list[tuple[str | None, list[Word]]] = []
        for w, lab in zip(u.words, labs):
            if groups and groups[-1][0] == lab:
                groups[-1][1].append(w)
            else:
                groups.append((lab, [w]))
        if len(groups) == 1:
            out.append(_copy_utt(u, u.words, u.text, groups[0][0]))
            continue
        for lab, ws in groups:
            out.append(_copy_utt(u, ws, " ".join(w.text for w in ws), lab, ws[0].start, ws[-1].end))
    out.sort(key=lambda v: ((v.start or 0.0), (v.end or 0.0)))
    return out


def _copy_utt(u: Utterance, words, text, cluster, start=None, end=None) -> Utterance:
    return Utterance(
        speaker=u.speaker, start=u.start if start is None else start, end=u.end if end is None else end,
        text=text, words=list(words), acts=list(u.acts), phase=u.phase, intonation=u.intonation,
        pitch_change_st=u.pitch_change_st, prosody=dict(u.prosody), evidence=dict(u.evidence),
        channel=u.channel, cluster=cluster,
    )


def _turns(utterances: list[Utterance], key) -> list[tuple[str, float, float, str]]:
    return [(key(u), u.start or 0.0, u.end or 0.0, u.text) for u in utterances if key(u) is not None]


# ---------------------------------------------------------------- stereo


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


class StereoDiarizer:
    """Stereo calls: one party per channel, crosstalk suppressed, roles from evidence."""

    name = "stereo-channels"

    def __init__(self, config: StereoConfig | None = None):
        self.config = config or StereoConfig()

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
        audio = _as_audio(audio)
        if audio.channels != 2:
            raise DiarizationError(f"{audio.path}: stereo diarisation needs 2 channels, got {audio.channels}")
        cfg = self.config
        masks, _ = self._own_speech(audio, speech_probs)
        ann = Annotation(uri=Path(audio.path).stem)
        for c in range(2):
            regions = probabilities_to_regions(masks[c], cfg.vad_threshold, cfg.min_silence_s, 0.1, cfg.pad_s,
                                               audio.duration)
            _regions_to_annotation(regions, CHANNEL_NAMES[c], ann)
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
        forced = counsellor_channel if counsellor_channel in CHANNEL_NAMES else None
        decision = assign_roles(ann, _turns(utterances, lambda u: CHANNEL_NAMES[u.channel] if u.channel is not None else None),
                                counsellor=forced)
        if decision.counsellor is None:  # silent call: fall back to left
            decision.roles = {"left": "counsellor", "right": "caller"}
            decision.counsellor = "left"
        decision.roles.setdefault("left", "caller" if decision.counsellor == "right" else "counsellor")
        decision.roles.setdefault("right", "caller" if decision.counsellor == "left" else "counsellor")
        for u in utterances:
            u.speaker = decision.roles[CHANNEL_NAMES[u.channel]] if u.channel is not None else "other"
        utterances.sort(key=lambda u: ((u.start or 0.0), (u.end or 0.0)))
        roles = {"method": "stereo-" + ("forced" if forced else "auto"), "counsellor": decision.counsellor,
                 "confidence": decision.confidence, "evidence": decision.evidence}
        return utterances, roles


# ---------------------------------------------------------------- mono, embedded


@dataclass
class EmbeddedConfig:
    vad_threshold: float = 0.15
    vad_min_silence_s: float = 0.25
    vad_pad_s: float = 0.1
    # who-spoke-when regions: Silero-confident or above the noise floor, pauses ≥ merge_gap_s
    # left out (see vad.tight_speech_regions); the loose regions above are only a search area.
    # Chosen on the dev files (real + sim): 0.5 s gaps beat 0.3/0.4 on the real recordings,
    # whose references keep shorter pauses inside turns.
    tight_speech: bool = True
    speech_onset: float = 0.5
    energy_margin_db: float = 6.0
    merge_gap_s: float = 0.5
    speech_pad_s: float = 0.1
    # a region needs one frame Silero itself scores >= this. Over the 20 dev files the real-speech
    # regions peak at >= 0.43; the one below is a 0.5 s noise between turns in sample.wav (0.29):
    # sample 12.5 -> 10.0 % DER, every other file unchanged (0.5 would drop speech of rcdev-01.tel)
    region_min_peak: float = 0.35
    # loud breaths between turns are not speech (the energy rule takes them in): see vad.breath_regions.
    # Over the 20 dev files: the 16 sim calls 2.4 -> 1.7 % DER (dev-007, heavy breathing, 6.9 -> 1.6 %),
    # the real recordings unchanged (their in-turn breaths Silero does not hear are 30-35 dB below speech).
    drop_breaths: bool = True
    breath_max_peak: float = 0.35
    breath_min_re_speech_db: float = -22.0
    # embed over the loose regions: tight ones are short, and embeddings of short regions confuse
    # speakers (measured: rcdev-01 confusion 8 % loose vs 15 % tight)
    embed_loose: bool = True
    win_s: float = 1.5  # embedding window
    hop_s: float = 0.25
    step_s: float = 0.05  # resegmentation frame
    switch_penalty: float = 1.5  # Viterbi cost of a speaker change (similarity × 10 units; tuned on the dev files)
    resegment_iters: int = 2
    min_speakers: int = 1
    max_speakers: int = 3
    max_cluster_windows: int = 1500  # clustering subsample: bounds memory on long calls
    eigengap_min: float = 0.25  # a 3rd, 4th... speaker needs at least this eigengap
    # ... or, when two are found, a 3-way split whose two closest voices hold their own stretch
    # of the call (a relative taking the phone), see distinct_third_voice
    third_min_s: float = 20.0
    third_time_auc: float = 0.8


def estimate_speakers(emb: np.ndarray, min_k: int = 1, max_k: int = 3, gap_min: float = 0.25) -> tuple[int, np.ndarray]:
    """Number of speakers from the eigengap of a pruned cosine affinity matrix.

    Returns ``(k, affinity)``. ``k = 1`` unless the 2nd eigenvalue of the
    normalised affinity drops clearly below the 1st; a speaker beyond the
    second needs an eigengap of at least ``gap_min``.
    """
    from scipy.linalg import eigh

    A = np.clip(emb @ emb.T, 0, 1)
    n = len(A)
    p = max(2, min(n, int(0.2 * n)))
    thr = -np.sort(-A, axis=1)[:, p - 1: p]
    A = np.where(A >= thr, A, 0.0)
    A = (A + A.T) / 2
    d = A.sum(1) + 1e-9
    L = A / np.sqrt(np.outer(d, d))
    w = eigh(L, eigvals_only=True)[::-1][: max_k + 1]
    gaps = w[:-1] - w[1:]
    k = max(min_k, 1)
    if max_k >= 2 and gaps[0] < gaps[1:max_k].max(initial=0) and k < 2:
        k = 2
    elif max_k >= 2 and 1 - w[1] > 0.01:
        k = max(k, 2)
    for j in range(2, max_k):  # gaps[j] separates j+1 from j+2 eigenvalues
        if gaps[j] >= gap_min and gaps[j] > gaps[1]:
            k = max(k, j + 1)
    return min(k, max_k), A


def time_separation(t_a: np.ndarray, t_b: np.ndarray) -> float:
    """How well time alone tells two sets of windows apart: ``max(AUC, 1 - AUC)`` of the
    window times (0.5: interleaved all through the call; 1.0: one after the other).

    Examples
    --------
    >>> time_separation(np.arange(10.), np.arange(20., 30.)), time_separation(np.arange(0., 20, 2), np.arange(1., 21, 2))
    (1.0, 0.55)
    """
    from scipy.stats import rankdata

    if len(t_a) == 0 or len(t_b) == 0:
        return 0.5
    r = rankdata(np.r_[t_a, t_b])[: len(t_a)].sum()
    auc = (r - len(t_a) * (len(t_a) + 1) / 2) / (len(t_a) * len(t_b))
    return float(max(auc, 1 - auc))


def distinct_third_voice(emb: np.ndarray, times: np.ndarray, labels: np.ndarray, window_s: float,
                         min_s: float = 20.0, min_auc: float = 0.8) -> tuple[bool, dict]:
    """Is a 3-way clustering a real third speaker rather than one voice split in two?

    The eigengap misses a third voice that sounds like one of the others (a
    caller's relative who takes the phone). Splitting one speaker's windows
    in two gives two halves that *interleave* all through the call; a voice
    that takes over holds its own stretch. So the two closest clusters must
    each hold ``min_s`` seconds of speech and be separable by time alone
    (:func:`time_separation` ≥ ``min_auc``).

    ``window_s``: seconds of speech one window stands for (the hop, scaled
    by any subsampling). Returns ``(accepted, stats)``.
    """
    k = int(labels.max()) + 1
    C = np.stack([emb[labels == j].mean(0) for j in range(k)])
    C /= np.linalg.norm(C, axis=1, keepdims=True) + 1e-9
    S = C @ C.T
    np.fill_diagonal(S, -np.inf)
    i, j = np.unravel_index(int(np.argmax(S)), S.shape)
    sizes = [float((labels == i).sum() * window_s), float((labels == j).sum() * window_s)]
    auc = time_separation(times[labels == i], times[labels == j])
    stats = {"similarity": round(float(S[i, j]), 3), "speech_s": [round(x, 1) for x in sizes], "time_auc": round(auc, 3)}
    return bool(min(sizes) >= min_s and auc >= min_auc), stats


def viterbi(scores: np.ndarray, penalty: float) -> np.ndarray:
    """Best label path through ``(T, K)`` frame scores with a fixed switch penalty.

    Examples
    --------
    >>> s = np.array([[1, 0], [1, 0], [0, .6], [1, 0], [0, 1], [0, 1]], float)
    >>> viterbi(s, 0.2).tolist(), viterbi(s, 1.5).tolist()
    ([0, 0, 1, 0, 1, 1], [0, 0, 0, 0, 1, 1])
    """
    T, K = scores.shape
    dp = scores[0].copy()
    back = np.zeros((T, K), dtype=np.int32)
    trans = penalty * (1 - np.eye(K))
    for t in range(1, T):
        cand = dp[:, None] - trans
        back[t] = cand.argmax(0)
        dp = cand.max(0) + scores[t]
    path = np.empty(T, dtype=np.int32)
    path[-1] = int(dp.argmax())
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


class EmbeddedDiarizer:
    """Mono diarisation with models that ship in installed packages (no downloads)."""

    name = "embedded:silero+resemblyzer"

    def __init__(self, config: EmbeddedConfig | None = None):
        from .embedding import ResemblyzerEmbedder

        self.config = config or EmbeddedConfig()
        self.embedder = ResemblyzerEmbedder()

    def _windows_in(self, spans, s, e):
        """Indices of windows overlapping ``[s, e]``; spans are sorted by start and at most
        ``win_s`` long, so a binary search keeps this O(log n) on 2-hour calls."""
        lo = np.searchsorted(spans[:, 0], s - self.config.win_s - 1e-6)
        hi = np.searchsorted(spans[:, 0], e)
        idx = np.arange(lo, hi)
        return idx[spans[idx, 1] > s]

    def _frame_scores(self, spans, S, s, e):
        cfg = self.config
        t = np.arange(s, e, cfg.step_s) + cfg.step_s / 2
        idx = self._windows_in(spans, s, e)
        if len(idx) == 0:
            return t, None
        cov = ((spans[idx, 0][None, :] <= t[:, None]) & (spans[idx, 1][None, :] > t[:, None])).astype(float)
        empty = cov.sum(1) == 0
        if empty.any():  # frames no window covers take the nearest window
            centre = spans[idx].mean(1)
            cov[np.where(empty)[0], np.argmin(np.abs(centre[None, :] - t[empty, None]), axis=1)] = 1
        return t, (cov @ S[idx]) / cov.sum(1, keepdims=True)

    def diarize(self, audio, speech_probs=None) -> Annotation:
        """Who spoke when in a mono recording (labels ``SPEAKER_00``, ...).

        Stereo input is down-mixed. ``speech_probs``: Silero probabilities of
        the mono signal if already computed (shared VAD pass).
        """
        from sklearn.cluster import SpectralClustering

        from .embedding import call_gain

        audio = _as_audio(audio)
        cfg = self.config
        x = audio.mono
        uri = Path(audio.path).stem
        probs = speech_probs if speech_probs is not None else speech_probabilities(x)
        probs = np.asarray(probs)
        loose = probabilities_to_regions(probs, cfg.vad_threshold, cfg.vad_min_silence_s, 0.1,
                                         cfg.vad_pad_s, audio.duration)
        regions = loose
        if cfg.tight_speech:
            regions = tight_speech_regions(probs, x, cfg.speech_onset, cfg.energy_margin_db,
                                           merge_gap_s=cfg.merge_gap_s, pad_s=cfg.speech_pad_s, loose=loose,
                                           min_peak=cfg.region_min_peak)
            if cfg.drop_breaths:
                regions = subtract_regions(regions, breath_regions(x, probs, regions, cfg.breath_max_peak,
                                                                   cfg.breath_min_re_speech_db))
        ann = Annotation(uri=uri)
        if not regions:
            return ann
        embed_regions = loose if cfg.embed_loose else regions
        spans, E = self.embedder.embed_windows(x, embed_regions, cfg.win_s, cfg.hop_s, call_gain(x, embed_regions))
        if len(E) < 4:
            return _regions_to_annotation(regions, "SPEAKER_00", ann)
        sub = np.linspace(0, len(E) - 1, min(len(E), cfg.max_cluster_windows)).astype(int)
        k, A = estimate_speakers(E[sub], cfg.min_speakers, cfg.max_speakers, cfg.eigengap_min)
        if k == 1:
            return _regions_to_annotation(regions, "SPEAKER_00", ann)
        lab = SpectralClustering(k, affinity="precomputed", random_state=0).fit_predict(A)
        if k == 2 and cfg.max_speakers >= 3:
            lab3 = SpectralClustering(3, affinity="precomputed", random_state=0).fit_predict(A)
            ok, _ = distinct_third_voice(E[sub], spans[sub].mean(1), lab3, cfg.hop_s * len(E) / len(sub),
                                         cfg.third_min_s, cfg.third_time_auc)
            if ok:
                k, lab = 3, lab3
        C = np.stack([E[sub][lab == j].mean(0) for j in range(k)])
        segs = []
        for it in range(cfg.resegment_iters + 1):
            C /= np.linalg.norm(C, axis=1, keepdims=True) + 1e-9
            S = E @ C.T
            segs = []
            win_lab = np.full(len(E), -1)
            for s, e in regions:
                t, F = self._frame_scores(spans, S, s, e)
                if F is None:
                    continue
                path = viterbi(F * 10, cfg.switch_penalty)
                b = 0
                for i in range(1, len(t) + 1):
                    if i == len(t) or path[i] != path[b]:
                        segs.append((s + b * cfg.step_s, min(e, s + i * cfg.step_s), int(path[b])))
                        b = i
            if it == cfg.resegment_iters:
                break
            # re-estimate centroids from windows lying inside one resegmented turn
            for s0, e0, j in segs:
                idx = self._windows_in(spans, s0, e0)
                win_lab[idx[(spans[idx, 0] >= s0 - 1e-6) & (spans[idx, 1] <= e0 + 1e-6)]] = j
            C = np.stack([E[win_lab == j].mean(0) if (win_lab == j).sum() >= 3 else C[j] for j in range(k)])
        # name speakers by order of first appearance
        order = {}
        for s0, e0, j in sorted(segs):
            order.setdefault(j, f"SPEAKER_{len(order):02d}")
        for s0, e0, j in segs:
            ann[Segment(s0, e0), len(ann)] = order[j]
        return ann.support()

    def assign(self, audio: AudioData, utterances: list[Utterance], counsellor_channel: str = "auto",
               speech_probs=None):
        probs = None
        if speech_probs is not None and len(speech_probs) == 1:
            probs = speech_probs[0]
        ann = self.diarize(audio, speech_probs=probs)
        return _assign_mono(ann, utterances, self.name)


def _assign_mono(ann: Annotation, utterances: list[Utterance], method: str):
    utts = split_by_speaker(utterances, ann)
    decision = assign_roles(ann, _turns(utts, lambda u: u.cluster))
    for u in utts:
        u.speaker = decision.roles.get(u.cluster, "other") if u.cluster is not None else "other"
    roles = {"method": method, "counsellor": decision.counsellor, "confidence": decision.confidence,
             "clusters": decision.roles, "evidence": decision.evidence}
    return utts, roles


# ---------------------------------------------------------------- pyannote.audio


class PyannoteDiarizer:
    """A local pyannote.audio pipeline directory (``config.yaml`` + model checkpoints)."""

    def __init__(self, pipeline_dir: str | os.PathLike, device: str = "cpu"):
        from . import offline

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

        audio = _as_audio(audio)
        out = self.pipeline({"waveform": torch.from_numpy(audio.mono[None, :].copy()), "sample_rate": SAMPLE_RATE,
                             "uri": Path(audio.path).stem})
        # pyannote.audio 4 returns DiarizeOutput; 3.x an Annotation
        ann = getattr(out, "exclusive_speaker_diarization", None) or getattr(out, "speaker_diarization", out)
        return ann

    def assign(self, audio: AudioData, utterances: list[Utterance], counsellor_channel: str = "auto",
               speech_probs=None):
        return _assign_mono(self.diarize(audio), utterances, self.name)


# ---------------------------------------------------------------- entry points


class AutoDiarizer:
    """``--diarizer auto``: stereo channels for 2-channel audio, embedded otherwise."""

    name = "auto"

    def __init__(self):
        self.stereo = StereoDiarizer()
        self._embedded = None

    @property
    def embedded(self) -> EmbeddedDiarizer:
        if self._embedded is None:
            self._embedded = EmbeddedDiarizer()
        return self._embedded

    def _pick(self, audio):
        d = self.stereo if _as_audio(audio).channels == 2 else self.embedded
        self.name = d.name
        return d

    def diarize(self, audio, speech_probs=None) -> Annotation:
        return self._pick(audio).diarize(audio, speech_probs=speech_probs)

    def assign(self, audio, utterances, counsellor_channel="auto", speech_probs=None):
        return self._pick(audio).assign(audio, utterances, counsellor_channel, speech_probs=speech_probs)


def build_diarizer(config) -> AutoDiarizer | StereoDiarizer | EmbeddedDiarizer | PyannoteDiarizer:
    """The diariser ``config.diarizer`` names (``auto | stereo | embedded | pyannote``)."""
    kind = getattr(config, "diarizer", "auto")
    if kind == "auto":
        return AutoDiarizer()
    if kind == "stereo":
        return StereoDiarizer()
    if kind == "embedded":
        return EmbeddedDiarizer()
    if kind == "pyannote":
        if not getattr(config, "pyannote_pipeline", None):
            raise DiarizationError("--diarizer pyannote needs --pyannote-pipeline DIR")
        return PyannoteDiarizer(config.pyannote_pipeline)
    raise DiarizationError(f"unknown diarizer {kind!r} (auto, stereo, embedded or pyannote)")


def diarize(audio, config=None) -> Annotation:
    """Diarise audio alone (no ASR): the Annotation DER evaluation needs.

    Examples
    --------
    >>> ann = diarize(load_audio("call.wav"))   # doctest: +SKIP
    """
    from .pipeline import PipelineConfig

    return build_diarizer(config or PipelineConfig()).diarize(audio)
