"""Speech recognition stage: faster-whisper on VAD speech regions, word timestamps."""
