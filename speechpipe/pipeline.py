"""The call pipeline: audio → ASR → speakers/roles → prosody → tagger → outputs.

Each stage sits behind a small interface and is built once per
:class:`Pipeline` (models load once per worker, never per file).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from speechpipe.asr.base import Transcriber
from speechpipe.config import PipelineConfig
from speechpipe.prosody.base import Prosody
from speechpipe.records import AudioData, CallResult, Utterance, call_id_for
from speechpipe.speakers.base import Diarizer
from speechpipe.tagging.base import Tagger


class Pipeline:
    """Process call recordings into :class:`CallResult` records.

    Examples
    --------
    >>> pipe = Pipeline(PipelineConfig())           # doctest: +SKIP
    >>> result = pipe.process("demo/demo-call.flac")  # doctest: +SKIP
    >>> result.utterances[0].speaker                  # doctest: +SKIP
    'counsellor'
    """

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        asr: Transcriber | None = None,
        diarizer: Diarizer | None = None,
        prosody: Prosody | None = None,
        tagger: Tagger | None = None,
    ):
        self.config = config or PipelineConfig()
        # Stages passed in are used as they are; the others are built from the config on first use.
        self._asr = asr
        self._diarizer = diarizer
        self._prosody = prosody
        self._tagger = tagger

    # Stages are built lazily so `tag`-only runs never load Whisper.
    @property
    def asr(self):
        if self._asr is None:
            from speechpipe.asr.whisper import WhisperTranscriber

            self._asr = WhisperTranscriber(self.config.asr)
        return self._asr

    @property
    def diarizer(self):
        if self._diarizer is None:
            from speechpipe.speakers.diarization import build_diarizer

            self._diarizer = build_diarizer(self.config)
        return self._diarizer

    @property
    def prosody(self):
        if self._prosody is None:
            from speechpipe.prosody.analyzer import ProsodyAnalyzer

            self._prosody = ProsodyAnalyzer(self.config.prosody_config)
        return self._prosody

    @property
    def tagger(self):
        if self._tagger is None:
            from speechpipe.tagging.tagger import load_tagger

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
        from concurrent.futures import ThreadPoolExecutor

        # The diariser needs only the audio: it runs beside Whisper instead of after it.
        with ThreadPoolExecutor(1, thread_name_prefix="speechpipe-speakers") as speakers:
            job = self._recognise(path, call_id, progress, speakers)
            return self._finish(job, counsellor_channel)

    def process_many(
        self,
        paths: Iterable[str | Path],
        call_ids: Iterable[str | None] | None = None,
        counsellor_channels: Iterable[str | None] | None = None,
    ) -> Iterator[tuple[str | Path | AudioData, CallResult | Exception]]:
        """Process calls in order, recognising several at once and finishing them alongside.

        Yields ``(path, result)`` per input, in input order, or ``(path, error)``
        when that file failed (one bad file never stops the run). As many calls
        are recognised at once as the transcriber has model replicas
        (``asr.workers``: one per core on the CPU), so short calls keep every
        core busy too; diarisation, prosody and tagging of finished calls run in
        a helper thread meanwhile. Memory is bounded: at most ``workers`` calls
        are being recognised and ``workers`` more wait to be finished or yielded.

        Examples
        --------
        >>> for path, res in Pipeline().process_many(["a.wav", "b.wav"]):  # doctest: +SKIP
        ...     print(path, res.call_id if isinstance(res, CallResult) else res)
        """
        from itertools import repeat

        # Lazily: a batch engine's inputs may still be being hashed.
        yield from self.process_stream(zip(
            paths,
            repeat(None) if call_ids is None else call_ids,
            repeat(None) if counsellor_channels is None else counsellor_channels,
        ))

    def process_stream(self, inputs: Iterable[tuple]) -> Iterator[tuple]:
        """:meth:`process_many` over ``(source, call_id, counsellor_channel)`` tuples.

        A source is a path, pre-decoded :class:`AudioData`, or an exception
        (an input known bad before decoding: it is yielded back, in order).
        """
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor
        from itertools import chain

        todo = iter(inputs)
        first = next(todo, None)
        if first is None:  # nothing to do: load no model
            return
        todo = chain([first], todo)
        self._build_finishers()  # build in this thread: lazy properties are not thread-safe
        in_flight = max(1, int(getattr(self.asr, "workers", 1)))
        recognising: deque = deque()  # (path, chan, future of _Job), input order
        finishing: deque = deque()  # (path, future of CallResult | Exception), input order
        # Three pools: recognition (Whisper), speaker turns (the diariser, from the audio alone, so it
        # runs while Whisper recognises the same call), and finishing (words onto turns, prosody, tags).
        with ThreadPoolExecutor(in_flight, thread_name_prefix="speechpipe-recognise") as rec, \
                ThreadPoolExecutor(1, thread_name_prefix="speechpipe-speakers") as speakers, \
                ThreadPoolExecutor(1, thread_name_prefix="speechpipe-finish") as fin:

            def submit() -> None:
                nxt = next(todo, None)
                if nxt is not None:
                    path, cid, chan = nxt
                    recognising.append((path, chan, rec.submit(self._recognise, path, cid, None, speakers)))

            for _ in range(in_flight):
                submit()
            while recognising:
                path, chan, fut = recognising.popleft()
                try:
                    job = fut.result()
                except Exception as e:  # decode/ASR failed: reported in order
                    finishing.append((path, e))
                else:
                    finishing.append((path, fin.submit(self._finish, job, chan)))
                submit()
                # Yield what is done, in order; wait for the oldest when too many are held.
                while finishing and (_ready(finishing[0][1]) or len(finishing) > in_flight):
                    p, f = finishing.popleft()
                    yield p, _outcome(f)
            while finishing:
                p, f = finishing.popleft()
                yield p, _outcome(f)

    def _build_finishers(self) -> None:
        _ = self.diarizer
        if self.config.prosody:
            _ = self.prosody
        if self.config.tag:
            _ = self.tagger

    def _recognise(self, path, call_id=None, progress=None, speakers=None) -> "_Job":
        """Decode once, VAD once per channel, ASR: the part that needs the Whisper model.

        ``speakers``: an executor that computes the call's speaker turns meanwhile (else
        :meth:`_finish` computes them).
        """
        from speechpipe.audio import load_audio
        from speechpipe.audio.vad import speech_probabilities

        if isinstance(path, BaseException):
            raise path
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        audio = path if isinstance(path, AudioData) else load_audio(path)  # batch engines pre-decode
        # Before any VAD or ASR: a stereo file carrying one signal twice (or one silent channel) is
        # one mono call, not two parties that each said every sentence.
        from speechpipe.audio.layout import apply_channel_layout

        audio = apply_channel_layout(audio, self.config.channel_layout)
        timings["decode"] = time.perf_counter() - t0

        asr = self.asr
        t = time.perf_counter()
        # Silero runs once per channel; ASR and the diariser both read these.
        probs = [speech_probabilities(audio.samples[ch]) for ch in range(audio.channels)]
        speech = [asr.speech_regions(audio.samples[ch], probs[ch]) for ch in range(audio.channels)]
        timings["vad"] = time.perf_counter() - t
        turns = None if speakers is None else speakers.submit(self._speaker_turns, audio, probs)

        t = time.perf_counter()
        utterances: list[Utterance] = []
        total = audio.duration * audio.channels
        for ch in range(audio.channels):
            base = ch * audio.duration

            def _p(sec, base=base):
                if progress:
                    progress(min(total, base + sec), total)

            for u in asr.transcribe(audio.samples[ch], progress=_p, speech=speech[ch]):
                if audio.channels == 2:
                    u.channel = ch
                utterances.append(u)
        utterances.sort(key=lambda u: (u.start, u.end))
        timings["asr"] = time.perf_counter() - t
        return _Job(call_id or call_id_for(audio.path), audio, utterances, speech, probs, timings, t0, turns)

    def _speaker_turns(self, audio: AudioData, probs: list) -> tuple:
        """``((annotation, diariser name), seconds)``: who spoke when, from the audio alone."""
        from speechpipe.speakers.assign import speaker_turns

        t = time.perf_counter()
        with _torch_threads(self._cores_beside_asr()):
            turns = speaker_turns(self.diarizer, audio, probs)
        return turns, time.perf_counter() - t

    def _cores_beside_asr(self) -> int | None:
        """CPU threads the diariser may use while Whisper runs: the cores Whisper's CPU workers leave.

        Without this limit torch's thread team and the Whisper workers oversubscribe the cores, and
        spinning threads made diarisation 10–60× slower on a 2-core machine (measured).
        """
        asr = self._asr
        if asr is None or getattr(asr, "device", "cpu") != "cpu":
            return None
        from speechpipe.asr.whisper import default_cpu_threads

        used = int(getattr(asr, "workers", 1)) * int(getattr(asr, "threads", 1))
        return max(1, default_cpu_threads() - used)

    def _finish(self, job: "_Job", counsellor_channel: str | None = None) -> CallResult:
        """Speakers/roles, prosody, tagging and the result record (no Whisper needed)."""
        audio, utterances, timings = job.audio, job.utterances, job.timings
        # Turns come from the audio (the diariser reuses the Silero pass); words hang on them,
        # and turn speech with no words stays as untranscribed utterances (speakers.assign).
        from speechpipe.speakers.assign import assign_words

        speaker_turns, diarise_s = (job.turns.result() if job.turns is not None
                                    else self._speaker_turns(audio, job.speech_probs))
        t = time.perf_counter()
        utterances, turns, roles = assign_words(
            self.diarizer, audio, utterances,
            counsellor_channel=counsellor_channel or self.config.counsellor_channel,
            speech_probs=job.speech_probs, diarised=speaker_turns,
        )
        # The diariser's own time (spent beside Whisper when run from process/process_many) + assignment.
        timings["diarization"] = diarise_s + time.perf_counter() - t
        if self.config.prosody:
            # Short listener turns (a «mm» the recogniser left out) become one utterance each, measured below.
            from speechpipe.prosody.backchannel import short_listener_turns
            from speechpipe.prosody.register import relabel_by_register

            # Mono: a «ja» the diariser gave to the talker, voiced in the listener's register, is the listener's.
            utterances, turns = relabel_by_register(audio, utterances, turns, getattr(self.prosody, "tracker", None))
            utterances = short_listener_turns(utterances, turns)

        events = []
        if self.config.prosody:
            t = time.perf_counter()
            events = self.prosody.analyse(audio, utterances)
            timings["prosody"] = time.perf_counter() - t

        summary: dict = {}
        if self.config.tag and utterances:  # a call without speech has nothing to tag
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

        if not utterances:  # silence, noise or hold music is a valid call: say why it is empty
            summary["no_speech_reason"] = no_speech_reason(audio, job.speech)
        result = CallResult(
            call_id=job.call_id,
            utterances=utterances,
            audio=audio.info(),
            models={
                "asr": self.asr.name,
                "diarizer": speaker_turns[1] or None,  # the one that ran on this call (auto picks per call)
                "tagger": getattr(self._tagger, "name", None),
                "prosody": getattr(self._prosody, "name", None),
            },
            events=events,
            summary=summary,
            roles=roles,
            turns=turns,
        )
        if self.config.redact:
            from speechpipe.redact import redact_call

            result = redact_call(result)
        from speechpipe.analytics.call import analyse_call  # interaction measures and rule categories

        analyse_call(result, audio, self.config.rules)
        # Wall time from decode start; in process_many it includes waiting for the finisher.
        timings["total"] = time.perf_counter() - job.t0
        result.models["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        return result


@contextmanager
def _torch_threads(n: int | None):
    """Cap torch's intra-op threads at ``n`` for the block (process-wide: torch has no per-thread setting)."""
    import torch

    old = torch.get_num_threads()
    if n is not None and n < old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def no_speech_reason(audio: AudioData, speech: list) -> str:
    """Why a call has no utterances, for ``summary.no_speech_reason``."""
    import numpy as np

    if audio.samples.size == 0:
        return "empty recording (no samples)"
    if float(np.max(np.abs(audio.samples))) < 1e-4:  # below -80 dBFS everywhere
        return "silence: no sound above -80 dBFS"
    if not any(len(regions) for regions in speech):
        return "no speech detected by the voice activity detector (noise, music or tones)"
    return "speech-like sound, but no words were recognised"


@dataclass
class _Job:
    """A recognised call waiting for the CPU stages."""

    call_id: str
    audio: AudioData
    utterances: list[Utterance]
    speech: list  # per channel: ASR speech regions [(start, end), ...] in seconds
    speech_probs: list  # per channel: Silero probability per 32 ms frame
    timings: dict[str, float]
    t0: float
    # Future of ((speaker-turn annotation, diariser name), seconds), or None: computed when finishing
    turns: object = None


def _ready(item) -> bool:
    return isinstance(item, Exception) or item.done()


def _outcome(item) -> CallResult | Exception:
    if isinstance(item, Exception):
        return item
    try:
        return item.result()
    except Exception as e:
        return e
