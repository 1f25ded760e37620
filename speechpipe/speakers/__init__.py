"""Speakers stage: speech regions (VAD), who-spoke-when (diarisers), words to speakers, roles."""
