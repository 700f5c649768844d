"""Test doubles: an engine that answers by rule, and a faithful stand-in for the vLLM API."""

from __future__ import annotations

import itertools
import random
import sys
import types
from dataclasses import dataclass, field
from typing import Callable

from symoe_eval.engines import EngineFactory
from symoe_eval.engines.base import Completion, Engine
from symoe_eval.engines.batching import micro_batches
from symoe_eval.pools.schema import ExpertSpec, WeightSource


def draw(request) -> random.Random:
    """The randomness a real engine samples a request with: its prompt and its own seed, and no
    seed at all when greedy. Never the sample index, which no real engine sees."""
    seed = None if request.params.greedy else request.seed
    return random.Random(f"{request.messages}|{seed}")


def fewest_loads(stages: list[list[str]], loaded=None) -> int:
    """The fewest model loads that run these stages with one model resident, found by trying
    every order of every stage's groups (a reference for the scheduler; small plans only)."""
    if not stages:
        return 0
    best = None
    for order in itertools.permutations(stages[0]):
        here = sum(1 for i, m in enumerate(order) if m != (order[i - 1] if i else loaded))
        total = here + fewest_loads(stages[1:], order[-1])
        best = total if best is None else min(best, total)
    return best


def expert(name: str, **kwargs) -> ExpertSpec:
    return ExpertSpec(name=name, model=f"org/{name}", source=WeightSource(hf_id=f"org/{name}"), **kwargs)


class WordTokenizer:
    """A tokenizer whose tokens are whitespace-separated words, with a three-token chat template:
    exact counts that a test can reason about."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []

    def encode(self, text, add_special_tokens=False):
        ids = []
        for word in text.split():
            if word not in self.vocab:
                self.vocab[word] = len(self.words)
                self.words.append(word)
            ids.append(self.vocab[word])
        return ids

    def decode(self, ids):
        return " ".join(self.words[i] for i in ids)

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        assert tokenize is False
        text = " ".join(f"<|{m['role']}|> {m['content']} <|end|>" for m in messages)
        return text + (" <|assistant|>" if add_generation_prompt else "")


class FakeEngine(Engine):
    """Answers every request with ``respond(expert_name, request)`` in micro-batches; records loads
    and batches. Stats, timing and progress come from the Engine base class, as for real engines."""

    name = "fake"
    log: list = []  # (event, expert name, n requests) across all instances

    def __init__(self, spec: ExpertSpec, respond: Callable | None = None, batch_size: int = 4, **kwargs):
        super().__init__(spec, batch_size=batch_size, **kwargs)
        self.respond = respond or (lambda name, req: f"{name} says: {req.messages[-1][1][:20]}")

    def load_tokenizer(self):
        return WordTokenizer()

    def _load(self) -> None:
        FakeEngine.log.append(("load", self.expert.name, 0))

    def _unload(self) -> None:
        FakeEngine.log.append(("unload", self.expert.name, 0))

    def _generate(self, requests):
        for batch in micro_batches(requests, self.batch_size):  # the real engines' rule
            FakeEngine.log.append(("generate", self.expert.name, len(batch)))
            for i in batch:
                text = self.respond(self.expert.name, requests[i])
                prompt = sum(len(content.split()) for _, content in requests[i].messages)  # one token a word
                yield i, Completion(text, len(text.split()), prompt_tokens=prompt)


# ------------------------------------------------------------------ vLLM


@dataclass
class FakeVLLMState:
    constructed: list = field(default_factory=list)  # kwargs of every LLM(...)
    generate_calls: list = field(default_factory=list)  # (prompts, sampling params list)
    teardown: list = field(default_factory=list)
    lora_requests: list = field(default_factory=list)  # the lora_request of each generate call


class _Tokenizer:
    """One token per character, and a BOS (chr 2) when asked for special tokens, as a Llama-style
    tokenizer adds one: enough to check counts, cuts and double BOS."""

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        assert tokenize is False
        text = "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages)
        return text + ("<|assistant|>" if add_generation_prompt else "")

    def encode(self, text, add_special_tokens=True):
        return [2] * add_special_tokens + [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def install_fake_vllm(monkeypatch) -> FakeVLLMState:
    """Put a module named ``vllm`` on sys.modules that mirrors the parts of vLLM 0.32's API we use:
    ``LLM(model=..., **engine_args)``, ``LLM.get_tokenizer()``, ``LLM.generate(prompts,
    sampling_params, *, use_tqdm)`` returning ``RequestOutput``-like objects (a text prompt is
    tokenized with special tokens, as vLLM does; a ``{"prompt_token_ids": ...}`` prompt is read as
    given), ``llm_engine.engine_core.shutdown()``, ``LoRARequest`` (a LoRA request on an engine
    started without ``enable_lora`` fails), keyword-only ``SamplingParams`` that reject
    unknown fields, and the parallel-state teardown functions."""
    state = FakeVLLMState()

    class SamplingParams:
        FIELDS = {"n": 1, "temperature": 1.0, "top_p": 1.0, "top_k": -1, "seed": None,
                  "stop": None, "max_tokens": 16, "presence_penalty": 0.0}

        def __init__(self, **kwargs):
            unknown = set(kwargs) - set(self.FIELDS)
            if unknown:
                raise TypeError(f"unexpected SamplingParams fields {unknown}")
            for key, default in self.FIELDS.items():
                setattr(self, key, kwargs.get(key, default))
            if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_tokens < 1:
                raise ValueError("invalid sampling parameters")

    class CompletionOutput:
        def __init__(self, text, token_ids, finish_reason):
            self.index, self.text, self.token_ids, self.finish_reason = 0, text, token_ids, finish_reason

    class RequestOutput:
        def __init__(self, prompt_token_ids, outputs):
            self.prompt_token_ids, self.outputs = prompt_token_ids, outputs

    class LLM:
        def __init__(self, model, **kwargs):
            state.constructed.append({"model": model, **kwargs})
            core = types.SimpleNamespace(shutdown=lambda: state.teardown.append("engine_core.shutdown"))
            self.max_model_len = kwargs.get("max_model_len") or 32768  # vLLM's own, from the config
            dtype = {"auto": None, None: None}.get(kwargs.get("dtype"), kwargs.get("dtype")) or "bfloat16"  # torch.<name>
            config = types.SimpleNamespace(max_model_len=self.max_model_len, dtype=f"torch.{dtype}")
            self.llm_engine = types.SimpleNamespace(engine_core=core, model_config=config)
            self.lora = bool(kwargs.get("enable_lora"))

        def get_tokenizer(self):
            return _Tokenizer()

        def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
            if isinstance(prompts, str):
                prompts = [prompts]
            if not isinstance(sampling_params, list):
                sampling_params = [sampling_params or SamplingParams()] * len(prompts)
            assert len(sampling_params) == len(prompts)
            if lora_request is not None and not self.lora:
                raise ValueError("LoRA is not enabled")
            state.generate_calls.append((list(prompts), list(sampling_params)))
            state.lora_requests.append(lora_request)
            outputs = []
            for prompt, params in zip(prompts, sampling_params):
                ids = prompt["prompt_token_ids"] if isinstance(prompt, dict) else _Tokenizer().encode(prompt)
                if len(ids) > self.max_model_len:
                    raise ValueError(f"The decoder prompt (length {len(ids)}) is longer than the maximum model length")
                # like vLLM: greedy text depends on the prompt alone, sampled text on the request's seed
                rng = random.Random(f"{ids}|{None if params.temperature == 0 else params.seed}")
                words = [f"tok{rng.randrange(1000)}" for _ in range(min(params.max_tokens, 5))]
                reason = "length" if params.max_tokens <= 5 else "stop"
                outputs.append(RequestOutput(list(ids), [CompletionOutput(" ".join(words), list(range(len(words))), reason)]))
            return outputs

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams, vllm.__version__ = LLM, SamplingParams, "0.32.0"
    distributed = types.ModuleType("vllm.distributed")
    parallel_state = types.ModuleType("vllm.distributed.parallel_state")
    parallel_state.destroy_model_parallel = lambda: state.teardown.append("destroy_model_parallel")
    parallel_state.destroy_distributed_environment = lambda: state.teardown.append("destroy_distributed_environment")
    distributed.parallel_state = parallel_state
    vllm.distributed = distributed
    lora, lora_request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    lora_request.LoRARequest = lambda lora_name, lora_int_id, lora_path: types.SimpleNamespace(
        lora_name=lora_name, lora_int_id=lora_int_id, lora_path=lora_path)
    lora.request, vllm.lora = lora_request, lora
    for name, module in (("vllm", vllm), ("vllm.distributed", distributed), ("vllm.distributed.parallel_state", parallel_state),
                         ("vllm.lora", lora), ("vllm.lora.request", lora_request)):
        monkeypatch.setitem(sys.modules, name, module)
    return state


@dataclass(frozen=True)
class FakeFactory(EngineFactory):
    """A run's engine factory making FakeEngines behind the run's own cache; ``run`` is the
    factory the run would have used, ``built`` each (engine, run) made, for tests to read."""

    run: EngineFactory | None = None
    built: list = field(default_factory=list, compare=False)

    def build(self, expert):
        engine = super().build(expert)
        self.built.append((engine, self.run))
        return engine

    def __getstate__(self):
        return {**self.__dict__, "built": []}  # what a Ray actor builds stays in the actor


def use_fake_engines(monkeypatch, respond: Callable | None = None, **fake_kwargs) -> list:
    """Swap every run's one engine factory (``RunContext.engine_factory``, used in process and for
    Ray workers alike) for FakeEngines answering with ``respond``; returns ``FakeFactory.built``."""
    from symoe_eval.runtime.context import RunContext

    built: list = []
    real = RunContext.engine_factory

    def factory(context):
        run = real(context)
        return FakeFactory(FakeEngine, run.cache_dir, {"respond": respond, **fake_kwargs}, run=run, built=built)

    monkeypatch.setattr(RunContext, "engine_factory", factory)
    return built


def fake_embed(self, texts):
    """A fixed pseudo-random vector per text: routing needs only similarities, not meaning."""
    import hashlib

    import numpy as np

    rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=16) for t in texts]
    return np.stack(rows)


def fake_symoe(monkeypatch, respond: Callable, **fake_kwargs) -> None:
    """Our models registered with lm-eval, every engine a FakeEngine answering with ``respond``,
    and symoe's embeddings ``fake_embed``: a whole lm-eval run of our methods without a model."""
    from symoe_eval.harness import plugin
    from symoe_eval.methods.symoe import SymbolicMoE

    plugin.activate()
    FakeEngine.log.clear()
    use_fake_engines(monkeypatch, respond, **fake_kwargs)
    monkeypatch.setattr(SymbolicMoE, "embed", fake_embed)
