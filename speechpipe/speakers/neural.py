"""Mono diarisation on pyannote.audio's own pipeline: segmentation-3.0 (overlap-aware) + CAM++ embeddings.

:class:`CampplusSpeakerDiarization` is pyannote.audio's ``SpeakerDiarization`` (segmentation
in sliding 10 s windows, powerset → per-frame speaker activity and count, per-window speaker
embeddings, agglomerative clustering, reconstruction with overlap, exclusive version) with two
things replaced: the models come from verified local files (:mod:`speechpipe.speakers.weights`),
never the hub, and the embedding step is CAM++ on each local speaker's own samples (overlap
left out) instead of a WeSpeaker ResNet over the whole window with a frame mask — CAM++'s
context pooling would otherwise see the other speaker. On the CPU, a local speaker followed
through overlapping windows (a track) is embedded once per 10 s rather than once per window.
:class:`NeuralDiarizer` wraps it behind the diariser interface of :mod:`speechpipe.speakers.base`,
and re-scores short windows of each turn against the speakers' centroids afterwards
(:mod:`speechpipe.speakers.resegment`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pyannote.core import Annotation, Segment, SlidingWindowFeature

from speechpipe.records import SAMPLE_RATE, AudioData
from speechpipe.speakers.resegment import ResegmentConfig, resegment


@dataclass
class NeuralConfig:
    # pyannote 3.1's published clustering for segmentation-3.0: centroid linkage, min cluster size 12.
    # The threshold is CAM++'s, not WeSpeaker's (0.7046): Euclidean distance between unit embeddings,
    # chosen on the dev recordings (real + sim), the one value tuned here.
    threshold: float = 0.60
    method: str = "centroid"
    min_cluster_size: int = 12
    # same-speaker gaps shorter than this are filled (pyannote's own hyper-parameter; its 3.1 default is 0.0).
    # The dev references keep pauses inside turns: 0.5 took the 16 sim calls 5.2 -> 2.3 % DER; 0.8 took
    # rcdev-01.tel (0.7-0.8 s pauses inside turns, silent in the telephone band) 21.1 -> 15.9 % for sims 1.5 -> 1.6 %
    min_duration_off: float = 0.8
    # window step as a fraction of the 10 s window. pyannote uses 0.1 (each second seen 10 times), which on
    # 2 CPU cores alone runs at ~30x real time per CPU-second; 0.25 halves the segmentation cost and, with
    # the tracks below, held the 16 sim calls' DER (measured 1.4-1.8 % vs 2.3 % before, dev figures).
    step: float = 0.25
    # seconds of a local speaker's own clean speech embedded per unit (its longest runs first): CAM++ is
    # reliable from ~3 s; 2 s fragmented the clustering (two sim calls collapsed to one speaker)
    max_embed_s: float = 3.0
    # a local speaker's track (its windows linked by agreeing activity, see link_tracks) is embedded once per
    # this many seconds of window starts instead of once per window: CAM++ work falls ~3x at step 0.25
    embed_span_s: float = 10.0
    # CUDA (and, on the CPU, recordings shorter than fine_below_s; off by default) keeps pyannote's recipe: step
    # 0.1 and one embedding per window and speaker, ~0.12 CPU-s per second of audio. On the four real clips
    # (14-30 s) it was no clear win: dev00 22.5 -> 14.6 % DER but rcdev-01 13.3 -> 18.7 %; and the pipeline
    # bench's calls are 20 s, so any useful threshold would have kept its cost
    step_fine: float = 0.1
    embed_span_s_fine: float = 0.0
    fine_below_s: float = 0.0
    min_speakers: int = 1
    max_speakers: int = 3
    # a third (fourth...) cluster is kept only as a voice that holds its own stretch of the call (a relative
    # taking the phone): speakers.embedded.distinct_third_voice's rule and values; else the two most similar
    # clusters merge (merge_unsupported_voices)
    third_min_s: float = 20.0
    third_time_auc: float = 0.8
    batch_size: int = 8  # CAM++ segments per batch on the CPU (larger batches were slower on 2 cores)
    batch_size_cuda: int = 64
    # short windows of each turn re-scored against the speakers' centroids (speechpipe.speakers.resegment; None:
    # off). dev00 22.5 -> 9.1 % DER (segmentation-3.0 had two talkers in one local speaker), the 16 sim calls
    # 1.6 -> 1.4 % (dev-012, dev-014: the third voice's confusion gone), the other real files unchanged. Cost: one
    # CAM++ pass over the turns, +2.1 CPU-s on the 111 s dev-016 (3.4 -> 5.5 CPU-s, one thread)
    resegment: ResegmentConfig | None = field(default_factory=ResegmentConfig)


@functools.lru_cache(maxsize=2)
def load_segmentation(device: str = "cpu"):
    """pyannote segmentation-3.0 from its verified local checkpoint (never the hub)."""
    from speechpipe import offline

    offline.enforce_env()
    from pyannote.audio import Model

    from speechpipe.speakers.weights import SEGMENTATION, WeightsError, locate

    path = locate(SEGMENTATION)
    try:
        model = Model.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - one clear line
        raise WeightsError(f"{path}: cannot load segmentation-3.0: {type(e).__name__}: {e}") from e
    if model is None:
        raise WeightsError(f"{path}: cannot load segmentation-3.0")
    return model.eval().to(torch.device(device))


@functools.lru_cache(maxsize=2)
def load_embedder(device: str = "cpu", batch_size: int = 32):
    from speechpipe.speakers.campplus import CampplusEmbedder

    return CampplusEmbedder(device=device, batch_size=batch_size)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` frame index runs where ``mask`` is true.

    Examples
    --------
    >>> _runs(np.array([0, 1, 1, 0, 1, 0, 0, 1], bool))
    [(1, 3), (4, 5), (7, 8)]
    """
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def link_tracks(data: np.ndarray, offsets: np.ndarray, min_iou: float = 0.5, min_frames: int = 18) -> np.ndarray:
    """Track id of each (window, local speaker), ``-1`` where inactive.

    Local speaker ``s`` of window ``c`` continues local speaker ``s'`` of window ``c - 1`` when
    their activities agree where the two windows overlap (intersection over union >= ``min_iou``,
    and at least ``min_frames`` frames in common); one-to-one, best agreement first.
    ``offsets`` are the windows' starts in frames.

    Examples
    --------
    >>> d = np.zeros((2, 10, 2)); d[0, 4:, 0] = 1; d[1, :6, 1] = 1; d[1, 8:, 0] = 1
    >>> link_tracks(d, np.array([0, 4]), min_frames=3).tolist()
    [[0, -1], [2, 0]]
    """
    num_chunks, num_frames, num_speakers = data.shape
    active = data.sum(axis=1) > 0
    ids = np.where(active, np.arange(num_chunks * num_speakers).reshape(num_chunks, num_speakers), -1)
    for c in range(1, num_chunks):
        d = int(offsets[c] - offsets[c - 1])
        if d >= num_frames:
            continue
        cur, prev = data[c, : num_frames - d] > 0, data[c - 1, d:] > 0
        pairs = []
        for s in np.flatnonzero(active[c]):
            for p in np.flatnonzero(active[c - 1]):
                inter = int((cur[:, s] & prev[:, p]).sum())
                union = int((cur[:, s] | prev[:, p]).sum())
                if inter >= min_frames and inter >= min_iou * union:
                    pairs.append((inter / union, s, p))
        used_s, used_p = set(), set()
        for _, s, p in sorted(pairs, reverse=True):
            if s not in used_s and p not in used_p:
                ids[c, s] = ids[c - 1, p]
                used_s.add(s)
                used_p.add(p)
    return ids


def track_blocks(data: np.ndarray, offsets: np.ndarray, max_windows: int) -> list[list[tuple[int, int]]]:
    """The (window, local speaker) pairs of each track (:func:`link_tracks`), cut into runs of
    at most ``max_windows`` consecutive windows: the units embedded once each.

    Examples
    --------
    >>> d = np.ones((5, 40, 1))
    >>> track_blocks(d, np.arange(5) * 2, 2)
    [[(0, 0), (1, 0)], [(2, 0), (3, 0)], [(4, 0)]]
    """
    ids = link_tracks(data, offsets)
    tracks: dict[int, list[tuple[int, int]]] = {}
    for c, s in zip(*np.nonzero(ids >= 0)):
        tracks.setdefault(int(ids[c, s]), []).append((int(c), int(s)))
    blocks = []
    for members in tracks.values():
        members.sort()
        blocks.extend(members[i : i + max_windows] for i in range(0, len(members), max_windows))
    return blocks


def _pipeline_class():
    """Build the subclass lazily: importing pyannote.audio costs seconds (CLI start-up)."""
    from pyannote.audio import Inference
    from pyannote.audio.core.pipeline import Pipeline
    from pyannote.audio.pipelines import SpeakerDiarization
    from pyannote.audio.pipelines.clustering import AgglomerativeClustering
    from pyannote.pipeline.parameter import ParamDict, Uniform

    class CampplusSpeakerDiarization(SpeakerDiarization):
        """pyannote.audio's SpeakerDiarization with local segmentation-3.0 and CAM++ embeddings."""

        def __init__(
            self,
            segmentation,
            embedder,
            step: float = 0.1,
            max_embed_s: float = 3.0,
            segmentation_batch_size: int = 8,
            embed_span_s: float = 5.0,
        ):
            # SpeakerDiarization.__init__ would resolve hub names and a PLDA; set its attributes directly
            Pipeline.__init__(self)
            self.legacy = False
            self.segmentation_model = segmentation
            self.segmentation_step = step
            self.embedding = "campplus"
            self.embedding_batch_size = embedder.batch_size
            self.embedding_exclude_overlap = True
            self.plda = None
            self._plda = None
            self.klustering = "AgglomerativeClustering"
            self.der_variant = {"collar": 0.0, "skip_overlap": False}
            duration = segmentation.specifications.duration
            self._segmentation = Inference(
                segmentation,
                duration=duration,
                step=step * duration,
                skip_aggregation=True,
                batch_size=segmentation_batch_size,
                device=next(segmentation.parameters()).device,
            )
            self.segmentation = ParamDict(min_duration_off=Uniform(0.0, 1.0))
            self._embedder = embedder
            self._embedding = embedder
            self.max_embed_s = max_embed_s
            self.embed_span_s = embed_span_s
            self.clustering = AgglomerativeClustering(metric="cosine")
            self._expects_num_speakers = False

        def get_embeddings(
            self, file, binary_segmentations: SlidingWindowFeature, exclude_overlap: bool = True, hook=None
        ) -> np.ndarray:
            """CAM++ embedding of each (window, local speaker), shared along tracks.

            Consecutive windows overlap, so a local speaker of one window is, in most cases, a
            local speaker of the previous one (same activity where they overlap): such pairs are
            linked into tracks (:func:`link_tracks`), each track is cut into blocks spanning
            ``embed_span_s`` of window starts, and each block is embedded once, from that speaker's
            clean (single-speaker) speech in absolute time, its longest runs first up to
            ``max_embed_s``; every (window, speaker) of the block gets that embedding. With
            pyannote's 1 s step this embeds each second of speech about once instead of ~3 times.
            Inactive speakers get NaN rows, as pyannote's own embedding of an empty mask would."""
            wav = file["waveform"][0].numpy() if torch.is_tensor(file["waveform"]) else file["waveform"][0]
            data = np.nan_to_num(binary_segmentations.data, nan=0.0)
            num_chunks, num_frames, num_speakers = data.shape
            window = binary_segmentations.sliding_window
            frame_s = window.duration / num_frames
            shift = window.step / frame_s  # window step in frames (not an integer in general)
            offsets = np.round(np.arange(num_chunks) * shift).astype(int)
            clean_all = data * (data.sum(axis=2, keepdims=True) < 2)
            blocks = track_blocks(data, offsets, max(1, int(round(self.embed_span_s / window.step))))
            max_frames = int(self.max_embed_s / frame_s)
            min_clean = int(0.5 / frame_s)  # pyannote falls back to the full mask when clean speech is too short
            out = np.full((num_chunks, num_speakers, self._embedder.dimension), np.nan, np.float32)
            items, members = [], []
            for block in blocks:
                # the block's clean speech in absolute frames: clean in at least half the windows that see it
                lo = min(offsets[c] for c, _ in block)
                hi = max(offsets[c] for c, _ in block) + num_frames
                votes, seen = np.zeros(hi - lo), np.zeros(hi - lo)
                any_active = np.zeros(hi - lo)
                for c, s in block:
                    a = offsets[c] - lo
                    votes[a : a + num_frames] += clean_all[c, :, s]
                    any_active[a : a + num_frames] += data[c, :, s]
                    seen[a : a + num_frames] += 1
                mask = votes * 2 >= np.maximum(seen, 1)
                mask &= votes > 0
                if mask.sum() < min_clean:
                    mask = any_active * 2 >= np.maximum(seen, 1)
                    mask &= any_active > 0
                if not mask.any():
                    continue
                runs = sorted(_runs(mask), key=lambda r: r[0] - r[1])  # longest first
                keep, got = [], 0
                for a, b in runs:
                    if got >= max_frames:
                        break
                    b = min(b, a + max_frames - got)
                    keep.append((a, b))
                    got += b - a
                keep.sort()
                t0 = window.start + lo * frame_s
                sr = SAMPLE_RATE
                pieces = [wav[int((t0 + a * frame_s) * sr) : int((t0 + b * frame_s) * sr)] for a, b in keep]
                items.append(np.concatenate(pieces))
                members.append(block)
                if len(items) >= 8 * self._embedder.batch_size:  # memory stays bounded on a 2-hour call
                    self._flush(items, members, out)
            self._flush(items, members, out)
            return out

        def _flush(self, items, members, out) -> None:
            if items:
                emb = self._embedder.embed(items)
                for e, block in zip(emb, members):
                    for c, s in block:
                        out[c, s] = e
                items.clear()
                members.clear()

    return CampplusSpeakerDiarization


def _label_times(ann: Annotation, label, step: float = 0.5) -> np.ndarray:
    return np.concatenate([np.arange(s.start, s.end, step) for s in ann.label_timeline(label, copy=False)] or [[]])


def merge_unsupported_voices(
    ann: Annotation, excl: Annotation, centroids: np.ndarray | None, min_s: float = 20.0, min_auc: float = 0.8
) -> tuple[Annotation, Annotation]:
    """Merge clusters down to two unless the least-heard one is a voice of its own.

    A threshold that separates two similar voices also splits one voice in two now and then
    (measured: sample.wav's second speaker, 30 s, in two clusters). A split voice's halves
    interleave through the call; a voice that takes over holds its own stretch. So the least-heard
    cluster must hold ``min_s`` seconds and be told apart from its nearest cluster (by centroid)
    by time alone (:func:`speechpipe.speakers.embedded.time_separation` >= ``min_auc``), or the two
    most similar clusters (centroid cosine) are merged, the less heard into the other — centroid
    agglomeration continued. Merging the least-heard cluster into its nearest instead went wrong
    when that cluster was a short but distinct voice and the split was elsewhere (dev00: its
    second speaker's 4 s, cosine 0.16 to the nearest, folded into the first speaker's halves, 0.51
    apart). ``centroids`` rows follow ``ann.labels()``.
    """
    from speechpipe.speakers.embedded import time_separation

    labels = list(ann.labels())
    if len(labels) < 3 or centroids is None or len(centroids) != len(labels):
        return ann, excl
    C = centroids / (np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-9)
    index = {lab: i for i, lab in enumerate(labels)}
    sim = lambda a, b: float(C[index[a]] @ C[index[b]])  # noqa: E731
    while len(labels) >= 3:
        small = min(labels, key=excl.label_duration)
        near = max((lab for lab in labels if lab != small), key=lambda lab: sim(small, lab))
        auc = time_separation(_label_times(excl, small), _label_times(excl, near))
        if excl.label_duration(small) >= min_s and auc >= min_auc:
            break
        pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
        a, b = max(pairs, key=lambda p: sim(*p))
        drop, keep = sorted((a, b), key=excl.label_duration)
        ann = ann.rename_labels(mapping={drop: keep}).support()
        excl = excl.rename_labels(mapping={drop: keep}).support()
        labels.remove(drop)
    return ann, excl


def _first_appearance(ann: Annotation, *others: Annotation) -> tuple[Annotation, ...]:
    """Rename labels to SPEAKER_00, 01, ... in order of first speech (same mapping on ``others``)."""
    order: dict = {}
    for _seg, _, lab in sorted(ann.itertracks(yield_label=True), key=lambda t: t[0].start):
        order.setdefault(lab, f"SPEAKER_{len(order):02d}")
    return tuple(a.rename_labels(mapping={k: v for k, v in order.items() if k in a.labels()}) for a in (ann, *others))


class NeuralDiarizer:
    """Mono diarisation: pyannote segmentation-3.0 + CAM++ + agglomerative clustering (shipped, offline).

    ``diarize`` returns the overlap-aware annotation (both speakers where both speak);
    ``diarize_both`` also the exclusive one, which word assignment uses.
    """

    name = "neural:segmentation-3.0+campplus"

    def __init__(self, config: NeuralConfig | None = None, device: str = "auto"):
        self.config = cfg = config or NeuralConfig()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        cuda = device.startswith("cuda")
        batch = cfg.batch_size_cuda if cuda else cfg.batch_size
        seg = load_segmentation(device)
        emb = load_embedder(device, batch)
        self.pipeline = _pipeline_class()(
            seg,
            emb,
            step=cfg.step,
            max_embed_s=cfg.max_embed_s,
            segmentation_batch_size=batch,
            embed_span_s=cfg.embed_span_s,
        )
        self.pipeline.instantiate(
            {
                "segmentation": {"min_duration_off": cfg.min_duration_off},
                "clustering": {
                    "method": cfg.method,
                    "min_cluster_size": cfg.min_cluster_size,
                    "threshold": cfg.threshold,
                },
            }
        )

    def diarize_both(self, audio, speech_probs=None) -> tuple[Annotation, Annotation]:
        """``(overlap-aware, exclusive)`` annotations of a recording (stereo is down-mixed)."""
        from speechpipe.speakers.base import as_audio

        audio = as_audio(audio)
        uri = Path(audio.path).stem
        x = np.ascontiguousarray(audio.mono, dtype=np.float32)
        if len(x) < SAMPLE_RATE // 2:  # under half a second: nothing to segment
            return Annotation(uri=uri), Annotation(uri=uri)
        cfg = self.config
        fine = self.device.startswith("cuda") or audio.duration < cfg.fine_below_s
        seg = self.pipeline._segmentation
        seg.step = (cfg.step_fine if fine else cfg.step) * seg.duration
        self.pipeline.embed_span_s = cfg.embed_span_s_fine if fine else cfg.embed_span_s
        out = self.pipeline(
            {"waveform": torch.from_numpy(x)[None], "sample_rate": SAMPLE_RATE, "uri": uri},
            min_speakers=self.config.min_speakers,
            max_speakers=self.config.max_speakers,
        )
        ann, excl = merge_unsupported_voices(
            out.speaker_diarization,
            out.exclusive_speaker_diarization,
            out.speaker_embeddings,
            cfg.third_min_s,
            cfg.third_time_auc,
        )
        if cfg.resegment is not None:
            ann, excl = resegment(x, ann, excl, self.pipeline._embedder, cfg.resegment)
        ann, excl = _first_appearance(ann, excl)
        # the last window is zero-padded past the end: no speech can be there
        whole = Segment(0.0, audio.duration)
        ann, excl = ann.crop(whole, mode="intersection"), excl.crop(whole, mode="intersection")
        ann.uri = excl.uri = uri
        return ann, excl

    def diarize(self, audio, speech_probs=None) -> Annotation:
        """Who spoke when, overlap kept (labels ``SPEAKER_00``, ...)."""
        return self.diarize_both(audio)[0]

    def assign(self, audio: AudioData, utterances, counsellor_channel: str = "auto", speech_probs=None):
        """Words onto the exclusive diarisation, roles from the overlap-aware one."""
        from speechpipe.speakers.assign import assign_mono

        ann, excl = self.diarize_both(audio)
        return assign_mono(ann, utterances, self.name, words_on=excl)
