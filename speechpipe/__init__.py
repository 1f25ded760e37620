"""speechpipe: offline analysis of recorded NKS contact-centre calls.

The public API, loaded on first use so that ``import speechpipe`` stays light:

>>> import speechpipe
>>> speechpipe.PipelineConfig(diarizer="stereo").diarizer
'stereo'
>>> speechpipe.__all__
['AudioData', 'CallResult', 'Event', 'Pipeline', 'PipelineConfig', 'Turn', 'Utterance', 'Word', 'load_audio']
"""

from __future__ import annotations

from importlib import import_module

from speechpipe import offline

# Before any library that could phone home is imported, in every process that imports speechpipe
# (CLI, Ray workers, library use): see speechpipe/offline.py for what each switch stops.
offline.enforce_env()

__version__ = "0.1.0"

_API = {
    "Pipeline": "speechpipe.pipeline",
    "PipelineConfig": "speechpipe.config",
    "load_audio": "speechpipe.audio",
    "AudioData": "speechpipe.records",
    "CallResult": "speechpipe.records",
    "Utterance": "speechpipe.records",
    "Turn": "speechpipe.records",
    "Word": "speechpipe.records",
    "Event": "speechpipe.records",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'speechpipe' has no attribute {name!r}")
