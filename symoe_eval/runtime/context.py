"""One run context for every method and for ``symoe profile``: the pool, the engine factory,
sampling overrides, the generation cache and the scheduler. Methods and the profiler build
their requests through it, so a stage built once serves both."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from symoe_eval.engines import SERVED, Engine, EngineFactory, GenerationCache, GenerationRequest, SamplingParams, engine_class, resolve_engine
from symoe_eval.engines.embedding import Embedder
from symoe_eval.errors import SymoeError
from symoe_eval.paths import cache_root
from symoe_eval.pools.schema import Pool, load_pool
from symoe_eval.runoutput import SETUP, SUMMARY
from symoe_eval.runtime.sampling import sampling_for
from symoe_eval.runtime.scheduling import Scheduler, StageScheduler
from symoe_eval.settings import DEFAULTS, RunSettings, parse_run_args

log = logging.getLogger(__name__)

NO_CACHE = ("", "none", "off", "false")
CHAT_FORMATTING = "each expert's chat template"  # always, with or without --apply_chat_template


def cache_dir_for(given: str | Path | None, pool: Pool) -> Path | None:
    """``none`` turns the cache off; no value means the per-pool default under the cache root."""
    if given is not None and str(given).lower() in NO_CACHE:
        return None
    return Path(given).expanduser() if given else cache_root() / "generations" / pool.name


def default_pool(engine: str | None = "auto") -> str:
    """The pool a run uses when it names none: its engine's (``Engine.default_pool``)."""
    return engine_class(resolve_engine(engine or "auto")).default_pool


@dataclass
class RunContext:
    """``settings`` as asked (``settings.RUN_ARGS``); the pool, engine (``auto`` resolved) and cache
    folder they resolve to."""

    pool: Pool
    engine_name: str
    cache_dir: Path | None
    settings: RunSettings = DEFAULTS
    _readers: dict[str, Engine] = field(default_factory=dict, repr=False)  # unloaded: tokenizer, context
    _embedder: Embedder | None = field(default=None, repr=False)

    @classmethod
    def create(cls, **raw: Any) -> "RunContext":
        """Validate raw run arguments (``settings.RUN_ARGS``: model_args strings, CLI or Python
        values) into a context; the cache folder is checked for writing before any model loads."""
        settings = parse_run_args({k: v for k, v in raw.items() if v is not None})
        engine_name = resolve_engine(settings.engine)
        spec = load_pool(settings.pool or engine_class(engine_name).default_pool)
        if settings.engine == "auto" and all(e.served for e in spec.experts.values()):
            engine_name = SERVED  # nothing to load: the run's engine is the servers'
        context = cls(pool=spec, engine_name=engine_name, cache_dir=cache_dir_for(settings.cache_dir, spec), settings=settings)
        if context.cache_dir is not None:
            GenerationCache(context.cache_dir).check_writable()
        if spec.max_gen_toks and settings.max_gen_toks is None:
            log.info("pool %s caps each call at %d new tokens; ask for more with max_gen_toks", spec.name, spec.max_gen_toks)
        return context

    def engine_args(self) -> dict:
        """What every engine of the run is built with, in process or in a Ray actor."""
        s = self.settings
        return {"batch_size": s.batch_size, "device": s.device, "seed": s.seed, "threads": s.threads}

    def engine_factory(self) -> EngineFactory:
        """How every engine of the run is built, in process and on each Ray worker."""
        return EngineFactory(engine_class(self.engine_name), self.cache_dir, self.engine_args())

    def embedder(self) -> Embedder:
        """The pool's embedding model, one per run, on the run's device and threads."""
        if self._embedder is None:
            if self.pool.embedding_model is None:
                raise SymoeError(f"pool '{self.pool.name}' names no embedding_model ({self.pool.path})")
            self._embedder = Embedder(self.pool.embedding_model, self.settings.device, self.settings.threads)
        return self._embedder

    def embedding_summary(self) -> dict:
        """The run summary's ``embedding`` entry where the run embedded anything, else nothing."""
        summary = self._embedder.summary() if self._embedder is not None else {}
        return {SUMMARY.embedding: summary} if summary else {}

    def engine(self, expert: str) -> Engine:
        return self.engine_factory().build(self.pool.expert(expert))

    def scheduler(self, progress: bool = True) -> StageScheduler:
        """Use with ``with``: every model still loaded is unloaded at the end, error or not.
        With ``workers`` > 1 or a ``ray_address``, the stages run on Ray actors instead."""
        s = self.settings
        max_loaded = s.max_loaded or engine_class(self.engine_name).default_max_loaded
        if s.workers == 1 and not s.ray_address:
            return Scheduler(self.engine, max_loaded, progress=progress)
        from symoe_eval.runtime.workers import RayScheduler

        return RayScheduler(self.pool.experts, self.engine_factory(), s.workers, max_loaded, progress,
                            s.ray_address, gpus_per_worker=self._gpus_per_worker())

    def reproducibility(self, scheduler: StageScheduler) -> dict:
        """What a run's texts depend on besides its requests and seed, for its summary: same values
        (and the same requests) give the same texts, however many workers (docs/engines.md, Reproducibility)."""
        s = self.settings
        return {SETUP.engine: self.engine_name, SETUP.batch_size: s.batch_size, SETUP.threads: s.threads or "default",
                SETUP.workers: s.workers if not s.ray_address else f"ray {s.ray_address}",
                SETUP.chat_formatting: CHAT_FORMATTING, SETUP.models: dict(sorted(scheduler.model_setups().items()))}

    def _gpus_per_worker(self) -> float:
        """What one actor needs: as asked, else what the engine says for this pool."""
        if self.settings.gpus_per_worker is not None:
            return self.settings.gpus_per_worker
        return engine_class(self.engine_name).gpus_per_worker(list(self.pool.experts.values()), self.settings.device)

    def sampling(self, expert: str, gen_kwargs: dict | None = None, max_tokens: int | None = None) -> SamplingParams:
        s = self.settings
        params = sampling_for(self.pool.expert(expert), gen_kwargs, s.temperature, s.max_gen_toks, s.seed,
                              self.pool.max_gen_toks)
        return replace(params, max_tokens=max_tokens) if max_tokens else params

    def request(self, expert: str, prompt: str, gen_kwargs: dict | None, sample: int,
                max_tokens: int | None = None, prefix: tuple = ()) -> GenerationRequest:
        """``prefix``: messages before the user turn (a system message, few-shot turns)."""
        return GenerationRequest((*prefix, ("user", prompt)), self.sampling(expert, gen_kwargs, max_tokens), sample)

    def reader(self, expert: str) -> Engine:
        """An engine of the expert that is never loaded, kept for the run: what it knows without
        the model (tokenizer, context limit) is what the loaded engine will use."""
        if expert not in self._readers:
            self._readers[expert] = self.engine(expert)
        return self._readers[expert]
