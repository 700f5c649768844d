"""vLLM backend (GPU): a thin adapter over ``vllm.LLM.generate`` with a real teardown.

vLLM is imported only when an engine loads, so the package works where vLLM cannot run. The
teardown follows what the paper authors' code does between models: destroy the model-parallel
state and the distributed environment, drop the engine, collect garbage and empty the CUDA cache.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
from typing import Iterator, Sequence

from symoe_eval.engines.base import Completion, Engine, GenerationRequest, load_error
from symoe_eval.registry import ExpertSpec
from symoe_eval.weights import resolve_weights

# Generic engine_kwargs of the registry that vllm.LLM understands under the same name.
SHARED_KWARGS = ("dtype", "max_model_len", "trust_remote_code")


class VLLMEngine(Engine):
    """vLLM on a GPU. It claims most of the GPU's memory for one model, so a scheduler keeps one
    resident; the paper's 16-expert pool is its default."""

    name = "vllm"
    default_max_loaded = 1
    default_pool = "paper16"
    auto_priority = 10
    load_cost_tokens = 30000  # a 7B model takes tens of seconds to start on a GPU

    def __init__(self, expert: ExpertSpec, chunk_size: int = 512, **kwargs):
        super().__init__(expert, **kwargs)
        self.chunk_size = chunk_size  # requests per generate() call: what a kill can lose
        self.llm = None

    @classmethod
    def available(cls) -> bool:
        if importlib.util.find_spec("vllm") is None:
            return False
        import torch

        return torch.cuda.is_available()

    @property
    def loaded(self) -> bool:
        return self.llm is not None

    def _load(self) -> None:
        from vllm import LLM

        where, gguf_file = resolve_weights(self.expert)
        kwargs = {k: self.expert.engine_kwargs[k] for k in SHARED_KWARGS if k in self.expert.engine_kwargs}
        # Repeated samples of one prompt (keyword samples, duplicate recruits) and prompts that
        # share a long prefix reuse its KV blocks; a pool entry may still turn it off.
        kwargs.setdefault("enable_prefix_caching", True)
        kwargs.update(self.backend_kwargs)
        if gguf_file:  # vLLM reads a GGUF file directly and needs the tokenizer named apart
            kwargs.setdefault("tokenizer", self.expert.model)
            where = os.path.join(where, gguf_file)
        try:
            self.llm = LLM(model=where, seed=self.seed, **kwargs)
        except Exception as err:
            raise load_error(self.expert.name, where, err) from err

    def load_tokenizer(self):
        """vLLM's own tokenizer once loaded; before that the same files through transformers."""
        if self.llm is not None:
            return self.llm.get_tokenizer()
        from transformers import AutoTokenizer

        where, gguf_file = resolve_weights(self.expert)
        name = self.backend_kwargs.get("tokenizer") or (self.expert.model if gguf_file else where)
        try:
            return AutoTokenizer.from_pretrained(name, trust_remote_code=bool(self.expert.engine_kwargs.get("trust_remote_code")))
        except Exception as err:
            raise load_error(self.expert.name, name, err) from err

    def _unload(self) -> None:
        import torch
        from vllm.distributed.parallel_state import (
            destroy_distributed_environment,
            destroy_model_parallel,
        )

        destroy_model_parallel()
        destroy_distributed_environment()
        engine = getattr(self.llm, "llm_engine", None)
        if engine is not None and hasattr(engine, "model_executor"):
            del engine.model_executor
        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            with contextlib.suppress(AssertionError, RuntimeError):
                torch.distributed.destroy_process_group()

    @staticmethod
    def sampling_params(request: GenerationRequest, max_tokens: int | None = None):
        """vLLM seeds each request from its own ``seed``: the request's derived one."""
        from vllm import SamplingParams as VSamplingParams

        params = request.params
        return VSamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p if not params.greedy else 1.0,
            max_tokens=max_tokens or params.max_tokens,
            stop=list(params.stop) or None,
            seed=request.seed,
        )

    def _context_limit(self) -> int | None:
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        return getattr(config, "max_model_len", None) or self.expert.engine_kwargs.get("max_model_len")

    def _prompt(self, tokenizer, request: GenerationRequest):
        """The chat-templated prompt, as token ids cut from the left when it would overflow."""
        text = tokenizer.apply_chat_template(request.chat(), tokenize=False, add_generation_prompt=True)
        limit = self._context_limit()
        if not limit or len(text.encode()) + request.params.max_tokens <= limit:
            return text, request.params.max_tokens  # cannot overflow: tokens <= bytes
        ids = tokenizer.encode(text, add_special_tokens=False)
        keep, max_new = self.fit_context(len(ids), request.params.max_tokens, limit)
        return ({"prompt_token_ids": ids[len(ids) - keep :]} if keep < len(ids) else text), max_new

    def _generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Completion]]:
        tokenizer = self.llm.get_tokenizer()
        for start in range(0, len(requests), self.chunk_size):
            chunk = requests[start : start + self.chunk_size]
            prompts, params = zip(*[self._prompt(tokenizer, r) for r in chunk])
            outputs = self.llm.generate(
                list(prompts), [self.sampling_params(r, n) for r, n in zip(chunk, params)], use_tqdm=True
            )
            for offset, output in enumerate(outputs):
                best = output.outputs[0]
                yield start + offset, Completion(
                    text=best.text,
                    num_tokens=len(best.token_ids),
                    finish_reason="length" if best.finish_reason == "length" else "stop",
                    prompt_tokens=len(output.prompt_token_ids or []),
                )
            self._budget_used(sum(r.params.max_tokens for r in chunk))
