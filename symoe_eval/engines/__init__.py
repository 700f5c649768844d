"""Engines that generate for one expert at a time, and the registry that names them.

``ENGINES`` (a :class:`~symoe_eval.registry.Registry`) names each backend's class, lazily as
``"module:Class"``: adding a backend is one file with an ``Engine`` subclass plus one line here,
or ``register_engine`` from user code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from symoe_eval.engines.base import (
    Completion,
    Engine,
    GenerationRequest,
    SamplingParams,
    truncate_at_stop,
)
from symoe_eval.engines.cache import CachedEngine, GenerationCache
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec
from symoe_eval.registry import Registry

ENGINES: Registry[type[Engine]] = Registry("engine", Engine)
ENGINES.register("hf", "symoe_eval.engines.hf:HFEngine")
ENGINES.register("vllm", "symoe_eval.engines.vllm:VLLMEngine")
ENGINES.register("openai", "symoe_eval.engines.served:ServedEngine")
SERVED = "openai"  # the engine of every pool entry with ``served:``, whatever the run's engine

__all__ = [
    "ENGINES",
    "CachedEngine",
    "Completion",
    "Engine",
    "EngineFactory",
    "GenerationCache",
    "GenerationRequest",
    "SamplingParams",
    "engine_class",
    "make_engine",
    "resolve_engine",
    "register_engine",
    "truncate_at_stop",
]


def register_engine(name: str, engine: str | type[Engine]) -> None:
    """Make ``engine=name`` (model_args, ``symoe profile --engine``) build this class."""
    ENGINES.register(name, engine)


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise SymoeError(ENGINES.unknown(name, also=("auto",)))
    return ENGINES.get(name)


def resolve_engine(requested: str = "auto") -> str:
    """The engine ``engine=requested`` runs; ``auto``: the available one ranked highest here
    (``auto_priority_here``: vLLM where it is installed and a GPU is present, transformers otherwise)."""
    if requested != "auto":
        engine_class(requested)
        return requested
    ranked = sorted(ENGINES, key=lambda n: -engine_class(n).auto_priority_here())
    return next(n for n in ranked if engine_class(n).auto_priority_here() >= 0 and engine_class(n).available())


@dataclass(frozen=True)
class EngineFactory:
    """How a run builds an expert's engine, in process and in each Ray actor alike: the engine
    class, the run's engine arguments (``batch_size``, ``device``, ``seed``, ``threads``) and the
    generation cache in front of it. Plain data, so it travels to an actor as it is."""

    engine_cls: type[Engine]
    cache_dir: Path | None = None
    engine_args: dict = field(default_factory=dict)
    driver_locks: bool = False  # in a Ray actor: its driver holds the cache's generation locks

    def build(self, expert: ExpertSpec) -> Engine:
        """A served expert (``served:`` in its pool entry) is reached over HTTP, whatever the run's
        engine: one pool may mix served and loaded experts."""
        cls = engine_class(SERVED) if expert.served else self.engine_cls
        engine = cls(expert, **self.engine_args)
        if self.cache_dir:
            engine = CachedEngine(engine, GenerationCache(self.cache_dir, locked_by_driver=self.driver_locks))
        return engine


def make_engine(
    expert: ExpertSpec,
    engine: str = "auto",
    cache_dir: str | Path | None = None,
    **engine_args,
) -> Engine:
    """One engine, as a run's :class:`EngineFactory` builds it (``engine``: a registered name or
    ``auto``, as the run argument)."""
    return EngineFactory(engine_class(resolve_engine(engine)), cache_dir and Path(cache_dir), engine_args).build(expert)
