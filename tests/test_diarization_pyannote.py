"""The real ``--diarizer pyannote`` code path, offline, with no downloaded weights.

A pipeline directory like a cloned ``speaker-diarization-community-1``
(``config.yaml`` + ``segmentation/`` + ``embedding/`` + ``plda/``) is built
from *randomly initialised* pyannote models, then loaded through
``Pipeline.from_pretrained(DIR)`` by :class:`PyannoteDiarizer` and run.
"""

from __future__ import annotations

import numpy as np
import pytest

from speechpipe.records import AudioData, Utterance, Word


def _save_model(model, spec, path):
    import pytorch_lightning as pl
    import torch
    from pyannote.audio import __version__ as pa_version

    model.specifications = spec
    model.build()
    ckpt = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": pl.__version__,
        "pyannote.audio": {
            "versions": {"pyannote.audio": pa_version},
            "architecture": {"module": type(model).__module__, "class": type(model).__name__},
            "specifications": spec,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)


def build_random_pipeline(out):
    """Write a small pyannote pipeline directory with random weights."""
    import torch
    import yaml
    from pyannote.audio import __version__ as pa_version
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import XVectorMFCC
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    seg = PyanNet(
        lstm={"hidden_size": 16, "num_layers": 1, "bidirectional": True}, linear={"hidden_size": 16, "num_layers": 1}
    )
    _save_model(seg, Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME,
                                    duration=5.0, classes=["spk1", "spk2", "spk3"], powerset_max_classes=2,
                                    permutation_invariant=True), out / "segmentation" / "pytorch_model.bin")
    dim = 64
    _save_model(XVectorMFCC(dimension=dim), Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK,
                                                           duration=5.0, classes=None),
                out / "embedding" / "pytorch_model.bin")
    rng = np.random.default_rng(0)
    (out / "plda").mkdir()
    lda = 32
    np.savez(out / "plda" / "xvec_transform.npz", mean1=rng.normal(size=dim), mean2=rng.normal(size=lda),
             lda=rng.normal(size=(dim, lda)))
    q, _ = np.linalg.qr(rng.normal(size=(lda, lda)))
    np.savez(out / "plda" / "plda.npz", mu=rng.normal(size=lda), tr=q, psi=rng.uniform(0.5, 2.0, size=lda))
    cfg = {
        "dependencies": {"pyannote.audio": pa_version},
        "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization",
                     "params": {"segmentation": "$model/segmentation", "embedding": "$model/embedding",
                                "plda": "$model/plda", "clustering": "AgglomerativeClustering",
                                "segmentation_batch_size": 8, "embedding_batch_size": 8}},
        "params": {"segmentation": {"min_duration_off": 0.0},
                   "clustering": {"method": "centroid", "min_cluster_size": 1, "threshold": 0.7}},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    return out


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    return build_random_pipeline(tmp_path_factory.mktemp("pyannote-pipeline"))


def test_pyannote_pipeline_directory_loads_offline_and_diarizes(pipeline_dir, monkeypatch):
    from pyannote.core import Annotation

    from speechpipe.pipeline import PipelineConfig
    from speechpipe.speakers.diarization import PyannoteDiarizer, build_diarizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = build_diarizer(PipelineConfig(diarizer="pyannote", pyannote_pipeline=str(pipeline_dir)))
    assert isinstance(d, PyannoteDiarizer) and d.name == f"pyannote:{pipeline_dir.name}"
    import os

    from speechpipe.offline import OFFLINE_ENV

    assert all(os.environ[k] == v for k, v in OFFLINE_ENV.items())  # hub offline, telemetry off
    rng = np.random.default_rng(1)
    t = np.arange(16000 * 8) / 16000
    x = (0.1 * np.sin(2 * np.pi * 180 * t) * (t % 2 < 1.2) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    audio = AudioData("synthetic.wav", x[None, :], 16000)
    ann = d.diarize(audio)
    assert isinstance(ann, Annotation)
    assert all(0.0 <= seg.start <= seg.end <= 8.0 + 1e-6 for seg in ann.itersegments())
    # the full assign path: words go to whatever labels the (random) model produced
    utts = [Utterance("unknown", 0.2, 1.0, "hei der", [Word("hei", 0.2, 0.5), Word("der", 0.6, 1.0)])]
    out, roles = d.assign(audio, utts)
    assert {u.speaker for u in out} <= {"counsellor", "caller", "other"}
    assert roles["method"].startswith("pyannote:")


def test_pyannote_bad_directory_is_a_clear_error(tmp_path):
    from speechpipe.speakers.diarization import DiarizationError, PyannoteDiarizer

    with pytest.raises(DiarizationError, match="no config.yaml"):
        PyannoteDiarizer(tmp_path)
    (tmp_path / "config.yaml").write_text("pipeline: {name: no.such.Pipeline}\n")
    with pytest.raises(DiarizationError, match="cannot load pyannote pipeline"):
        PyannoteDiarizer(tmp_path)
