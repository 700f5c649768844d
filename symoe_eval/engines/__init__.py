"""Engines that generate for one expert at a time, and the factory that picks one."""

from __future__ import annotations

import importlib.util
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
from symoe_eval.registry import ExpertSpec

BACKENDS = ("auto", "hf", "vllm")

__all__ = [
    "BACKENDS",
    "CachedEngine",
    "Completion",
    "Engine",
    "GenerationCache",
    "GenerationRequest",
    "SamplingParams",
    "make_engine",
    "pick_backend",
    "sampling_for",
    "truncate_at_stop",
]


def pick_backend(requested: str = "auto") -> str:
    """``auto`` means vLLM where it is installed and a GPU is present, transformers otherwise."""
    if requested not in BACKENDS:
        raise SymoeError(f"unknown engine '{requested}'; choose one of {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    if importlib.util.find_spec("vllm") is None:
        return "hf"
    import torch

    return "vllm" if torch.cuda.is_available() else "hf"


def make_engine(
    expert: ExpertSpec,
    backend: str = "auto",
    cache_dir: str | Path | None = None,
    batch_size: int = 8,
    device: str | None = None,
    seed: int = 0,
) -> Engine:
    backend = pick_backend(backend)
    if backend == "vllm":
        from symoe_eval.engines.vllm import VLLMEngine

        engine: Engine = VLLMEngine(expert, seed=seed)
    else:
        from symoe_eval.engines.hf import HFEngine

        engine = HFEngine(expert, device=device, batch_size=batch_size)
    if cache_dir:
        engine = CachedEngine(engine, GenerationCache(cache_dir))
    return engine


def sampling_for(
    expert: ExpertSpec,
    gen_kwargs: dict | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    cap: int | None = None,
) -> SamplingParams:
    """Sampling for one call: explicit overrides win, then the task's gen_kwargs, then the
    expert's registry defaults; a reasoning expert never gets less than its own token budget,
    and ``cap`` (the pool's ``max_gen_toks``) bounds every budget but an explicit ``max_tokens``."""
    from lm_eval.models.utils import normalize_gen_kwargs

    budget = expert.generation.max_gen_toks
    kwargs = normalize_gen_kwargs(dict(gen_kwargs), budget) if gen_kwargs else {}
    task_tokens = int(kwargs.get("max_gen_toks", budget))
    if expert.reasoning:
        task_tokens = max(task_tokens, budget)
    if cap:
        task_tokens = min(task_tokens, cap)
    return SamplingParams(
        temperature=float(temperature if temperature is not None else kwargs.get("temperature", expert.generation.temperature)),
        top_p=float(kwargs.get("top_p", expert.generation.top_p)),
        max_tokens=int(max_tokens or task_tokens),
        stop=tuple(kwargs.get("until", ())),
        seed=seed,
    )
