"""Sampling for one call, from a task's generation settings (``gen_kwargs`` as lm-eval's own
backends read them, normalized by the harness): the engines only ever see ``SamplingParams``."""

from __future__ import annotations

from symoe_eval.engines import SamplingParams
from symoe_eval.pools.schema import ExpertSpec


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
    and ``cap`` (the pool's ``max_gen_toks``) bounds every budget but an explicit ``max_tokens``.
    A missing or 0 ``max_gen_toks`` means the expert's own budget."""
    budget = expert.generation.max_gen_toks
    kwargs = gen_kwargs or {}
    task_tokens = int(kwargs.get("max_gen_toks") or budget)
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
