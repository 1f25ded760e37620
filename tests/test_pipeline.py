"""The pipeline's scheduling: speaker turns computed from the audio while Whisper recognises the call."""

from __future__ import annotations

import threading

import numpy as np
from pyannote.core import Annotation, Segment

from speechpipe.pipeline import Pipeline, _torch_threads
from speechpipe.records import AudioData, Utterance, Word


class _FakeASR:
    """The transcriber interface on the CPU; subclasses decide what ``transcribe`` waits for."""

    name = "fake"
    workers = 1
    device = "cpu"

    def speech_regions(self, samples, probs=None):
        return [(0.0, len(samples) / 16000)]


class _WaitingASR(_FakeASR):
    """Recognises only once the diariser has run: a pipeline that diarises after ASR would stall here."""

    def __init__(self, diarised: threading.Event):
        self.diarised = diarised
        self.saw_turns_first: list[bool] = []

    def transcribe(self, samples, progress=None, speech=None):
        # generous: the speakers thread imports pyannote/torch on first use, slow on a loaded machine
        self.saw_turns_first.append(self.diarised.wait(timeout=120))
        return [Utterance("unknown", 0.2, 1.0, "hei der", words=[Word("hei", 0.2, 0.5), Word("der", 0.5, 1.0)])]


class _SignallingDiarizer:
    name = "signalling"

    def __init__(self, diarised: threading.Event):
        self.diarised = diarised
        self.threads: list[str] = []

    def diarize(self, audio, speech_probs=None) -> Annotation:
        self.threads.append(threading.current_thread().name)
        ann = Annotation()
        ann[Segment(0.0, 1.5)] = "A"
        self.diarised.set()
        return ann


def _audio(i: int) -> AudioData:
    rng = np.random.default_rng(i)
    return AudioData(f"call-{i}.wav", (0.01 * rng.standard_normal((1, 32000))).astype(np.float32), 16000)


def test_speaker_turns_run_beside_recognition():
    from speechpipe.config import PipelineConfig

    for many in (False, True):
        diarised = threading.Event()
        asr, dia = _WaitingASR(diarised), _SignallingDiarizer(diarised)
        pipe = Pipeline(PipelineConfig(prosody=False, tag=False), asr=asr, diarizer=dia)
        if many:
            results = [r for _, r in pipe.process_many([_audio(1)], call_ids=["c1"])]
        else:
            results = [pipe.process(_audio(1), call_id="c1")]
        assert asr.saw_turns_first == [True], "the diariser must not wait for Whisper"
        assert dia.threads and all(t.startswith("speechpipe-speakers") for t in dia.threads)
        (res,) = results
        assert [w.text for u in res.utterances for w in u.words] == ["hei", "der"]
        assert [(t.start, t.end) for t in res.turns] == [(0.0, 1.5)]
        assert "diarization" in res.models["timings_s"]


def test_torch_threads_capped_then_restored():
    import torch

    before = torch.get_num_threads()
    with _torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with _torch_threads(None):  # no cap (Whisper on a GPU)
        assert torch.get_num_threads() == before


class _LengthASR(_FakeASR):
    """Recognises the 1 s call only after the 2 s call has been diarised (so diarisation runs ahead)."""

    workers = 2

    def __init__(self, diarised_2s: threading.Event):
        self.diarised_2s = diarised_2s

    def transcribe(self, samples, progress=None, speech=None):
        if len(samples) == 16000:
            assert self.diarised_2s.wait(timeout=20)
        return []


class _NamingDiarizer:
    """Names itself after the call it diarised last, as ``--diarizer auto`` does (stereo or neural)."""

    name = "none"

    def __init__(self, diarised_2s: threading.Event):
        self.diarised_2s = diarised_2s

    def diarize(self, audio, speech_probs=None) -> Annotation:
        self.name = f"picked-for-{audio.samples.shape[1] // 16000}s"
        if audio.samples.shape[1] == 32000:
            self.diarised_2s.set()
        return Annotation()


def test_each_call_names_the_diariser_that_ran_on_it():
    from speechpipe.config import PipelineConfig

    ev = threading.Event()
    pipe = Pipeline(PipelineConfig(prosody=False, tag=False), asr=_LengthASR(ev), diarizer=_NamingDiarizer(ev))
    one = AudioData("one.wav", np.zeros((1, 16000), np.float32), 16000)
    two = AudioData("two.wav", np.zeros((1, 32000), np.float32), 16000)
    got = {r.call_id: r.models["diarizer"] for _, r in pipe.process_many([one, two], call_ids=["one", "two"])}
    assert got == {"one": "picked-for-1s", "two": "picked-for-2s"}
