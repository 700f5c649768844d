"""What every symoe-eval lm-eval model shares: pool and engine arguments, request translation.

Our models are generative and chat-based: the task's prompt becomes the user turn of each
expert's own chat template, and only ``generate_until`` is supported.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from symoe_eval.errors import SymoeError
from symoe_eval.models.context import RunContext
from symoe_eval.registry import Pool


class SymoeLM(LM):
    """Base class: validates the shared model_args into a :class:`RunContext` (pool, engines,
    sampling, cache) that the subclasses generate through."""

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
        max_loaded: int | None = None,
        workers: int = 1,
        ray_address: str | None = None,
        gpus_per_worker: float | None = None,
        **unused: Any,
    ):
        super().__init__()
        ignored = {k: v for k, v in unused.items() if k not in ("max_batch_size",)}
        if ignored:
            raise SymoeError(f"{type(self).__name__}: unknown model_args {', '.join(sorted(ignored))}")
        self.context = RunContext.create(pool, engine, cache_dir, seed, temperature, max_gen_toks, batch_size, device,
                                         max_loaded, workers, ray_address, gpus_per_worker)
        self.pool: Pool = self.context.pool
        self.backend = self.context.backend
        self.seed = self.context.seed

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

    # lm-eval's likelihood API does not apply: experts are chat models sampled for reasoning.
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise SymoeError(
            f"{type(self).__name__} is generative only: use generate_until tasks such as symoe_gpqa"
        )

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self.loglikelihood(requests, disable_tqdm)

