"""Prosody stage: pitch, backchannel intonation, breathing and stress cues per turn."""
