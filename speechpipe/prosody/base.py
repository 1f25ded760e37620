"""The prosody interface the pipeline calls."""

from __future__ import annotations

from typing import Protocol

from speechpipe.records import AudioData, Event, Utterance


class Prosody(Protocol):
    """Measures on the audio of each utterance; breath events; a per-call summary of them."""

    name: str

    def analyse(self, audio: AudioData, utterances: list[Utterance]) -> list[Event]:
        """Write per-utterance measurements (``prosody``, intonation of backchannel candidates); return events."""
        ...

    def summarise(self, utterances: list[Utterance], events: list[Event]) -> dict:
        """Call-level prosody measures (breathing per speaker)."""
        ...
