"""How a failed input is reported: one line for the user, the traceback for the log."""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path


def failure_reason(e: BaseException) -> str:
    """One line for the user; errors that already name the file and problem keep their words.

    Examples
    --------
    >>> failure_reason(ValueError("cannot reshape\\nmore detail"))
    'ValueError: cannot reshape'
    """
    from speechpipe.audio import AudioError

    if isinstance(e, AudioError):
        return e.reason
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:300]


def fail_line(path, reason: str) -> str:
    """The console line for one failed input (rich markup)."""
    return f"[red]failed[/red] {path}: {reason}"


def traceback_text(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def log_failure(out: str | os.PathLike, path, reason: str, detail: BaseException | str | None = None) -> None:
    """``errors.jsonl`` gets the one-line reason; ``speechpipe.log`` the traceback (owner-only).

    ``detail`` is the exception (its traceback is written) or an already formatted text.
    """
    from speechpipe.outputs.writers import append_jsonl

    out = Path(out)
    append_jsonl(out / "errors.jsonl", {"file": str(path), "reason": reason})
    if isinstance(detail, BaseException):
        detail = traceback_text(detail)
    log_text(out, str(path), detail or reason)


def log_text(out: str | os.PathLike, header: str, text: str) -> None:
    """Append one entry to ``DIR/speechpipe.log`` (owner-only): the one writer of that file."""
    fd = os.open(Path(out) / "speechpipe.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {header}\n{text}\n")
