"""Write one call's outputs: the call JSON plus the chosen research exports."""

from __future__ import annotations

from pathlib import Path

from .records import CallResult
from .writers import write_call_json

ALL_FORMATS = ("json",)


def parse_formats(spec: str) -> tuple[str, ...]:
    """``"all"`` or a comma list → validated tuple; JSON is always written."""
    if spec.strip() == "all":
        return ALL_FORMATS
    fmts = tuple(f.strip().lower() for f in spec.split(",") if f.strip())
    bad = [f for f in fmts if f not in ALL_FORMATS]
    if bad:
        import typer

        raise typer.BadParameter(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(ALL_FORMATS)}")
    return tuple(dict.fromkeys(("json",) + fmts))


def write_outputs(result: CallResult, out_dir: str | Path, formats: tuple[str, ...] = ALL_FORMATS) -> list[Path]:
    """Write ``DIR/<call_id>.json`` and each export; return the paths (JSON first)."""
    return [write_call_json(result, out_dir)]
