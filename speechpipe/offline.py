"""Keep every library offline and quiet: calls are special-category data.

:func:`enforce_env` runs when the ``speechpipe`` package is imported (CLI, Ray
workers, library use), before any library below is imported; each Ray task
also gets the same variables through its ``runtime_env``. Values a user set are
overridden, because each switch only ever keeps things offline. The cache
locations are defaults only (``setdefault``).

What each switch stops (checked against the installed versions):

- ``ORT_DISABLE_TELEMETRY``: onnxruntime 1.32 (faster-whisper's Silero VAD)
  otherwise starts Microsoft's 1DS telemetry on the first InferenceSession:
  DNS lookups of ``mobile.events.data.microsoft.com`` and uploads from C++
  threads (invisible to Python's ``socket``), a device id and event database in
  ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` and ``$TMPDIR/.ses``. The
  native library reads this variable when it creates its environment
  (``strings libonnxruntime.so`` shows ``ORT_DISABLE_TELEMETRY`` beside
  ``telemetry_1ds.cc``); with it set, strace shows neither traffic nor files.
- ``PYANNOTE_METRICS_ENABLED``: pyannote.audio 4.0.x sends OpenTelemetry spans
  to ``otel.pyannote.ai`` (``pyannote/audio/telemetry/metrics.py`` reads it on
  every call); ``OTEL_SDK_DISABLED`` makes the OpenTelemetry SDK a no-op too.
- ``HF_HUB_*``/``TRANSFORMERS_OFFLINE``/``HF_DATASETS_OFFLINE``: no hub lookups
  or telemetry from huggingface_hub (pyannote, faster-whisper).
- ``RAY_USAGE_STATS_ENABLED``: Ray's usage statistics upload.
- ``DO_NOT_TRACK``: the community-wide opt-out some tools honour.

torch, ctranslate2, numba, librosa, scikit-learn, pyarrow and DuckDB send
nothing (DuckDB could auto-install extensions from the web: speechpipe's
connections turn that off, see :data:`DUCKDB_CONFIG`). Two libraries keep a
cache of their own on disk; both are pointed into speechpipe's cache folder so
that, outside ``--out``, speechpipe writes only there (no call data):

- ``MPLCONFIGDIR``: matplotlib (imported by pyannote.core) writes its font list;
- ``NUMBA_CACHE_DIR``: librosa's numba functions cache compiled code;
- ``TORCHINDUCTOR_CACHE_DIR``: torch creates its inductor cache folder when pyannote.audio is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_ENV = {
    "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime 1DS telemetry (DNS + ~/.cache/Microsoft device id)
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PYANNOTE_METRICS_ENABLED": "false",  # pyannote.audio 4 telemetry (checked in telemetry/metrics.py)
    "OTEL_SDK_DISABLED": "true",  # no-op OpenTelemetry tracer provider, belt and braces
    "RAY_USAGE_STATS_ENABLED": "0",
    "DO_NOT_TRACK": "1",
}

# Every DuckDB connection speechpipe opens: no extension is fetched from the web.
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def cache_root() -> Path:
    """``$SPEECHPIPE_CACHE``, else ``$XDG_CACHE_HOME/speechpipe``, else ``~/.cache/speechpipe``."""
    if os.environ.get("SPEECHPIPE_CACHE"):
        return Path(os.environ["SPEECHPIPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "speechpipe"


def cache_env() -> dict[str, str]:
    """Where third-party caches go (inside speechpipe's cache folder)."""
    root = cache_root()
    return {
        "MPLCONFIGDIR": str(root / "matplotlib"),
        "NUMBA_CACHE_DIR": str(root / "numba"),
        # importing pyannote.audio makes torch create $TMPDIR/torchinductor_<user> (empty) otherwise
        "TORCHINDUCTOR_CACHE_DIR": str(root / "torchinductor"),
    }


def enforce_env() -> None:
    """Force the offline/no-telemetry switches on for this process and its children."""
    for k, v in OFFLINE_ENV.items():
        os.environ[k] = v
    for k, v in cache_env().items():
        os.environ.setdefault(k, v)


def worker_env() -> dict[str, str]:
    """The variables a worker process (Ray) must start with."""
    return {**OFFLINE_ENV, **{k: os.environ.get(k, v) for k, v in cache_env().items()}}
