"""Audio in: decoding to 16 kHz float32, Silero speech probabilities, frame features and breaths."""

from speechpipe.audio.io import AudioError, block_bounds, load_audio, resample

__all__ = ["AudioError", "block_bounds", "load_audio", "resample"]
