"""Keep every library offline and quiet: calls are special-category data.

Set before hub-aware libraries (huggingface_hub, pyannote.audio, ray) are
imported; values a user set explicitly are overridden, because each switch
here only ever keeps things offline.

pyannote.audio 4.0.x sends OpenTelemetry spans to ``otel.pyannote.ai``
unless ``PYANNOTE_METRICS_ENABLED`` is set to something other than
``true``/``1`` (``pyannote/audio/telemetry/metrics.py::is_metrics_enabled``
reads it on every call; its default comes from a config file with
``metrics_enabled: true``). ``OTEL_SDK_DISABLED`` additionally turns the
OpenTelemetry SDK's tracer into a no-op.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PYANNOTE_METRICS_ENABLED": "false",  # pyannote.audio 4 telemetry (checked in telemetry/metrics.py)
    "OTEL_SDK_DISABLED": "true",  # no-op OpenTelemetry tracer provider, belt and braces
    "RAY_USAGE_STATS_ENABLED": "0",
    "DO_NOT_TRACK": "1",
}


def enforce_env() -> None:
    """Force the offline/no-telemetry switches on for this process and its children."""
    for k, v in OFFLINE_ENV.items():
        os.environ[k] = v
