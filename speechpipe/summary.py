"""The typed call summary (``CallResult.summary``) and its parts, byte-compatible with the call JSON.

:class:`CallSummary` has one typed attribute per summary key. Keys are written in the
order they were set (as a dict would), so ``from_dict(d).to_dict() == d`` keeps key
order too; keys it does not know are kept as they are and written back in place.
Adding a summary field is one line: a new attribute on :class:`CallSummary`.

It also behaves as a read/write mapping of the JSON form (``s["structure"]``,
``s.get("talk_share")``, ``s.update({...})``), so code written against the old
``dict`` keeps working.

Examples
--------
>>> s = CallSummary.from_dict({"structure": "funnel", "x_new": 1, "reopenings": 0})
>>> s.structure, s.reopenings, list(s.to_dict())
('funnel', 0, ['structure', 'x_new', 'reopenings'])
>>> s.heavy_breathing = False
>>> s["heavy_breathing"], list(s)[-1]
(False, 'heavy_breathing')
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Iterator


class _Keyed:
    """Dataclass base: JSON keys emitted in the order set; unknown keys kept in place.

    A field given to the constructor as ``None`` counts as absent; assigning it
    afterwards (or reading it from JSON) makes it present, even as ``None``.
    """

    _parts: ClassVar[dict[str, Any]] = {}  # field → part class, or ("map", part class) for {key: part}

    def __post_init__(self) -> None:
        object.__setattr__(self, "_extra", {})
        object.__setattr__(self, "_order", [f.name for f in fields(self) if getattr(self, f.name) is not None])

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        order = self.__dict__.get("_order")
        if order is not None and name in self._names() and name not in order:
            order.append(name)

    @classmethod
    def _names(cls) -> frozenset[str]:
        names = cls.__dict__.get("_names_cache")
        if names is None:
            names = frozenset(f.name for f in fields(cls))
            cls._names_cache = names
        return names

    # -- JSON form
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None):
        obj = cls()
        for k, v in (d or {}).items():
            obj[k] = v
        return obj

    def to_dict(self) -> dict[str, Any]:
        return {k: self[k] for k in self._order}

    # -- mapping of the JSON form
    def __getitem__(self, key: str) -> Any:
        if key in self._names() and key in self._order:
            return _plain(getattr(self, key))
        if key in self._extra:
            return self._extra[key]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._names():
            setattr(self, key, _parse(self._parts.get(key), value))
        else:
            self._extra[key] = value
            if key not in self._order:
                self._order.append(key)

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __bool__(self) -> bool:
        return bool(self._order)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (_Keyed, dict)):
            return self.to_dict() == (other.to_dict() if isinstance(other, _Keyed) else other)
        return NotImplemented

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def keys(self):
        return list(self._order)

    def items(self):
        return [(k, self[k]) for k in self._order]

    def values(self):
        return [self[k] for k in self._order]

    def update(self, other: dict[str, Any] | None = None, **kw: Any) -> None:
        for k, v in {**(dict(other) if other else {}), **kw}.items():
            self[k] = v

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        v = self[key]
        self._order.remove(key)
        if key in self._names():
            object.__setattr__(self, key, None)
        else:
            del self._extra[key]
        return v

    def copy(self):
        return type(self).from_dict(self.to_dict())


def _plain(v: Any) -> Any:
    """Typed value → its JSON form."""
    if isinstance(v, _Keyed):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _parse(part: Any, v: Any) -> Any:
    """JSON form → typed value (a part, a dict of parts, a list of parts); other values as they are."""
    if part is None or v is None:
        return v
    kind, cls = part if isinstance(part, tuple) else ("one", part)
    if kind == "map" and isinstance(v, dict):
        return {k: cls.from_dict(x) if isinstance(x, dict) else x for k, x in v.items()}
    if kind == "list" and isinstance(v, list):
        return [cls.from_dict(x) if isinstance(x, dict) else x for x in v]
    if kind == "one" and isinstance(v, dict):
        return cls.from_dict(v)
    return v


@dataclass(eq=False)
class SpeakerBreathing(_Keyed):
    """Breathing of one speaker (prosody stage)."""

    breaths: int | None = None
    heavy: int | None = None
    per_min_talk: float | None = None


@dataclass(eq=False)
class Evidence(_Keyed):
    """Why a category matched: an utterance (index, start, text excerpt) or a measure."""

    utterance: int | None = None
    start: float | None = None
    text: str | None = None


@dataclass(eq=False)
class Category(_Keyed):
    """One rule's outcome on a call (:mod:`speechpipe.analytics.categories`)."""

    name: str | None = None
    matched: bool | None = None
    evidence: list[Evidence] | None = None
    _parts: ClassVar[dict[str, Any]] = {"evidence": ("list", Evidence)}


@dataclass(eq=False)
class CallSummary(_Keyed):
    """Call-level measures: tagger (structure … overlaps), prosody (breathing), analytics (interaction, categories).

    One attribute per key; the order here is the order a fresh pipeline writes them.
    ``interaction`` stays a plain dict of the measures documented in ``docs/interaction.md``.
    """

    structure: str | None = None
    reopenings: int | None = None
    feelings_before_case: bool | None = None
    feelings_latency_s: float | None = None
    what_more_position: float | None = None
    talk_share: dict[str, float | None] | None = None
    talk_share_unit: str | None = None
    holds: int | None = None
    n_utterances: int | None = None
    backchannel_rate_per_min: dict[str, float | None] | None = None
    backchannel_rate_per_100_utt: dict[str, float | None] | None = None
    silences: int | None = None
    silence_s: float | None = None
    overlaps: int | None = None
    overlap_s: float | None = None
    breathing: dict[str, SpeakerBreathing] | None = None
    heavy_breathing: bool | None = None
    interaction: dict[str, Any] | None = None
    categories: list[Category] | None = None
    _parts: ClassVar[dict[str, Any]] = {"breathing": ("map", SpeakerBreathing), "categories": ("list", Category)}


def as_summary(value: CallSummary | dict[str, Any] | None) -> CallSummary:
    """A :class:`CallSummary` from one, from its JSON form, or from nothing."""
    if isinstance(value, CallSummary):
        return value
    return CallSummary.from_dict(dict(value or {}))


__all__ = ["CallSummary", "SpeakerBreathing", "Category", "Evidence", "as_summary"]
