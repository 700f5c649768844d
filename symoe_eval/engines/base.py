"""The engine interface: load one expert, generate a batch of chat requests, unload.

A scheduler holds one engine at a time, so each model is loaded once and runs its whole group
of requests as one batch (the point of Symbolic-MoE's expert-grouped inference).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from abc import ABC
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterator, Sequence

from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec, Generation
from symoe_eval.settings import DEFAULTS

log = logging.getLogger(__name__)

Message = tuple[str, str]  # (role, content)

# A model's context when neither its pool entry nor its own config says (fake and custom engines).
DEFAULT_CONTEXT = 32768


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = Generation.temperature  # a pool entry's defaults (``generation:``)
    top_p: float = Generation.top_p
    max_tokens: int = Generation.max_gen_toks
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class GenerationRequest:
    """One call to one expert; ``sample_index`` tells repeated samples of one prompt apart."""

    messages: tuple[Message, ...]
    params: SamplingParams = SamplingParams()
    sample_index: int = 0

    @classmethod
    def user(cls, prompt: str, params: SamplingParams = SamplingParams(), sample_index: int = 0):
        return cls((("user", prompt),), params, sample_index)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    @property
    def seed(self) -> int | None:
        """This request's own sampling seed, derived from (run seed, messages, sample index):
        repeated samples of one prompt differ, and the same request draws the same text again
        whatever shares its batch. The one place seeds are made; every engine uses it."""
        if self.params.seed is None:
            return None
        payload = json.dumps([self.params.seed, self.messages, self.sample_index])
        return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class Completion:
    text: str
    num_tokens: int
    finish_reason: str = "stop"  # "stop", "length", or what a server said
    cached: bool = False
    prompt_tokens: int = 0  # what the engine read (after any cut); 0 for a cache hit


@dataclass
class EngineStats:
    """One model's work in a run; schedulers (in process or over Ray workers) add these up."""

    loads: int = 0
    load_seconds: float = 0.0
    calls: int = 0
    cached_calls: int = 0
    cached_tokens: int = 0  # tokens the cache served: work a cold run would generate
    prompt_tokens: int = 0
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    truncated_prompts: int = 0
    adapter_switches: int = 0  # a LoRA expert's adapter made active on a resident base: not a load

    def add(self, other: "EngineStats") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def since(self, before: "EngineStats") -> "EngineStats":
        return EngineStats(**{f.name: getattr(self, f.name) - getattr(before, f.name) for f in fields(self)})

    def count_load(self, start: float) -> None:
        """A load that began at ``start`` (``time.perf_counter()``) and ended now."""
        self.loads += 1
        self.load_seconds += time.perf_counter() - start

    def count_hit(self, hit: Completion) -> None:
        """A call the generation cache answered."""
        self.cached_calls += 1
        self.cached_tokens += hit.num_tokens

    def as_dict(self) -> dict:
        """The counts as a run summary writes them; ``adapter_switches`` only where a model has adapters."""
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()
                if k != "adapter_switches" or v}


class Engine(ABC):
    """Generates for one expert. Use as a context manager: load on enter, free memory on exit.

    A backend subclasses this in one file and is named in ``symoe_eval.engines.ENGINES``. It
    implements ``_generate`` (micro-batches of requests) and usually ``_load`` / ``_unload``;
    this class keeps the loaded state, stats, timing, progress and the context rule
    (``fit_context``)."""

    name = "abstract"
    default_max_loaded = 2  # models a scheduler keeps resident at once with this backend
    default_pool = "tiny-cpu"  # the pool a run uses when it names none
    auto_priority = -1  # engine=auto picks the available backend with the highest; < 0: never
    load_cost_tokens = 2000  # a load, in tokens this backend decodes meanwhile (worker placement)
    holds_memory = True  # False: a loaded engine takes no room here (a served model)

    def __init__(self, expert: ExpertSpec, *, batch_size: int = DEFAULTS.batch_size, device: str | None = DEFAULTS.device,
                 seed: int = DEFAULTS.seed, threads: int | None = DEFAULTS.threads):
        self.expert = expert
        self.batch_size = max(1, int(batch_size))
        self.device_request = device
        self.seed = seed
        self.threads = threads  # torch threads of the process that runs the model; None: its default
        self._setup: dict = {}  # ``describe_setup`` at the last load
        self.stats = EngineStats()
        self._on_budget: Callable[[int], None] | None = None
        self._loaded = False
        self._context: int | None = 0  # 0: not looked up yet

    @classmethod
    def available(cls) -> bool:
        """Whether ``engine=auto`` may pick this backend here (installed, with its hardware)."""
        return False

    @classmethod
    def gpus_per_worker(cls, experts: Sequence[ExpertSpec], device: str | None = None) -> float:
        """GPUs one Ray actor of this backend needs to hold any of ``experts`` (none by default)."""
        return 0.0

    @classmethod
    def auto_priority_here(cls) -> int:
        """``auto_priority`` on this machine (a backend may rank itself by the hardware it finds)."""
        return cls.auto_priority

    @property
    def backend_kwargs(self) -> dict:
        """The pool entry's extra arguments for this backend (``backend_kwargs: {hf: ...}``)."""
        return dict(self.expert.backend_kwargs.get(self.name, {}))

    # ---------------------------------------------------------------- loading

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def residency(self) -> str:
        """What this engine's model occupies when loaded (experts that share a base share it)."""
        return self.expert.residency

    def _load(self) -> bool | None:
        """Bring the model into memory (nothing to do for an engine without weights); False when
        nothing new was loaded (a LoRA expert whose base was already resident)."""

    def _unload(self) -> None:
        """Free what ``_load`` took."""

    def describe_setup(self) -> dict:
        """What the loaded model's texts depend on beyond the request: a backend adds its
        version, dtype, device and threads. Run summaries record it; ``symoe compare`` checks it."""
        return {"engine": self.name, "batch_size": self.batch_size}

    def loaded_setup(self) -> dict:
        """``describe_setup`` as of the last load; empty when this run never loaded the model."""
        return self._setup

    def load(self) -> None:
        start = time.perf_counter()
        fresh = self._load() is not False
        self._loaded = True
        self._setup = self.describe_setup()
        if self.holds_memory and fresh:  # a served model's "load" checks the server; it loads nothing
            self.stats.count_load(start)
        log.info("loaded %s (%s) in %.1fs", self.expert.name, self.name, time.perf_counter() - start)

    def unload(self) -> None:
        self._unload()
        self._loaded = False

    def load_tokenizer(self):
        """The expert's tokenizer (``encode``, ``decode``, ``apply_chat_template``), loadable
        without the model, so prompts can be fitted to the context before any model loads."""
        raise NotImplementedError(f"{type(self).__name__} cannot count tokens")

    def context_limit(self) -> int:
        """The model's context in tokens, known before it loads, and the one value both prompt
        fitting upstream and this engine's last-resort cut use: ``declared_context_limit``, else
        DEFAULT_CONTEXT."""
        return self.declared_context_limit() or DEFAULT_CONTEXT

    def declared_context_limit(self) -> int | None:
        """The pool's ``max_model_len`` (for this backend or generic), else what the backend reads
        from the model's files on this machine; ``None`` when neither says."""
        if self._context == 0:
            configured = self.backend_kwargs.get("max_model_len") or self.expert.engine_kwargs.get("max_model_len")
            self._context = int(configured or self._model_context_limit() or 0) or None
        return self._context

    def _model_context_limit(self) -> int | None:
        """The model's own limit (its config), where the backend can read it."""
        return None

    # ---------------------------------------------------------------- generation

    def pending(self, requests: Sequence[GenerationRequest]) -> int:
        """How many of ``requests`` would reach the model (a cache in front answers the rest)."""
        return len(requests)

    def generating(self):
        """Held while this engine's model generates for the run (a cache's lock; none here)."""
        return contextlib.nullcontext()

    def _generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index into requests, completion)`` as each micro-batch finishes (every
        backend implements this)."""
        raise NotImplementedError

    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Completion]]:
        """Generate every request, loading first if needed; counts calls, tokens and seconds."""
        if not requests:
            return
        if not self.loaded:
            self.load()
        produced = iter(self._generate(requests))
        while True:
            start = time.perf_counter()
            item = next(produced, None)
            self.stats.generate_seconds += time.perf_counter() - start
            if item is None:
                return
            self.stats.calls += 1
            self.stats.generated_tokens += item[1].num_tokens
            self.stats.prompt_tokens += item[1].prompt_tokens
            yield item

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        for i, completion in self.iter_generate(requests):
            out[i] = completion
        return out  # type: ignore[return-value]

    def fit_context(self, prompt_tokens: int, max_new: int, limit: int | None, rows: int = 1) -> tuple[int, int]:
        """The engine contract for an over-long prompt: ``(prompt tokens to keep, new tokens)``
        so both fit ``limit``; the prompt is cut from the left (the question's end and the answer
        format stay), logged and counted, as a last resort after prompt fitting upstream."""
        if not limit or prompt_tokens + max_new <= limit:
            return prompt_tokens, max_new
        keep = min(prompt_tokens, max(limit - max_new, limit // 2))
        if keep < prompt_tokens:
            log.warning("%s: prompt of %d tokens cut to its last %d to fit a context of %d",
                        self.expert.name, prompt_tokens, keep, limit)
            self.stats.truncated_prompts += rows
        return keep, max(1, min(max_new, limit - keep))

    # ---------------------------------------------------------------- progress

    def report_budget_to(self, callback: Callable[[int], None] | None) -> None:
        """Progress inside a long micro-batch: ``callback(n)`` hears of ``n`` more tokens of the
        requests' ``max_tokens`` budget used up (decoded, or left unused by a finished batch)."""
        self._on_budget = callback

    def _budget_used(self, n: int) -> None:
        if self._on_budget is not None and n > 0:
            self._on_budget(n)

    def __enter__(self):
        if not self.loaded:
            self.load()
        return self

    def __exit__(self, *exc):
        if self.loaded:
            self.unload()
        return False


def chat_token_ids(tokenizer, request: GenerationRequest) -> list[int]:
    """A request's chat-templated prompt as token ids, encoded without special tokens: the
    template writes them itself (a tokenizer that also adds a BOS would give two). Every engine
    feeds the model these ids."""
    text = tokenizer.apply_chat_template(request.chat(), tokenize=False, add_generation_prompt=True)
    return list(tokenizer.encode(text, add_special_tokens=False))


def pick_device(requested: str | None = None) -> str:
    """The requested device, except that lm_eval's default ``cuda`` falls back to the CPU."""
    import torch

    if requested and not (requested.startswith("cuda") and not torch.cuda.is_available()):
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_threads(requested: int | None) -> int:
    """Set this process's torch threads when asked (``threads=``) and return the count in use: on
    a CPU the thread count changes the arithmetic, so reproducing a run needs the same."""
    import torch

    if requested:
        torch.set_num_threads(requested)
    return torch.get_num_threads()


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(requested: str | None, device: str):
    """``auto``: bf16 on GPUs and on CPUs with native bf16 (2-3x faster there), else fp32."""
    import torch

    if requested and requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda") or cpu_has_bf16():
        return torch.bfloat16
    return torch.float32



def load_error(name: str, where: str, err: Exception) -> SymoeError:
    """Any loader failure as one line naming the expert and where it loaded from."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return SymoeError(f"expert '{name}' failed to load from {where}: {type(err).__name__}: {first[:300]}")


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the first stop string; lm-eval's convention for ``until``."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
