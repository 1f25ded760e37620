"""Write one call's outputs: the call JSON plus the chosen research exports.

``DIR/<call_id>.json`` first, then ``.rttm``, ``.vtt``, ``.srt``,
``.TextGrid``, ``.eaf``, the Parquet tables ``.utterances.parquet`` and
``.call.parquet``, and the report ``.html`` — each atomic and owner-only.
Timed formats are skipped for text-only results (no utterance times).
"""

from __future__ import annotations

from pathlib import Path

from speechpipe.outputs.writers import write_call_json
from speechpipe.records import CallResult

ALL_FORMATS = ("json", "rttm", "vtt", "srt", "textgrid", "eaf", "parquet", "html")
TIMED_FORMATS = ("rttm", "vtt", "srt", "textgrid", "eaf")


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
    """Write ``DIR/<call_id>.json`` and each export; return the paths (JSON first).

    Examples
    --------
    >>> paths = write_outputs(result, "out", ("json", "srt"))  # doctest: +SKIP
    >>> [p.name for p in paths]                                 # doctest: +SKIP
    ['dev-001.json', 'dev-001.srt']
    """
    out = Path(out_dir)
    written = [write_call_json(result, out)]
    has_times = any(u.start is not None and u.end is not None for u in result.utterances)
    for fmt in formats:
        if fmt == "json":
            continue
        if fmt in TIMED_FORMATS:
            if not has_times:
                continue  # a text-only result has no timeline to export
            from speechpipe.outputs.exports import write_export

            written.append(write_export(result, fmt, out))
        elif fmt == "parquet":
            from speechpipe.outputs.tables import call_row, utterance_rows, write_table

            written.append(write_table(utterance_rows(result), out / f"{result.call_id}.utterances.parquet"))
            written.append(write_table([call_row(result)], out / f"{result.call_id}.call.parquet"))
        elif fmt == "html":
            from speechpipe.outputs.report import write_report

            written.append(write_report(result, out / f"{result.call_id}.html"))
    return written
