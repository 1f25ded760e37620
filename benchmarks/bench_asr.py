"""ASR speed: speechpipe's transcriber vs a plain faster-whisper loop, same run.

The baseline is how most people run faster-whisper: one ``WhisperModel``, a
sequential loop of ``model.transcribe(audio, beam_size=5, language=...,
word_timestamps=True)`` with the library's defaults otherwise (temperature
fallback, conditioning on previous text, no VAD). speechpipe's path is
``WhisperTranscriber`` with its defaults: Silero VAD, no fallback, and on CUDA
the batched float16 pipeline with several calls in flight.

Accuracy is guarded in the same run: WER of both on the real Norwegian clips.

Run: ``.venv/bin/python -m benchmarks.bench_asr [--quick]``
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import peak_rss_mb, shared_dir, sim_calls

QUICK_SECONDS = 20.0
SMOKE_SECONDS = 5.0


def load_calls(quick: bool, n_full: int, seconds: float = QUICK_SECONDS) -> list[np.ndarray]:
    """16 kHz mono arrays of the 8 kHz sim calls (quick: one ``seconds`` excerpt)."""
    from speechpipe.audio import load_audio

    paths = sim_calls(1 if quick else n_full, shortest=True)
    if not paths:
        raise FileNotFoundError("shared sim calls not found (set SPEECHPIPE_SHARED)")
    calls = [load_audio(p).mono for p in paths]
    if quick:
        calls = [calls[0][: int(seconds * 16000)]]
    return calls


def real_clips() -> list[tuple[np.ndarray, str]]:
    """The real Norwegian clips with their references (empty when absent)."""
    from speechpipe.audio import load_audio

    root = shared_dir()
    if root is None:
        return []
    out = []
    for ref in sorted((root / "audio" / "real").glob("norwegian-*.ref.txt")):
        audio = ref.with_name(ref.name.replace(".ref.txt", ".mp3"))
        if audio.exists():
            out.append((load_audio(audio).mono, ref.read_text(encoding="utf-8")))
    return out


def plain_transcribe(model, audio: np.ndarray, language: str = "no") -> list[str]:
    """The usual faster-whisper loop body (README usage), consuming the generator."""
    segments, _info = model.transcribe(audio, beam_size=5, language=language, word_timestamps=True)
    return [s.text for s in segments]


def run(quick: bool = False, device: str = "auto", calls: list[np.ndarray] | None = None, smoke: bool = False,
        in_flight: int | None = None, batched: bool | None = None) -> dict:
    """Measure ASR throughput and the speed-up over a plain faster-whisper loop.

    Parameters
    ----------
    quick : bool
        The real Norwegian clips only (about 11 s; timed and scored in one
        pass, where the plain loop does not loop on a robotic voice), else a
        20 s sim-call excerpt.
    device : str
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    calls : list of np.ndarray, optional
        16 kHz mono audio to use instead of the shared sim calls (tests).
    smoke : bool
        5 s of audio and no WER: checks the code path, not the speed.
    in_flight, batched : optional
        Calls transcribed concurrently (one model replica each) and the batched
        pipeline; default 4 calls on CUDA, 1 on the CPU (where the transcriber
        shares each call out between its replicas); set ``in_flight`` to run the
        GPU path on a CPU.

    Returns
    -------
    dict
        ``asr_x_realtime`` (audio s per wall s), ``asr_baseline_x_realtime``,
        ``asr_speedup_vs_plain_loop``, WERs on the real clips, settings.
    """
    from speechpipe.asr.whisper import ASRConfig, WhisperTranscriber, resolve_device
    from speechpipe.evaluation import word_error_rate

    device = resolve_device(device)
    gpu = device == "cuda"
    clips = [] if smoke or calls is not None else real_clips()
    refs = None
    if quick and clips:  # quick: the real clips are both the timed audio and the WER set
        calls, refs, clips = [a for a, _ in clips], [r for _, r in clips], []
    if calls is None:
        calls = load_calls(quick or smoke, n_full=16 if gpu else 1, seconds=SMOKE_SECONDS if smoke else QUICK_SECONDS)
    in_flight = in_flight or (min(4, len(calls)) if gpu else 1)
    # A replica per call in flight (threads must never share one); otherwise, on the CPU,
    # the transcriber's own layout (one single-threaded replica per core).
    cfg = ASRConfig(device=device, num_workers=in_flight if (gpu or in_flight > 1) else 0, batched=batched)
    t = time.perf_counter()
    asr = WhisperTranscriber(cfg)
    load_s = time.perf_counter() - t
    audio_s = sum(len(c) for c in calls) / 16000

    def ours() -> list:
        if in_flight == 1:
            return [asr.transcribe(c) for c in calls]
        # Several calls in flight keep the GPU busy while Python assembles results.
        with ThreadPoolExecutor(in_flight) as pool:
            return list(pool.map(asr.transcribe, calls))

    def plain() -> list:
        return [plain_transcribe(asr.model, c, cfg.language) for c in calls]

    asr.transcribe(calls[0][: 16000 * 5])  # warm-up: Silero load, CUDA kernels
    # Back to back on the same audio and the same loaded model: only the decoding path differs.
    t = time.perf_counter()
    ours_out = ours()
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    plain_out = plain()
    plain_s = time.perf_counter() - t

    layout = None
    if not gpu and not (quick or smoke) and asr.workers > 1:
        # Same audio through one replica using every core: what the replica-per-core layout buys.
        one = WhisperTranscriber(ASRConfig(device=device, num_workers=1, batched=batched))
        one.transcribe(calls[0][: 16000 * 5])
        t = time.perf_counter()
        for c in calls:
            one.transcribe(c)
        one_s = time.perf_counter() - t
        layout = {"one_replica_all_threads_x_realtime": round(audio_s / one_s, 2),
                  "replica_per_core_speedup": round(one_s / ours_s, 2)}
        del one

    wer_ours = wer_plain = None
    if refs is not None:
        wer_ours = word_error_rate(refs, [" ".join(u.text for u in us) for us in ours_out])
        wer_plain = word_error_rate(refs, [" ".join(ts) for ts in plain_out])
    elif clips and not quick:  # accuracy guard in full runs
        refs = [r for _, r in clips]
        wer_ours = word_error_rate(refs, [" ".join(u.text for u in asr.transcribe(a)) for a, _ in clips])
        wer_plain = word_error_rate(refs, [" ".join(plain_transcribe(asr.model, a, cfg.language)) for a, _ in clips])

    return {
        "asr_x_realtime": round(audio_s / ours_s, 2),
        "asr_baseline_x_realtime": round(audio_s / plain_s, 2),
        "asr_speedup_vs_plain_loop": round(plain_s / ours_s, 2),
        "asr_wer_real_clips": None if wer_ours is None else round(wer_ours, 3),
        "asr_baseline_wer_real_clips": None if wer_plain is None else round(wer_plain, 3),
        "asr_layout": layout,
        "asr_audio_seconds": round(audio_s, 1),
        "asr_model_load_s": round(load_s, 2),
        "asr_model": asr.name,
        "asr_settings": {
            "device": device,
            "batched": asr.batched is not None,
            "in_flight": in_flight,
            "beam_size": cfg.beam_size,
            "workers": asr.workers,
            "cpu_threads_per_replica": asr.threads,
        },
        "peak_rss_mb": peak_rss_mb(),
    }


def table(m: dict) -> str:
    return (
        f"ASR ({m['asr_model']}, {m['asr_audio_seconds']} s audio)\n"
        f"  speechpipe      {m['asr_x_realtime']:8.2f}× real time   WER real clips {m['asr_wer_real_clips']}\n"
        f"  plain loop      {m['asr_baseline_x_realtime']:8.2f}× real time   "
        f"WER real clips {m['asr_baseline_wer_real_clips']}\n"
        f"  speed-up        {m['asr_speedup_vs_plain_loop']:8.2f}×"
    )


if __name__ == "__main__":
    metrics = run(quick="--quick" in sys.argv)
    print(table(metrics))
    print(json.dumps(metrics))
