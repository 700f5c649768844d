"""What every symoe-eval lm-eval model shares: pool and engine arguments, request translation.

Our models are generative and chat-based: the task's prompt becomes the user turn of each
expert's own chat template, and only ``generate_until`` is supported.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from symoe_eval.errors import SymoeError
from symoe_eval.models.context import RunContext
from symoe_eval.models.evaluation import encode_chat, evaluation_argument, split_context
from symoe_eval.registry import Pool
from symoe_eval.runargs import NAMES as RUN_ARG_NAMES


log = logging.getLogger(__name__)


class SymoeLM(LM):
    """Base class: validates the shared model_args into a :class:`RunContext` (pool, engines,
    sampling, cache) that the subclasses generate through."""

    def __init__(self, **args: Any):
        """``args``: the run arguments (``runargs.RUN_ARGS``) a subclass has not taken."""
        super().__init__()
        run = {name: args.pop(name) for name in RUN_ARG_NAMES if name in args}
        ignored = {k: v for k, v in args.items() if k not in ("max_batch_size",)}
        if ignored:
            raise SymoeError(f"{type(self).__name__}: unknown model_args {', '.join(sorted(ignored))}")
        limit = evaluation_argument("limit")
        if limit is not None and float(limit) <= 0:  # lm-eval would fail later in a 35-line traceback
            raise SymoeError(f"--limit {limit} selects no documents; give a count >= 1 or a fraction in (0, 1)")
        if run.get("seed") is None:  # follow lm-eval's --seed (its random_seed), as its own models do
            run["seed"] = evaluation_argument("random_seed", 0) or 0
        if evaluation_argument("num_fewshot"):
            log.warning("%s runs zero-shot (the paper's setting): --num_fewshot %s is ignored by symoe_* tasks, "
                        "which pin num_fewshot: 0", type(self).__name__, evaluation_argument("num_fewshot"))
        if "cache_dir" in run and run["cache_dir"] is None:  # lm-eval's parser turns cache_dir=none into None
            run["cache_dir"] = "none"
        self.context = RunContext.create(**run)
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

    # ------------------------------------------------------------------ chat templates

    @property
    def tokenizer_name(self) -> str:
        """Fingerprints lm-eval's request cache; every expert applies its own template."""
        return f"symoe-eval-{type(self).__name__}-{self.pool.name}"

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return "each expert's own" if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Keep the history as messages (``--apply_chat_template``), not one model's formatted text."""
        return encode_chat(chat_history)

    @staticmethod
    def contexts(requests: list[Instance]) -> list[tuple[tuple, str]]:
        """(messages before the question, the question's text) of each request's context; lm-eval's
        ``--system_instruction`` is looked up once per call, not once per request."""
        system = evaluation_argument("system_instruction")
        return [split_context(req.args[0], system) for req in requests]

    # lm-eval's likelihood API does not apply: experts are chat models sampled for reasoning.
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise SymoeError(
            f"{type(self).__name__} is generative only: use generate_until tasks such as symoe_gpqa"
        )

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self.loglikelihood(requests, disable_tqdm)

