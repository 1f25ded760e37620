"""The rule file: YAML categories validated with pydantic; a bad file is an error naming its line.

A rule file has ``categories``, each with a ``name`` (a column name: ``[a-z][a-z0-9_]*``),
a ``description`` and a condition ``when``. A condition is one of

* a **match** over utterances: ``act``, ``phase``, ``speaker``, ``keyword``, ``cue`` (each a
  label or a list meaning any of them), an optional time ``window`` (``first``/``last``/``from``/``to``
  as seconds ``"15s"`` or a share of the call ``"20%"``), an optional anchor ``after``/``before``
  (another match, its ``occurrence`` first or last) with ``within`` seconds, and how many
  utterances must match (``count``, at least; ``at_most``);
* a **measure** of the call summary by dotted path (``interaction.holds.longest_s``) compared
  with ``gt``/``ge``/``lt``/``le``/``eq``/``ne``;
* ``all: [...]``, ``any: [...]`` or ``not: {...}`` of conditions. A list given as ``when`` means ``all``.

See ``docs/interaction.md`` and the shipped ``default_rules.yaml``.

Examples
--------
>>> rs = parse_rules("categories:\\n  - name: long_hold\\n    when: {measure: interaction.holds.longest_s, gt: 120}\\n")
>>> rs.categories[0].name
'long_hold'
>>> parse_rules("categories:\\n  - name: x\\n    when: {act: hug}\\n", "r.yaml")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
speechpipe.analytics.rules.RulesError: r.yaml:3: categories[0].when.act: 'hug' is not an act; choose from greeting, ...
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from speechpipe.vocabulary import ACTS, INTONATIONS, PHASES, SPEAKERS

CUES = ("stress", "raised_pitch", "loud", "fast", "heavy_breath", *INTONATIONS)
SUMMARY_ROOTS = ("structure", "reopenings", "feelings_before_case", "feelings_latency_s", "what_more_position",
                 "talk_share", "holds", "n_utterances", "backchannel_rate_per_min", "silences", "silence_s",
                 "overlaps", "overlap_s", "breathing", "heavy_breathing", "interaction")
_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|%)\s*$")


class RulesError(ValueError):
    """A rule file that cannot be read or is not valid (the message names the file and line)."""


def parse_time(v: str | float | int) -> tuple[float, bool]:
    """``"15s"``/``15`` → (15.0, False); ``"20%"`` → (0.2, True): seconds, or a share of the call."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v), False
    m = _TIME.match(str(v))
    if not m:
        raise ValueError(f"{v!r} is not a time; write seconds as '15s' or a share of the call as '20%'")
    x = float(m.group(1))
    if m.group(2) == "%":
        if x > 100:
            raise ValueError(f"{v!r}: a share of the call is at most 100%")
        return x / 100.0, True
    return x, False


Time = Union[str, float, int]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _labels(v: Any, allowed: tuple[str, ...], what: str) -> list[str] | None:
    if v is None:
        return None
    vals = [v] if isinstance(v, str) else list(v)
    for x in vals:
        if x not in allowed:
            raise ValueError(f"{x!r} is not {what}; choose from {', '.join(allowed)}")
    return vals


# what each label field of a condition may name (the annotation guide's vocabulary)
_VOCAB = {"act": (ACTS, "an act"), "phase": (PHASES, "a phase"), "speaker": (SPEAKERS, "a speaker"),
          "cue": (CUES, "a cue")}


class Window(_Strict):
    first: Time | None = None
    last: Time | None = None
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None

    @field_validator("first", "last", "from_", "to")
    @classmethod
    def _time(cls, v):
        if v is not None:
            parse_time(v)
        return v


class Match(_Strict):
    act: str | list[str] | None = None
    phase: str | list[str] | None = None
    speaker: str | list[str] | None = None
    keyword: str | list[str] | None = None
    cue: str | list[str] | None = None
    window: Window | None = None
    after: "Match | None" = None
    before: "Match | None" = None
    within: Time | None = None
    occurrence: Literal["first", "last"] = "first"  # which one, when this match is an anchor
    count: int = Field(1, ge=0)
    at_most: int | None = Field(None, ge=0)

    @field_validator("act", "phase", "speaker", "cue")
    @classmethod
    def _known(cls, v, info):
        allowed, what = _VOCAB[info.field_name]
        return _labels(v, allowed, what)

    @field_validator("keyword")
    @classmethod
    def _keyword(cls, v):
        if v is None:
            return None
        vals = [v] if isinstance(v, str) else list(v)
        if not all(isinstance(x, str) and x.strip() for x in vals):
            raise ValueError("keywords must be non-empty strings")
        return vals

    @field_validator("within")
    @classmethod
    def _within(cls, v):
        if v is not None and parse_time(v)[1]:
            raise ValueError("within is in seconds ('30s'), not a share of the call")
        return v


class Measure(_Strict):
    measure: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    eq: float | bool | str | None = None
    ne: float | bool | str | None = None

    @field_validator("measure")
    @classmethod
    def _path(cls, v):
        if not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z0-9_]+)*", v):
            raise ValueError(f"{v!r} is not a dotted summary path like interaction.holds.longest_s")
        if v.split(".")[0] not in SUMMARY_ROOTS:
            raise ValueError(f"{v!r}: a measure path starts with one of {', '.join(SUMMARY_ROOTS)}")
        return v

    def model_post_init(self, _ctx) -> None:
        if all(getattr(self, k) is None for k in ("gt", "ge", "lt", "le", "eq", "ne")):
            raise ValueError("a measure needs a comparison: gt, ge, lt, le, eq or ne")


class AllOf(_Strict):
    all: list["Condition"] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _list_is_all(cls, v):
        return {"all": v} if isinstance(v, list) else v


class AnyOf(_Strict):
    any: list["Condition"] = Field(min_length=1)


class NotOf(_Strict):
    not_: "Condition" = Field(alias="not")


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        for k in ("all", "any", "not", "measure"):
            if k in v:
                return k
    elif isinstance(v, list):
        return "all"  # a list of conditions means all of them
    elif isinstance(v, BaseModel):
        return {AllOf: "all", AnyOf: "any", NotOf: "not", Measure: "measure"}.get(type(v), "match")
    return "match"


Condition = Annotated[
    Union[Annotated[AllOf, Tag("all")], Annotated[AnyOf, Tag("any")], Annotated[NotOf, Tag("not")],
          Annotated[Measure, Tag("measure")], Annotated[Match, Tag("match")]],
    Discriminator(_kind),
]


class Rule(_Strict):
    name: str
    description: str = ""
    when: Condition

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", v):
            raise ValueError(f"{v!r}: a category name is lower case letters, digits and _ (it becomes a column name)")
        return v

    @field_validator("when", mode="before")
    @classmethod
    def _list_is_all(cls, v):
        return {"all": v} if isinstance(v, list) else v


class RuleSet(_Strict):
    version: int = 1
    categories: list[Rule] = Field(default_factory=list)


for _m in (Match, AllOf, AnyOf, NotOf, Rule, RuleSet):
    _m.model_rebuild()


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Validate rule-file text; :class:`RulesError` names ``source``, the line and the problem."""
    import yaml

    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise RulesError(f"{source}{line}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError(f"{source}:1: a rule file is a mapping with a 'categories' list")
    try:
        rs = RuleSet.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = _strip_tags(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        return _raise(source, _line_of(root, loc), _path(loc), msg, len(e.errors()))
    seen: set[str] = set()
    for i, r in enumerate(rs.categories):  # names become column names: one each
        if r.name in seen:
            loc = ["categories", i, "name"]
            _raise(source, _line_of(root, loc), _path(loc), f"category {r.name!r} is defined twice", 1)
        seen.add(r.name)
    return rs


def _strip_tags(loc) -> list:
    """Drop the discriminator tags pydantic puts after every place that holds a condition."""
    kept: list = []
    expect_tag = False
    for x in loc:
        if expect_tag:
            expect_tag = False
            continue
        kept.append(x)
        expect_tag = x in ("when", "not") or (isinstance(x, int) and len(kept) >= 2 and kept[-2] in ("all", "any"))
    return kept


def _raise(source, line, path, msg, n):
    more = f" (and {n - 1} more problem{'s' if n > 2 else ''})" if n > 1 else ""
    raise RulesError(f"{source}:{line}: {path + ': ' if path else ''}{msg}{more}")


def _path(loc) -> str:
    out = ""
    for x in loc:
        out += f"[{x}]" if isinstance(x, int) else (("." if out else "") + str(x))
    return out


def _line_of(node, loc) -> int:
    """1-based line of the deepest YAML node on ``loc`` (a pydantic error location)."""
    import yaml

    line = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == key or (key == "not_" and k.value == "not") or (key == "from_" and k.value == "from"):
                    nxt, line = v, k.start_mark.line + 1
                    break
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and key == "all":  # a list given as `when` means all
            continue
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


DEFAULT_RULES = "default_rules.yaml"


def load_rules(path: str | Path | None = None) -> RuleSet:
    """The rules in ``path``, or the shipped default set (``speechpipe/analytics/default_rules.yaml``)."""
    if path is None:
        text = resources.files("speechpipe.analytics").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
        return parse_rules(text, DEFAULT_RULES)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RulesError(f"{p}: cannot read the rule file: {getattr(e, 'strerror', None) or e}") from None
    return parse_rules(text, str(p))
