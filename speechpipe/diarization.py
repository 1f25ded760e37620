"""Speakers and roles (foundation version: label stereo speech by channel).

Replaced by the full diariser (issue 3); the interface stays:
``build_diarizer(config).assign(audio, utterances, counsellor_channel) -> (utterances, roles)``.
"""

from __future__ import annotations

CHANNEL_NAMES = ("left", "right")


class ChannelLabeller:
    name = "channels"

    def assign(self, audio, utterances, counsellor_channel="auto"):
        for u in utterances:
            u.speaker = CHANNEL_NAMES[u.channel] if u.channel is not None else "unknown"
        return utterances, {}


def build_diarizer(config):
    return ChannelLabeller()
