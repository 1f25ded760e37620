"""Shared fixtures. Test data lives in ../shared (never copied into the repo).

``SPEECHPIPE_SHARED`` overrides the location; tests that need it skip
cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared() -> Path:
    """Root of the shared dev/test data (``../shared`` or ``$SPEECHPIPE_SHARED``)."""
    root = Path(os.environ.get("SPEECHPIPE_SHARED", REPO.parent / "shared"))
    if not (root / "audio").is_dir():
        pytest.skip(f"shared test data not found at {root} (set SPEECHPIPE_SHARED)")
    return root


@pytest.fixture(scope="session")
def embedded_transcriber():
    """One Whisper base model for the whole session (loading takes seconds)."""
    from speechpipe.asr.whisper import ASRConfig, WhisperTranscriber

    return WhisperTranscriber(ASRConfig(device="cpu"))


@pytest.fixture(scope="session")
def cli() -> list[str]:
    """Command prefix that runs the speechpipe CLI of this checkout in a subprocess."""
    import sys

    return [sys.executable, "-m", "speechpipe"]
