"""Speech recognition: faster-whisper (CTranslate2), Norwegian, word timestamps.

Models are only ever loaded from local directories: the embedded multilingual
base model (assembled from two PyPI data packages by :mod:`speechpipe.asr.models`)
or any CTranslate2 Whisper directory the user passes (e.g. NB-Whisper).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from speechpipe.audio.vad import FRAME as VAD_FRAME
from speechpipe.audio.vad import speech_probabilities
from speechpipe.records import SAMPLE_RATE, Utterance, Word

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
    # 0 → the cores this process may use, shared out between the workers. CTranslate2's
    # own default is 4 threads, which oversubscribes a 2-core machine.
    cpu_threads: int = 0
    # Model replicas decoding in parallel. 0 → on the CPU one per core (at most 4), each
    # with one thread, and a call's speech clips are shared out between them: Whisper's
    # small per-step matrices keep one worker per core busier than 2 threads on one
    # worker (measured on an 8 kHz sim call, see docs/benchmarks.md); on a GPU 1.
    num_workers: int = 0
    # BatchedInferencePipeline decodes each speech clip on its own, so a hallucination
    # cannot feed the next window. Measured on the bundled demo call (robotic voice):
    # sequential WER 3.0/2.6 (repetition loops) vs batched 0.91/0.84, NPSC WER equal
    # (0.682), batched faster (19 s vs 41 s). None → batched on every device.
    batched: bool | None = None
    split_gap_s: float = 0.8  # a pause this long between words starts a new utterance
    # Blocks verbatim 3-token loops ("det er at det er at …") inside one clip; on the NPSC
    # clips it changes nothing (WER 0.682 either way).
    no_repeat_ngram_size: int = 3
    # Clips decoded together by the batched path. 0 → 16 on a GPU, 4 on the CPU: there a
    # bigger batch saves little CPU (2 min of a sim call, one replica: 26.5 / 25.8 / 25.3
    # CPU s at 1 / 4 / 16) but each clip's beams hold their own cross-attention cache
    # (peak RSS +74 / +298 / +414 MB).
    batch_size: int = 0
    extra: dict = field(default_factory=dict)


from speechpipe.asr.base import Speech  # noqa: E402


def default_cpu_threads() -> int:
    """CPUs this process may run on (affinity-aware, so containers count right)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


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

    By default it uses :class:`faster_whisper.BatchedInferencePipeline`, which
    decodes speech clips independently (in parallel on a GPU); ``batched=False``
    gives faster-whisper's sequential decoder.
    """

    def __init__(self, config: ASRConfig | None = None):
        from speechpipe.asr.models import ModelError, embedded_whisper_dir

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.config = cfg = config or ASRConfig()
        try:
            model_dir = check_model_dir(cfg.model) if cfg.model else embedded_whisper_dir()
        except ModelError as e:
            raise ASRError(str(e)) from e
        self.device = resolve_device(cfg.device)
        self.compute_type = cfg.compute_type or ("float16" if self.device == "cuda" else "int8")
        self.workers, self.threads = worker_layout(self.device, cfg.num_workers, cfg.cpu_threads)
        self.batch_size = cfg.batch_size or (16 if self.device == "cuda" else 4)
        self.model = WhisperModel(
            model_dir,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.threads,
            num_workers=self.workers,
            local_files_only=True,
        )
        use_batched = cfg.batched if cfg.batched is not None else True
        self.batched = BatchedInferencePipeline(self.model) if use_batched else None
        self._pool = None  # threads feeding the model replicas
        if self.workers > 1 and self.device == "cpu":  # shares a call's clips out (see _run_batched)
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="speechpipe-asr")
        self.model_dir = model_dir
        self.name = f"faster-whisper:{os.path.basename(os.path.normpath(model_dir))}:{self.device}:{self.compute_type}"

    def _vad_options(self):
        from faster_whisper.vad import VadOptions

        cfg = self.config
        return VadOptions(
            threshold=cfg.vad_threshold,
            min_silence_duration_ms=cfg.vad_min_silence_ms,
            speech_pad_ms=cfg.vad_speech_pad_ms,
        )

    def speech_regions(self, samples: np.ndarray, probs: np.ndarray | None = None) -> Speech:
        """Silero VAD speech regions of 16 kHz mono audio, in seconds.

        ``probs`` are Silero's per-32 ms-frame speech probabilities when the
        caller already has them (the pipeline computes them once per channel
        and shares them with the diariser); otherwise they are computed here.
        Regions match ``faster_whisper.vad.get_speech_timestamps`` exactly.

        Examples
        --------
        >>> asr.speech_regions(np.zeros(16000, np.float32))  # doctest: +SKIP
        []
        """
        samples = np.asarray(samples, np.float32)
        if probs is None:
            probs = speech_probabilities(samples)
        chunks = silero_regions(probs, len(samples), self._vad_options())
        return [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in chunks]

    def _options(self) -> dict:
        cfg = self.config
        return dict(
            language=cfg.language,
            beam_size=cfg.beam_size,
            temperature=list(cfg.temperature),
            initial_prompt=cfg.initial_prompt,
            word_timestamps=True,
            condition_on_previous_text=False,  # stops runaway repetition loops
            no_repeat_ngram_size=cfg.no_repeat_ngram_size,
            **cfg.extra,
        )

    def _run_sequential(self, samples: np.ndarray, speech: Speech):
        # What WhisperModel.transcribe(vad_filter=True) does inside, with our own
        # speech regions: decode only the concatenated speech, then map times back.
        from faster_whisper.transcribe import restore_speech_timestamps
        from faster_whisper.vad import collect_chunks

        chunks = [{"start": int(a * SAMPLE_RATE), "end": int(b * SAMPLE_RATE)} for a, b in speech]
        pieces, _meta = collect_chunks(samples, chunks)
        segments, _info = self.model.transcribe(np.concatenate(pieces), vad_filter=False, **self._options())
        return restore_speech_timestamps(segments, chunks, SAMPLE_RATE)

    def _run_batched(self, samples: np.ndarray, speech: Speech):
        from faster_whisper import BatchedInferencePipeline

        opts = self._options()
        opts.pop("condition_on_previous_text")
        clips = clips_for_batches(speech)
        if not clips:
            return []
        bs = self.batch_size

        def decode(group):
            # One pipeline object per call: it keeps per-run state (last word end).
            pipe = self.batched if self.workers == 1 else BatchedInferencePipeline(self.model)
            return list(pipe.transcribe(samples, batch_size=bs, clip_timestamps=group, **opts)[0])

        if self.workers == 1 or self.device != "cpu":
            # One request, batched by the pipeline itself; on a GPU, replicas serve concurrent
            # calls (calls in flight), and one big batch per call keeps the device busiest.
            return decode(clips)
        groups = shard_clips(clips, self.workers, bs)
        if len(groups) == 1:
            return decode(groups[0])
        # CTranslate2 releases the GIL, so each thread keeps one model replica busy.
        return [seg for part in self._pool.map(decode, groups) for seg in part]

    def _transcribe_blocks(self, samples, bounds, progress, speech) -> list[Utterance]:
        out = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            off, end = a / SAMPLE_RATE, b / SAMPLE_RATE
            sub = (
                None
                if speech is None
                else [(max(s, off) - off, min(e, end) - off) for s, e in speech if e > off and s < end]
            )
            p = None if progress is None else (lambda sec, off=off: progress(off + sec))
            for u in self.transcribe(samples[a:b], progress=p, speech=sub):
                u.start, u.end = u.start + off, u.end + off
                for w in u.words:
                    w.start, w.end = w.start + off, w.end + off
                out.append(u)
        return out

    def transcribe(self, samples: np.ndarray, progress=None, speech: Speech | None = None) -> list[Utterance]:
        """Recognise one channel.

        Parameters
        ----------
        samples : np.ndarray
            1-D float32 audio at 16 kHz.
        progress : callable, optional
            Called with seconds of audio done, for progress bars.
        speech : list of (start, end), optional
            Speech regions in seconds from :meth:`speech_regions` (or any VAD);
            computed here when not given. Passing them lets VAD run once per call.
        """
        samples = np.asarray(samples, np.float32)
        from speechpipe.audio import block_bounds

        bounds = block_bounds(samples)
        if len(bounds) > 2:  # long call: block by block so memory stays flat (see audio.BLOCK_S)
            return self._transcribe_blocks(samples, bounds, progress, speech)
        if speech is None:
            speech = self.speech_regions(samples)
        if self.batched is not None:
            segments = self._run_batched(samples, speech)
        else:
            segments = self._run_sequential(samples, speech) if speech else []
        out = []
        for seg in segments:  # sequential path: a generator, decoding happens while we iterate
            words = [Word(w.word.strip(), float(w.start), float(w.end), float(w.probability)) for w in seg.words or []]
            words = [w for w in words if w.text]
            text = seg.text.strip()
            if not text:
                continue
            if words:
                out.extend(split_utterances(words, self.config.split_gap_s))
            else:
                out.append(Utterance(speaker="unknown", start=float(seg.start), end=float(seg.end), text=text))
            if progress is not None:
                progress(float(seg.end))
        if progress is not None:
            progress(len(samples) / SAMPLE_RATE)
        return out


def split_utterances(words: list[Word], gap_s: float = 0.8) -> list[Utterance]:
    """Cut a decoded segment into utterances at sentence ends and pauses.

    A Whisper segment (a clip of up to 30 s) can hold several turns of one
    party; the tagger and the report need them apart, as a transcriber would.

    Examples
    --------
    >>> ws = [Word("Ja.", 0.0, 0.3), Word("Hva", 2.0, 2.2), Word("skjer?", 2.2, 2.6)]
    >>> [u.text for u in split_utterances(ws)]
    ['Ja.', 'Hva skjer?']
    """
    groups: list[list[Word]] = []
    for w in words:
        if groups and not groups[-1][-1].text.endswith((".", "?", "!")) and w.start - groups[-1][-1].end < gap_s:
            groups[-1].append(w)
        else:
            groups.append([w])
    return [
        Utterance(speaker="unknown", start=g[0].start, end=g[-1].end, text=" ".join(w.text for w in g), words=g)
        for g in groups
    ]


def worker_layout(device: str, num_workers: int = 0, cpu_threads: int = 0) -> tuple[int, int]:
    """Model replicas and CTranslate2 threads per replica.

    0 means automatic: on the CPU one single-threaded replica per core (at most
    4, so a large model's memory stays bounded); on a GPU one replica.

    Examples
    --------
    >>> worker_layout("cpu", 2, 1)
    (2, 1)
    >>> worker_layout("cuda", 0, 0)[0]
    1
    """
    cores = default_cpu_threads()
    workers = num_workers or (min(4, cores) if device == "cpu" else 1)
    threads = cpu_threads or max(1, cores // workers)
    return workers, threads


def shard_clips(clips: list[dict], workers: int, batch_size: int = 16) -> list[list[dict]]:
    """Split clips into contiguous groups, about equal in audio, for parallel workers.

    At least ``workers`` groups (when there are that many clips), each of at most
    ``batch_size`` clips; concatenating the groups gives the clips back in order.

    Examples
    --------
    >>> cs = [{"start": float(i), "end": i + 1.0} for i in range(5)]
    >>> [len(g) for g in shard_clips(cs, 2)]
    [3, 2]
    """
    batches = -(-len(clips) // batch_size)
    n = min(len(clips), workers * -(-batches // workers))  # a multiple of workers: no straggler
    if n <= 1:
        return [clips] if clips else []
    dur = np.cumsum([c["end"] - c["start"] for c in clips])
    # Cut where the running duration crosses k/n of the total (at least one clip a group).
    cuts = np.searchsorted(dur, dur[-1] * np.arange(1, n) / n, side="left") + 1
    cuts = np.clip(np.maximum.accumulate(np.maximum(cuts, np.arange(1, n))), 1, len(clips) - 1)
    bounds = [0, *sorted(set(cuts.tolist())), len(clips)]
    return [clips[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def clips_for_batches(speech: Speech, max_s: float = 30.0) -> list[dict]:
    """Group speech regions into clips of at most ``max_s`` seconds for batched decoding.

    Whisper sees 30 s windows; longer regions are cut, neighbours are merged
    while the span fits (the short gaps between them are kept).

    Examples
    --------
    >>> clips_for_batches([(0.0, 5.0), (6.0, 20.0), (25.0, 70.0)])
    [{'start': 0.0, 'end': 20.0}, {'start': 25.0, 'end': 55.0}, {'start': 55.0, 'end': 70.0}]
    """
    pieces = []
    for a, b in speech:
        while b - a > max_s:
            pieces.append((a, a + max_s))
            a += max_s
        if b > a:
            pieces.append((a, b))
    clips: list[dict] = []
    for a, b in pieces:
        if clips and b - clips[-1]["start"] <= max_s:
            clips[-1]["end"] = b
        else:
            clips.append({"start": a, "end": b})
    return clips


def silero_regions(probs: np.ndarray, n_samples: int, opts) -> list[dict]:
    """Speech chunks (sample offsets) from frame probabilities.

    The post-processing of ``faster_whisper.vad.get_speech_timestamps``
    (itself adapted from Silero VAD, MIT), split from the model call so the
    probabilities can be computed once and shared between stages.
    """
    threshold = opts.threshold
    neg_threshold = opts.neg_threshold if opts.neg_threshold is not None else max(threshold - 0.15, 0.01)
    sr, win = SAMPLE_RATE, VAD_FRAME
    min_speech = sr * opts.min_speech_duration_ms / 1000
    pad = sr * opts.speech_pad_ms / 1000
    max_speech = sr * opts.max_speech_duration_s - win - 2 * pad
    min_silence = sr * opts.min_silence_duration_ms / 1000
    min_silence_at_max = sr * 98 / 1000

    triggered = False
    speeches: list[dict] = []
    cur: dict = {}
    temp_end = prev_end = next_start = 0
    for i, p in enumerate(probs):
        if p >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = win * i
        if p >= threshold and not triggered:
            triggered = True
            cur["start"] = win * i
            continue
        if triggered and win * i - cur["start"] > max_speech:
            if prev_end:
                cur["end"] = prev_end
                speeches.append(cur)
                cur = {}
                if next_start < prev_end:
                    triggered = False
                else:
                    cur["start"] = next_start
                prev_end = next_start = temp_end = 0
            else:
                cur["end"] = win * i
                speeches.append(cur)
                cur = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if p < neg_threshold and triggered:
            if not temp_end:
                temp_end = win * i
            if win * i - temp_end > min_silence_at_max:
                prev_end = temp_end
            if win * i - temp_end < min_silence:
                continue
            cur["end"] = temp_end
            if cur["end"] - cur["start"] > min_speech:
                speeches.append(cur)
            cur = {}
            prev_end = next_start = temp_end = 0
            triggered = False
            continue
    if cur and n_samples - cur["start"] > min_speech:
        cur["end"] = n_samples
        speeches.append(cur)

    for i, sp in enumerate(speeches):
        if i == 0:
            sp["start"] = int(max(0, sp["start"] - pad))
        if i != len(speeches) - 1:
            gap = speeches[i + 1]["start"] - sp["end"]
            if gap < 2 * pad:
                sp["end"] += int(gap // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - gap // 2))
            else:
                sp["end"] = int(min(n_samples, sp["end"] + pad))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - pad))
        else:
            sp["end"] = int(min(n_samples, sp["end"] + pad))
    return speeches
