"""The sentence-embedding model that maps a question's keywords onto a profile's vocabulary,
loaded like an expert: on the run's ``device`` when one is given (else the CPU: the model is small,
and a GPU's memory stays the experts'), with its ``threads``, its load counted and timed, its
setup described, and each text embedded once per run."""

from __future__ import annotations

import logging
import time

import numpy as np

from symoe_eval.engines.base import EngineStats, pick_device, torch_threads
from symoe_eval.pools.schema import EmbeddingSpec
from symoe_eval.pools.weights import resolve_weights
from symoe_eval.runoutput import EMBEDDING_SETUP

log = logging.getLogger(__name__)


class Embedder:
    """Callable on a list of texts; loads the model on first use (sentence-transformers)."""

    def __init__(self, spec: EmbeddingSpec, device: str | None = None, threads: int | None = None):
        self.spec, self.device_request, self.threads = spec, device, threads
        self.stats = EngineStats()
        self._model = None
        self._setup: dict = {}
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self._loaded().encode(missing, batch_size=256, show_progress_bar=False)
            self._cache.update(zip(missing, np.asarray(vectors)))
        return np.stack([self._cache[t] for t in texts])

    def _loaded(self):
        if self._model is None:
            import sentence_transformers

            start = time.perf_counter()
            folder, _ = resolve_weights(self.spec)
            device = pick_device(self.device_request) if self.device_request else "cpu"
            threads = torch_threads(self.threads)
            self._model = sentence_transformers.SentenceTransformer(folder, device=device)
            self.stats.count_load(start)
            self._setup = {EMBEDDING_SETUP.model: self.spec.model, EMBEDDING_SETUP.device: device,
                           EMBEDDING_SETUP.threads: threads,
                           EMBEDDING_SETUP.sentence_transformers: sentence_transformers.__version__}
            log.info("loaded embedding model %s (%s) in %.1fs", self.spec.name, device, self.stats.load_seconds)
        return self._model

    def describe_setup(self) -> dict:
        """What its vectors depend on (model, device, threads, library version); empty before it loads."""
        return dict(self._setup)

    def summary(self) -> dict:
        """Its part of the run summary: the setup and this run's loads; empty before it loads."""
        stats = {EMBEDDING_SETUP.loads: self.stats.loads, EMBEDDING_SETUP.load_seconds: round(self.stats.load_seconds, 2)}
        return {**self._setup, **stats} if self._setup else {}
