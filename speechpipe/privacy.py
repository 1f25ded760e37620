"""Privacy policies in one place: safe file names for call ids, and what ``--pseudonymise`` hides.

Call ids come from users (file names, CSV manifests, transcripts) and name the
output files, so :func:`safe_stem` turns any id into one plain file name inside
``--out``; the id itself is kept, unchanged, inside the call JSON only.

``--pseudonymise`` (``run`` and ``batch`` alike, :class:`Pseudonymiser`): the
call id is a keyed hash of the recording's content, ``audio.path`` is blanked,
and no output file holds the input's path or name: the tables' ``input`` column
is empty, ``errors.jsonl`` names the call id, reasons and tracebacks have the
path replaced, and the batch manifest keys the input by a keyed hash of its path.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

PSEUDONYM_ENV = "SPEECHPIPE_PSEUDONYM_KEY"
MAX_STEM_BYTES = 120  # the longest suffix (".utterances.parquet") and temp names still fit in 255 bytes
_UNSAFE = re.compile(r"[/\\\x00]")


# --- file names ----------------------------------------------------------------


def safe_stem(call_id: str) -> str:
    """A file name stem for ``call_id``: no separators, no ``..``, no control characters, bounded length.

    Ids that are already safe are kept as they are; an id that had to be
    shortened gets a short hash of the full id, so different long ids stay apart.

    Examples
    --------
    >>> safe_stem("dev-001")
    'dev-001'
    >>> safe_stem("../../x"), safe_stem("/abs/x"), safe_stem("a\\nb")
    ('_.._x', '_abs_x', 'a_b')
    >>> len(safe_stem("n" * 230).encode())
    120
    """
    s = "".join("_" if unicodedata.category(c).startswith("C") else c for c in str(call_id))
    s = _UNSAFE.sub("_", s).strip()
    s = s.lstrip(".") or "call"  # no hidden names, no "." or ".."
    b = s.encode("utf-8")
    if len(b) > MAX_STEM_BYTES:
        tag = "-" + hashlib.sha256(str(call_id).encode("utf-8")).hexdigest()[:10]
        s = b[: MAX_STEM_BYTES - len(tag)].decode("utf-8", "ignore") + tag
    return s


def unique_stems(ids: list[str]) -> list[str]:
    """Safe stems for ``ids`` in order; a repeated stem gets ``-2``, ``-3`` … (as ``batch`` names them)."""
    seen: set[str] = set()
    out = []
    for i in ids:
        stem = cand = safe_stem(i)
        n = 1
        while cand in seen:
            n += 1
            cand = f"{stem}-{n}"
        seen.add(cand)
        out.append(cand)
    return out


# --- pseudonyms -----------------------------------------------------------------


class PseudonymKeyError(ValueError):
    """Raised when ``--pseudonymise`` is used without a key."""


def _key(key: str | None = None) -> str:
    key = key if key is not None else os.environ.get(PSEUDONYM_ENV)
    if not key:
        raise PseudonymKeyError(
            f"--pseudonymise needs a secret key in the environment variable {PSEUDONYM_ENV} "
            "(keep it out of the output directory; the same key gives the same ids)"
        )
    return key


def require_pseudonym_key() -> str:
    """The pseudonym key from the environment, or a usage error (for ``--pseudonymise``)."""
    try:
        return _key()
    except PseudonymKeyError as e:
        import typer

        raise typer.BadParameter(str(e)) from None


def pseudonymise_id(path: str | os.PathLike, key: str | None = None, length: int = 16) -> str:
    """A keyed, stable pseudonym for a call: HMAC-SHA256 of the file's content.

    The key comes from ``$SPEECHPIPE_PSEUDONYM_KEY`` unless given. Hashing the
    content (not the name) gives the same id for the same recording wherever
    it lies; without the key the id cannot be linked back to the file. A file
    that cannot be read (or a symlink loop) falls back to its absolute path.

    Examples
    --------
    >>> import tempfile; f = tempfile.NamedTemporaryFile(delete=False); _ = f.write(b"x"); f.close()
    >>> pseudonymise_id(f.name, key="k")
    'call-c38edc8815c8489f'
    """
    mac = hmac.new(_key(key).encode("utf-8"), digestmod=hashlib.sha256)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                mac.update(block)
    except OSError:  # unreadable, a directory, a symlink loop: it fails later, per file
        mac.update(b"path:" + os.path.abspath(path).encode("utf-8"))
    return "call-" + mac.hexdigest()[:length]


def keyed_path_hash(path: str | os.PathLike, key: str | None = None) -> str:
    """What the batch manifest stores instead of an input path under ``--pseudonymise``."""
    mac = hmac.new(_key(key).encode("utf-8"), os.path.abspath(path).encode("utf-8"), hashlib.sha256)
    return "hmac-sha256:" + mac.hexdigest()


@dataclass(frozen=True)
class Pseudonymiser:
    """The ``--pseudonymise`` policy, used by ``run`` and ``batch`` alike (off: every method is the identity)."""

    on: bool = False

    def check(self) -> None:
        """A usage error before any file is read when the key is missing."""
        if self.on:
            require_pseudonym_key()

    def call_id(self, path: str | os.PathLike, default: str) -> str:
        return pseudonymise_id(path) if self.on else default

    def result(self, result):
        """Blank ``audio.path`` (the file name is what the pseudonym hides)."""
        if self.on and result.audio:
            result.audio = {**result.audio, "path": None}
        return result

    def input_name(self, path: str | os.PathLike) -> str | None:
        """The ``input`` column of the batch tables: the path, or nothing."""
        return None if self.on else str(path)

    def manifest_key(self, path: str | os.PathLike) -> str:
        return keyed_path_hash(path) if self.on else str(path)

    def shown(self, path: str | os.PathLike, call_id: str) -> str:
        """How an input is named in output files (errors.jsonl, speechpipe.log)."""
        return call_id if self.on else str(path)

    def scrub(self, text: str | None, path: str | os.PathLike, call_id: str) -> str | None:
        """``text`` (a reason, a traceback) with the input's path, name and stem replaced by the call id."""
        if not self.on or not text:
            return text
        p = Path(path)
        for s in sorted({os.path.abspath(path), str(path), p.name, p.stem}, key=len, reverse=True):
            if len(s) >= 4:  # a very short stem would also hit ordinary words
                text = text.replace(s, call_id)
        return text
