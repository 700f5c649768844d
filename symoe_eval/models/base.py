"""What every symoe-eval lm-eval model shares: pool and engine arguments, request translation.

Our models are generative and chat-based: the task's prompt becomes the user turn of each
expert's own chat template, and only ``generate_until`` is supported.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from symoe_eval.engines import (
    Engine,
    GenerationCache,
    GenerationRequest,
    SamplingParams,
    make_engine,
    pick_backend,
    sampling_for,
)
from symoe_eval.errors import SymoeError
from symoe_eval.paths import cache_root
from symoe_eval.registry import ExpertSpec, Pool, load_pool

log = logging.getLogger(__name__)

NO_CACHE = ("", "none", "off", "false")


def default_pool(backend: str) -> str:
    return "paper16" if backend == "vllm" else "tiny-cpu"


def model_arg(name: str, value: Any, kind: type = int, minimum: float | None = None, optional: bool = False):
    """A --model_args value as ``kind``, or one line naming the argument and its valid range."""
    if optional and value in (None, "", "None", "none"):
        return None
    valid = ("an integer" if kind is int else "a number") + (f" >= {minimum}" if minimum is not None else "")
    try:
        converted = kind(value)
    except (TypeError, ValueError):
        raise SymoeError(f"model_args {name}={value}: expected {valid}") from None
    if minimum is not None and converted < minimum:
        raise SymoeError(f"model_args {name}={value}: expected {valid}")
    return converted


class SymoeLM(LM):
    """Base class: owns the pool, the engine factory and the generation cache location."""

    def __init__(
        self,
        pool: str | None = None,
        engine: str = "auto",
        cache_dir: str | None = None,
        seed: int = 0,
        temperature: float | None = None,
        max_gen_toks: int | None = None,
        batch_size: int | str = 8,
        device: str | None = None,
        **unused: Any,
    ):
        super().__init__()
        ignored = {k: v for k, v in unused.items() if k not in ("max_batch_size",)}
        if ignored:
            raise SymoeError(f"{type(self).__name__}: unknown model_args {', '.join(sorted(ignored))}")
        self.backend = pick_backend(engine)
        self.pool: Pool = load_pool(pool or default_pool(self.backend))
        self.seed = model_arg("seed", seed)
        self.temperature = model_arg("temperature", temperature, float, minimum=0, optional=True)
        self.max_gen_toks = model_arg("max_gen_toks", max_gen_toks, minimum=1, optional=True)
        self.batch_size = 8 if str(batch_size).startswith("auto") else model_arg("batch_size", batch_size, minimum=1)
        self.torch_device = device if device not in (None, "", "auto") else None
        self.cache_dir = self._cache_dir(cache_dir)
        if self.cache_dir is not None:
            GenerationCache(self.cache_dir).check_writable()
        if self.pool.max_gen_toks and self.max_gen_toks is None:
            log.info("pool %s caps each call at %d new tokens; max_gen_toks=N in --model_args raises it",
                     self.pool.name, self.pool.max_gen_toks)

    def _cache_dir(self, given: str | None) -> Path | None:
        if given is not None and str(given).lower() in NO_CACHE:
            return None
        return Path(given).expanduser() if given else cache_root() / "generations" / self.pool.name

    def engine_for(self, expert: ExpertSpec) -> Engine:
        return make_engine(
            expert,
            self.backend,
            cache_dir=self.cache_dir,
            batch_size=self.batch_size,
            device=self.torch_device,
            seed=self.seed,
        )

    def sampling_for(self, expert: ExpertSpec, gen_kwargs: dict | None = None) -> SamplingParams:
        return sampling_for(expert, gen_kwargs, self.temperature, self.max_gen_toks, self.seed, self.pool.max_gen_toks)

    @staticmethod
    def sample_indices(requests: list[Instance]) -> list[int]:
        """lm-eval sends ``repeats`` copies of a request; number them so each is its own sample."""
        seen: Counter = Counter()
        out = []
        for req in requests:
            key = (req.task_name, req.doc_id, req.idx)
            out.append(seen[key])
            seen[key] += 1
        return out

    @staticmethod
    def as_request(context: str, params: SamplingParams, sample_index: int) -> GenerationRequest:
        return GenerationRequest.user(context, params, sample_index)

    # lm-eval's likelihood API does not apply: experts are chat models sampled for reasoning.
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise SymoeError(
            f"{type(self).__name__} is generative only: use generate_until tasks such as symoe_gpqa"
        )

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self.loglikelihood(requests, disable_tqdm)

