"""Speed work must not change results; the bench JSON keeps its contract.

No timing is asserted here (benchmarks live in ``benchmarks/``): these tests
check that the faster paths give the same outputs as the plain ones.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from speechpipe.asr.whisper import ASRConfig, clips_for_batches, silero_regions
from speechpipe.audio import load_audio
from speechpipe.audio.vad import speech_probabilities

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def sim_excerpt(shared):
    """First 40 s of a simulated 8 kHz call, decoded to 16 kHz."""
    return load_audio(shared / "audio" / "sim-calls" / "dev-002.mono.wav").mono[: 40 * 16000]


@pytest.fixture(scope="session")
def norwegian(shared):
    base = shared / "audio" / "real" / "norwegian-medium-8s"
    return load_audio(base.with_suffix(".mp3")).mono, base.with_suffix(".ref.txt").read_text(encoding="utf-8")


def test_split_vad_matches_faster_whisper(sim_excerpt, shared):
    """Probabilities computed once + our post-processing == faster-whisper's own VAD."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    real = load_audio(shared / "audio" / "realconv" / "rcdev-01.tel.wav").mono
    for x in (sim_excerpt, real):
        probs = speech_probabilities(x)
        for opts in (
            VadOptions(threshold=0.5, min_silence_duration_ms=500, speech_pad_ms=200),
            VadOptions(max_speech_duration_s=30, min_silence_duration_ms=160),
        ):
            expected = get_speech_timestamps(x, opts)
            assert len(expected) > 0
            assert silero_regions(probs, len(x), opts) == expected


def test_transcribe_same_as_plain_faster_whisper(embedded_transcriber, norwegian):
    """Our VAD-once path reproduces WhisperModel.transcribe(vad_filter=True) word for word."""
    x, _ref = norwegian
    asr = embedded_transcriber
    cfg = asr.config
    segs, _ = asr.model.transcribe(
        x, vad_filter=True,
        vad_parameters=dict(threshold=cfg.vad_threshold, min_silence_duration_ms=cfg.vad_min_silence_ms,
                            speech_pad_ms=cfg.vad_speech_pad_ms),
        **asr._options(),
    )
    plain = [(w.word.strip(), round(w.start, 2), round(w.end, 2)) for s in segs for w in s.words]
    speech = asr.speech_regions(x)
    batched, asr.batched = asr.batched, None  # the sequential path is the one that mirrors plain transcribe()
    try:
        ours = [(w.text, round(w.start, 2), round(w.end, 2)) for u in asr.transcribe(x, speech=speech) for w in u.words]
    finally:
        asr.batched = batched
    assert len(plain) >= 5
    assert ours == [p for p in plain if p[0]]


def test_clips_for_batches_cover_speech_within_30s():
    speech = [(0.5, 3.0), (3.4, 20.0), (22.0, 95.0), (96.0, 97.0)]
    clips = clips_for_batches(speech)
    assert all(c["end"] - c["start"] <= 30.0 + 1e-9 for c in clips)
    covered = lambda t: any(c["start"] <= t <= c["end"] for c in clips)  # noqa: E731
    for a, b in speech:
        assert all(covered(t) for t in np.linspace(a, b, 50))
    assert [c["start"] for c in clips] == sorted(c["start"] for c in clips)


def test_batched_path_runs_on_cpu(norwegian):
    """The CUDA path (BatchedInferencePipeline) exercised on CPU: same words, in the clip."""
    from speechpipe.asr.whisper import WhisperTranscriber
    from speechpipe.evaluation import word_error_rate

    x, ref = norwegian
    asr = WhisperTranscriber(ASRConfig(device="cpu", batched=True, batch_size=4))
    assert asr.batched is not None
    for speech in (None, asr.speech_regions(x)):
        utts = asr.transcribe(x, speech=speech)
        words = [w for u in utts for w in u.words]
        assert words and all(0 <= w.start <= w.end <= len(x) / 16000 + 0.5 for w in words)
        # Whisper base on NPSC: sequential WER is ~0.7 on this clip; batched must not be worse by much.
        assert word_error_rate([ref], [" ".join(u.text for u in utts)]) <= 0.85


@pytest.fixture(scope="session")
def two_short_calls(shared, tmp_path_factory):
    """Two 4 s stereo excerpts (cheap channel diarisation), each with speech on both sides."""
    data, sr = sf.read(shared / "audio" / "sim-calls" / "dev-001.stereo.flac", dtype="float32")
    d = tmp_path_factory.mktemp("calls")
    paths = []
    for i, start in enumerate((2.5, 12.5)):  # greeting/reply and congratulations/thanks turns
        p = d / f"part{i}.flac"
        sf.write(p, data[int(start * sr) : int((start + 4) * sr)], sr)
        paths.append(p)
    return paths


def test_process_many_equals_process(embedded_transcriber, two_short_calls, tmp_path):
    """Overlapping stages across calls changes nothing; a bad file is reported in order."""
    from speechpipe.config import PipelineConfig
    from speechpipe.pipeline import Pipeline

    # the session's model, passed in as the ASR stage: never load it twice
    pipe = Pipeline(PipelineConfig(asr=embedded_transcriber.config, prosody=False, tag=False), asr=embedded_transcriber)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    inputs = [two_short_calls[0], bad, two_short_calls[1]]
    many = list(pipe.process_many(inputs))
    assert [p for p, _ in many] == inputs
    assert isinstance(many[1][1], Exception) and "bad.wav" in str(many[1][1])
    for path, res in (many[0], many[2]):
        one = pipe.process(path).to_dict()
        got = res.to_dict()
        for d in (one, got):
            d["models"].pop("timings_s")
        assert got == one
        assert got["utterances"], "each excerpt has speech"
    # process_stream (the batch engine's entry): an input known bad before decoding comes back as
    # its own error, in order, and call ids are kept
    known = ValueError("known bad before decoding")
    out = list(pipe.process_stream([(known, "x", None), (two_short_calls[0], "c0", None)]))
    assert out[0] == (known, known)
    assert out[1][1].call_id == "c0"


def test_bench_json_contract():
    """`bench --smoke --json`: last stdout line is one JSON object with every required key."""
    from benchmarks.bench import REQUIRED

    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--smoke", "--json", "--stages", "pipeline,nosuchstage"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in list(REQUIRED) + ["peak_rss_mb", "machine", "stages"]:
        assert key in res
    assert res["stages"]["pipeline"] == "ok"
    assert res["stages"]["nosuchstage"].startswith("unavailable")
    assert res["pipeline_x_realtime_cpu"] > 0
    assert res["peak_rss_mb"] > 100  # Whisper + the stage models were really loaded
    m = res["machine"]
    assert m["cores"] >= 1 and m["python"] and m["ctranslate2"] and m["torch"]
    stages = res["pipeline_stage_seconds"]
    assert stages["asr"] > 0 and stages["decode"] >= 0


def test_gpu_benchmark_path_on_cpu(norwegian):
    """bench_asr's GPU configuration (batched, several calls in flight) run on the CPU."""
    from benchmarks import bench_asr

    x, _ref = norwegian
    m = bench_asr.run(device="cpu", calls=[x, x[: 5 * 16000]], smoke=True, in_flight=2, batched=True)
    assert m["asr_settings"]["batched"] and m["asr_settings"]["in_flight"] == 2
    assert m["asr_x_realtime"] > 0 and m["asr_baseline_x_realtime"] > 0
    assert m["asr_audio_seconds"] == pytest.approx((len(x) + 5 * 16000) / 16000, abs=0.1)
