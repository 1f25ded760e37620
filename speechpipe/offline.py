"""Keep every library offline and quiet: calls are special-category data.

Set before hub-aware libraries (huggingface_hub, pyannote.audio, ray) are
imported; values a user set explicitly are respected only where they keep
things offline.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PYANNOTE_METRICS_ENABLED": "0",  # pyannote.audio 4 telemetry
    "RAY_USAGE_STATS_ENABLED": "0",
    "DO_NOT_TRACK": "1",
}


def enforce_env() -> None:
    """Force the offline/no-telemetry switches on for this process and its children."""
    for k, v in OFFLINE_ENV.items():
        os.environ[k] = v
