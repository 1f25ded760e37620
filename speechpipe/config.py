"""Pipeline settings: one dataclass tree, and the part of it that changes outputs.

:meth:`PipelineConfig.describe` is stored with every batch result and hashed for
``--resume``; it is derived from the dataclasses themselves, so a new setting is
covered the day it is added. Only the fields in :data:`SPEED_ONLY` (how fast, not
what comes out) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, get_args

from speechpipe.asr.whisper import ASRConfig
from speechpipe.prosody.analyzer import ProsodyConfig
from speechpipe.speakers.embedded import EmbeddedConfig

DiarizerKind = Literal["auto", "stereo", "neural", "embedded", "pyannote"]
CounsellorChannel = Literal["left", "right", "auto"]
ChannelLayoutChoice = Literal["auto", "mono", "two_party", "duplicated", "one_silent"]
CHANNEL_LAYOUTS: tuple[str, ...] = get_args(ChannelLayoutChoice)
DIARIZERS: tuple[str, ...] = get_args(DiarizerKind)
COUNSELLOR_CHANNELS: tuple[str, ...] = get_args(CounsellorChannel)

# Settings that change speed or memory but never the outputs.
SPEED_ONLY = frozenset({"asr.cpu_threads", "asr.num_workers", "asr.batch_size"})


class ConfigError(ValueError):
    """A setting outside its allowed values (the CLI shows it as a usage error naming its flag)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


@dataclass
class PipelineConfig:
    """Every setting of :class:`~speechpipe.pipeline.Pipeline`.

    Examples
    --------
    >>> cfg = PipelineConfig(diarizer="stereo")
    >>> cfg.describe()["diarizer"], "asr.cpu_threads" in cfg.describe()
    ('stereo', False)
    >>> PipelineConfig(diarizer="magic")
    Traceback (most recent call last):
    ...
    speechpipe.config.ConfigError: diarizer must be one of auto, stereo, neural, embedded, pyannote (got 'magic')
    """

    asr: ASRConfig = field(default_factory=ASRConfig)
    diarizer: DiarizerKind = "auto"
    pyannote_pipeline: str | None = None
    counsellor_channel: CounsellorChannel = "auto"
    # auto: detected per file (speechpipe.audio.layout); otherwise forced for 2-channel files
    channel_layout: ChannelLayoutChoice = "auto"
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    prosody_config: ProsodyConfig = field(default_factory=ProsodyConfig)
    prosody: bool = True
    tag: bool = True
    redact: bool = False
    rules: str | None = None  # category rule file (YAML); None: the shipped default set

    def __post_init__(self) -> None:
        _check("diarizer", self.diarizer, DIARIZERS)
        _check("counsellor_channel", self.counsellor_channel, COUNSELLOR_CHANNELS)
        _check("channel_layout", self.channel_layout, CHANNEL_LAYOUTS)
        if self.diarizer == "pyannote" and not self.pyannote_pipeline:
            raise ConfigError("pyannote_pipeline", "the pyannote diarizer needs a pipeline directory")

    def describe(self) -> dict[str, Any]:
        """Settings that change outputs, flattened to ``"stage.field": value`` (JSON-safe)."""
        out = _flatten(self)
        if out.get("asr.model") is None:
            out["asr.model"] = "embedded:whisper-base"
        return out


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"{name} must be one of {', '.join(allowed)} (got {value!r})")


def _flatten(obj, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        key = prefix + f.name
        if key in SPEED_ONLY:
            continue
        v = getattr(obj, f.name)
        if is_dataclass(v):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (str, int, float, bool, type(None))):
            out[key] = v
        elif isinstance(v, (tuple, list)):
            out[key] = list(v)
        elif isinstance(v, dict):
            out[key] = {str(k): v[k] for k in sorted(v)}
        else:  # e.g. a PitchTracker object: its class names the method
            out[key] = f"{type(v).__module__}.{type(v).__qualname__}"
    return out
