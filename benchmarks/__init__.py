"""Benchmarks: each module exposes ``run(quick: bool = False) -> dict``.

``benchmarks.bench`` (``speechpipe bench``) runs them all and prints one table.
Every speed figure is measured against a baseline *in the same run*, because
the development machines are shared and noisy: a ratio survives load, an
absolute time does not. Helpers shared by the modules live here.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """``$SPEECHPIPE_SHARED`` or ``../shared`` from the repo; None when absent."""
    root = Path(os.environ.get("SPEECHPIPE_SHARED", REPO.parent / "shared"))
    return root if (root / "audio").is_dir() else None


def sim_calls(limit: int | None = None, shortest: bool = False) -> list[Path]:
    """The simulated 8 kHz μ-law phone calls (``*.mono.wav``), by name or shortest first."""
    root = shared_dir()
    if root is None:
        return []
    calls = sorted((root / "audio" / "sim-calls").glob("*.mono.wav"))
    if shortest:  # keeps full runs affordable on a 2-core machine
        import soundfile as sf

        calls.sort(key=lambda p: sf.info(str(p)).duration)
    return calls[:limit] if limit else calls


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024, 1)


def n_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def best_of(fn: Callable[[], object], reps: int) -> tuple[float, object]:
    """Run ``fn`` ``reps`` times; return (fastest wall seconds, last result).

    The minimum is the least noisy estimate on a shared machine.
    """
    best, out = float("inf"), None
    for _ in range(max(1, reps)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _version(mod: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(mod)
    except PackageNotFoundError:
        return None


def gpu_name() -> str | None:
    """Name of the first CUDA device, or None (never initialises CUDA if absent)."""
    try:
        import ctranslate2

        if ctranslate2.get_cuda_device_count() == 0:
            return None
    except Exception:
        return None
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cuda"
    except Exception:
        return "cuda"


def machine() -> dict:
    """What the numbers were measured on; stored with every benchmark result."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cores": n_cpus(),
        "ram_gb": _ram_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "ctranslate2": _version("ctranslate2"),
        "faster_whisper": _version("faster-whisper"),
        "onnxruntime": _version("onnxruntime"),
        "gpu": gpu_name(),
        # Other jobs on the machine slow every figure alike; ratios stay comparable.
        "load_avg_at_start": load,
    }


def make_call_wav(seconds: float, path: str | os.PathLike) -> list[dict]:
    """Write a ``seconds``-long 8 kHz μ-law phone call by concatenating sim calls.

    The calls are cycled in name order and cut at ``seconds``, so a 120-minute
    call is realistic speech/silence/turn density, not a loop of one clip.
    Returns the reference utterances (``speaker``, ``start``, ``end``, ``text``),
    shifted to their place in the long call, for stages that can run on gold text.
    """
    import json

    import numpy as np
    import soundfile as sf

    calls = sim_calls()
    if not calls:
        raise FileNotFoundError("shared sim calls not found (set SPEECHPIPE_SHARED)")
    pieces, refs, offset, i = [], [], 0.0, 0
    while offset < seconds:
        src = calls[i % len(calls)]
        data, sr = sf.read(src, dtype="float32")
        take = min(len(data), int(round((seconds - offset) * sr)))
        pieces.append(data[:take])
        ref = src.with_name(src.name.replace(".mono.wav", ".ref.json"))
        if ref.exists():
            for u in json.loads(ref.read_text(encoding="utf-8")).get("utterances", []):
                if u.get("start") is not None and u["end"] <= take / sr:
                    refs.append({"speaker": u.get("speaker"), "start": u["start"] + offset,
                                 "end": u["end"] + offset, "text": u.get("text", "")})
        offset += take / sr
        i += 1
    sf.write(path, np.concatenate(pieces), sr, subtype="ULAW")
    return refs
