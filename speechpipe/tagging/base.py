"""The tagger interface the pipeline calls."""

from __future__ import annotations

from typing import Protocol

from speechpipe.records import Utterance


class Tagger(Protocol):
    """Acts and phases per utterance (written in place), and the call's structure measures."""

    name: str

    def tag_call(self, utterances: list[Utterance]) -> dict:
        """Tag one call's utterances in place; return its summary (structure, reopenings, ...)."""
        ...
