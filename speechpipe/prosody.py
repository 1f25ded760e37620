"""Prosody stage (placeholder until issue 4): measures nothing yet."""


class ProsodyAnalyzer:
    name = None

    def analyse(self, audio, utterances):
        return []
