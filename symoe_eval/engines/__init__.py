"""Engines that generate for one expert at a time, and the registry that names them.

``ENGINES`` maps a backend name to its class, lazily as ``"module:Class"`` (the shape of
lm-eval's ``MODEL_MAPPING``): adding a backend is one file with an ``Engine`` subclass plus one
line here, or ``register_engine`` from user code.
"""

from __future__ import annotations

import importlib
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

ENGINES: dict[str, str | type[Engine]] = {
    "hf": "symoe_eval.engines.hf:HFEngine",
    "vllm": "symoe_eval.engines.vllm:VLLMEngine",
}

__all__ = [
    "ENGINES",
    "CachedEngine",
    "Completion",
    "Engine",
    "GenerationCache",
    "GenerationRequest",
    "SamplingParams",
    "engine_class",
    "make_engine",
    "pick_backend",
    "register_engine",
    "truncate_at_stop",
]


def register_engine(name: str, engine: str | type[Engine]) -> None:
    """Make ``engine=name`` (model_args, ``symoe profile --engine``) build this class."""
    ENGINES[name] = engine


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise SymoeError(f"unknown engine '{name}'; choose one of auto, {', '.join(ENGINES)}")
    target = ENGINES[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = ENGINES[name] = getattr(importlib.import_module(module), attr)
    return target


def pick_backend(requested: str = "auto") -> str:
    """``auto``: the available backend ranked highest here (``auto_priority_here``: vLLM where it
    is installed and a GPU is present, transformers otherwise)."""
    if requested != "auto":
        engine_class(requested)
        return requested
    ranked = sorted(ENGINES, key=lambda n: -engine_class(n).auto_priority_here())
    return next(n for n in ranked if engine_class(n).auto_priority_here() >= 0 and engine_class(n).available())


def make_engine(
    expert: ExpertSpec,
    backend: str = "auto",
    cache_dir: str | Path | None = None,
    **engine_kwargs,
) -> Engine:
    """``engine_kwargs``: the Engine's own (``batch_size``, ``device``, ``seed``, ``threads``)."""
    engine = engine_class(pick_backend(backend))(expert, **engine_kwargs)
    if cache_dir:
        engine = CachedEngine(engine, GenerationCache(cache_dir))
    return engine
