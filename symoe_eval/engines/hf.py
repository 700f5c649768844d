"""transformers backend: chat generation on CPU or GPU.

On a CPU, requests run through our own continuous-batching loop (``engines.continuous``), whose
texts do not depend on batch-mates; elsewhere, or for a model that loop cannot drive, through
transformers' ``generate`` in left-padded micro-batches (``engines.batching``). GGUF experts are
de-quantized once and saved as a dense safetensors copy under the cache, so later loads take a
second instead of tens of seconds.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from symoe_eval.engines.base import (
    Completion,
    Engine,
    GenerationRequest,
    chat_token_ids,
    load_error,
    pick_device,
    pick_dtype,
    torch_threads,
    truncate_at_stop,
)
from symoe_eval.engines.batching import batch_order, micro_batches
from symoe_eval.engines.continuous import (
    ContinuousDecoder,
    Job,
    cache_argument,
    pack_linears,
    rows_are_independent,
    sample_token,
)
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec
from symoe_eval.pools.weights import loadable_weights, model_context_length, resolve_adapter, resolve_weights

log = logging.getLogger(__name__)

# End-of-turn markers of common chat templates; whichever the vocabulary has also ends generation.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")


class StepCounter:
    """A transformers streamer that reports each decoding step of a batch (``rows`` tokens of
    budget) as it happens, so a long micro-batch shows progress instead of looking frozen."""

    def __init__(self, rows: int, report):
        self.rows, self.report, self.steps, self._prompt_seen = rows, report, 0, False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() hands over the prompt first
            self._prompt_seen = True
            return
        self.steps += 1
        self.report(self.rows)

    def end(self) -> None:
        pass


class RowSampler:
    """A logits processor that samples each row of a batch with that row's own generator (seeded
    from its request), leaving only the drawn token for greedy decoding to pick. So a request's
    draw never depends on which requests share its batch, as with vLLM's per-request seeds."""

    def __init__(self, seeds, temperature: float, top_p: float, device):
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(int(s) if s is not None else 0) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids, scores):
        import torch

        drawn = torch.tensor([[sample_token(row, self.temperature, self.top_p, g)] for row, g in zip(scores, self.generators)],
                             device=scores.device)
        return torch.full_like(scores, float("-inf")).scatter(-1, drawn, 0.0)


UNSET = "<unset>"  # a shared model's active adapter after one was attached: set before the next use


def use_adapter(model, name: str | None) -> None:
    """Make adapter ``name`` the active one on every peft layer of ``model`` (None: every adapter
    off, the base itself), as transformers' ``set_adapter`` and ``disable_adapters`` do, without
    their gate on peft >= 0.22 (transformers 5.25 asks for it; PyPI's newest peft is 0.21.2, whose
    layers do the same work)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.enable_adapters(name is not None)
            if name is not None:
                module.set_adapter(name)


@dataclass
class SharedModel:
    """A model held in this process, with the experts using it and the adapters attached to it."""

    model: object
    decoding: str  # "continuous" (engines.continuous) or "micro-batches" (transformers' generate)
    users: set[int] = field(default_factory=set)  # the engines using it (two may serve one expert)
    adapters: set[str] = field(default_factory=set)
    active: str | None = None  # the active adapter; None: the base itself


class HFEngine(Engine):
    """transformers on CPU or GPU: the fallback wherever vLLM cannot run. Experts that share a
    base (LoRA experts and the base itself) share one copy of it in this process."""

    name = "hf"
    auto_priority = 0
    resident: dict[tuple, SharedModel] = {}  # by base weights and device, for every HFEngine of this process

    def __init__(self, expert: ExpertSpec, **kwargs):
        super().__init__(expert, **kwargs)
        self.model = None
        self.tokenizer = None
        self.decoding = None  # the loaded model's: "continuous" or "micro-batches"

    @classmethod
    def gpus_per_worker(cls, experts: Sequence[ExpertSpec], device: str | None = None) -> float:
        """One GPU where there is one and the run does not ask for the CPU."""
        import torch

        return 1.0 if torch.cuda.is_available() and device != "cpu" else 0.0

    @classmethod
    def available(cls) -> bool:
        return True

    # ------------------------------------------------------------------ loading

    def _common_kwargs(self) -> dict:
        return {"trust_remote_code": bool(self.expert.engine_kwargs.get("trust_remote_code"))}

    def load_tokenizer(self):
        """The expert's tokenizer with its chat template, without the model: from the dense copy
        when there is one, else straight from the GGUF file or the hub id."""
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            where, gguf_file = loadable_weights(self.expert)
            try:
                tokenizer = AutoTokenizer.from_pretrained(where, **({"gguf_file": gguf_file} if gguf_file else {}),
                                                          **self._common_kwargs())
            except Exception as err:
                raise load_error(self.expert.name, where, err) from err
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            if self.expert.chat_template:
                tokenizer.chat_template = self.expert.chat_template
            if tokenizer.chat_template is None:
                raise SymoeError(f"expert '{self.expert.name}' has no chat template; set chat_template in its pool entry")
            self.tokenizer = tokenizer
        return self.tokenizer

    def _load(self) -> bool:
        """The model from the weights its residency names, shared in this process by every expert
        on the same base (a LoRA expert attaches its adapter to it); False when it was resident."""
        shared = self.resident.get(self._resident_key())
        fresh = shared is None
        if fresh:
            model = self._load_weights()
            shared = self.resident[self._resident_key()] = SharedModel(model, decoding_for(model))
        shared.users.add(id(self))
        self.model, self.decoding = shared.model, shared.decoding
        try:
            if self.expert.adapter is not None:
                self._attach_adapter(shared)
        except SymoeError:
            self._unload()  # a failed load leaves nothing resident
            raise
        self.load_tokenizer()
        self._eos_ids = self._end_ids()
        return fresh

    def _resident_key(self) -> tuple:
        """One shared model per base, its weights and where and how it runs."""
        return self.residency, self.expert.source, self.device_request, self.expert.engine_kwargs.get("dtype")

    def _load_weights(self):
        import torch
        from transformers import AutoModelForCausalLM

        device = pick_device(self.device_request)
        dtype = pick_dtype(self.expert.engine_kwargs.get("dtype"), device)
        torch_threads(self.threads)
        where, _ = resolve_weights(self.expert)
        try:
            folder, _ = loadable_weights(self.expert, build_dtype=dtype)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **self._common_kwargs(), **self.backend_kwargs)
        except Exception as err:  # any loader failure becomes one line naming the expert
            raise load_error(self.expert.name, where, err) from err
        torch.set_grad_enabled(False)
        log.info("%s on %s in %s", self.residency, device, dtype)
        return model.to(device).eval()

    def _attach_adapter(self, shared: "SharedModel") -> None:
        """This expert's peft adapter on the shared base, once (transformers' peft integration)."""
        if self.expert.name in shared.adapters:
            return
        folder = resolve_adapter(self.expert)
        try:
            self.model.load_adapter(folder, adapter_name=self.expert.name)
        except Exception as err:  # a wrong base, rank or file: one line
            raise load_error(self.expert.name, f"adapter {folder}", err) from err
        shared.adapters.add(self.expert.name)
        shared.active = UNSET  # which adapter load_adapter leaves active is transformers' business

    def _activate(self) -> None:
        """Make this expert's adapter (or none, for the base itself) the active one on the shared model."""
        shared = self.resident[self._resident_key()]
        wanted = self.expert.name if self.expert.adapter is not None else None
        if shared.active == wanted:
            return
        use_adapter(self.model, wanted)
        shared.active = wanted
        self.stats.adapter_switches += 1

    def describe_setup(self) -> dict:
        import torch
        import transformers

        return {**super().describe_setup(), "version": f"transformers {transformers.__version__}, torch {torch.__version__}",
                "dtype": str(self.model.dtype).removeprefix("torch."), "device": str(self.model.device),
                "threads": torch_threads(None), "decoding": self.decoding,
                **({"base": self.expert.base, "adapter_sha256": self.expert.adapter.sha256} if self.expert.adapter else {})}

    def _end_ids(self) -> list[int]:
        vocab = self.tokenizer.get_vocab()
        ids = {vocab[t] for t in END_OF_TURN if t in vocab}
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        configured = self.model.generation_config.eos_token_id
        ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
        return sorted(ids)

    def _unload(self) -> None:
        import torch

        shared = self.resident.get(self._resident_key())
        if shared is not None:
            shared.users.discard(id(self))
            if not shared.users:  # the last engine on this base: free it
                del self.resident[self._resident_key()]
        self.model = None  # the tokenizer stays: it is small and prompt fitting reuses it
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ generation

    def _model_context_limit(self) -> int | None:
        if self.model is not None:
            return getattr(self.model.config, "max_position_embeddings", None)
        return model_context_length(self.expert)

    def _generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Completion]]:
        prompts = [chat_token_ids(self.tokenizer, r) for r in requests]  # made once per request
        self._activate()  # another expert on the same base may have run in between
        if self.decoding == "continuous":
            yield from self._generate_continuous(requests, prompts)
            return
        for batch in micro_batches(requests, self.batch_size):  # seeds are per row: they do not split batches
            texts = self._generate_batch([prompts[i] for i in batch], requests[batch[0]].params,
                                         [requests[i].seed for i in batch])
            yield from zip(batch, texts)

    def _generate_continuous(self, requests: Sequence[GenerationRequest], prompts: list[list[int]]):
        """Every request through ``batch_size`` rows of the continuous loop, copies of one prompt
        side by side (they share its prefill); yields each as it ends."""
        order = sorted(range(len(requests)), key=lambda i: batch_order(requests[i]))
        jobs = {i: self._job(i, requests[i], prompts[i]) for i in order}
        decoder = ContinuousDecoder(self.model, self.batch_size, self._eos_ids, decode=self.tokenizer.decode,
                                    on_tokens=self._budget_used)
        for done in decoder.run(list(jobs.values())):
            job = jobs[done.index]
            yield done.index, self._completion(done.tokens, done.reason == "stop", requests[done.index].params,
                                               len(job.prompt))

    def _job(self, index: int, request: GenerationRequest, prompt: list[int]) -> Job:
        import torch

        params = request.params
        keep, max_new = self.fit_context(len(prompt), params.max_tokens, self.context_limit())
        generator = None if params.greedy else torch.Generator().manual_seed(request.seed or 0)
        return Job(index, tuple(prompt[-keep:]), max_new, params.temperature, params.top_p, generator, params.stop)

    def _completion(self, tokens: list[int], ended: bool, params, prompt_tokens: int) -> Completion:
        """The text of ``tokens`` up to any stop string; ``ended``: an end token or stop string was met."""
        text, stopped = truncate_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), params.stop)
        return Completion(text=text, num_tokens=len(tokens), finish_reason="stop" if ended or stopped else "length",
                          prompt_tokens=prompt_tokens)

    def _left_padded(self, rows: Sequence[Sequence[int]]):
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        return ids, mask

    def _shared_prefill(self, ids, mask, rows: list[int]) -> dict:
        """Prefill each distinct prompt once and copy its KV cache to every row that repeats it
        (what vLLM's prefix caching does for repeated samples): on CPU the prompt's forward pass
        costs more than a short reply's decoding. generate() then feeds only the last token."""
        import torch

        name = cache_argument(self.model)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                         use_cache=True, logits_to_keep=1)
        cache = getattr(out, name)
        index = torch.tensor(rows, device=ids.device)
        cache.batch_select_indices(index)
        return {"input_ids": ids[index], "attention_mask": mask[index], name: cache}

    def _generate_batch(self, prompts: list[list[int]], params, seeds: list[int | None]) -> list[Completion]:
        distinct = list(dict.fromkeys(map(tuple, prompts)))
        rows = [distinct.index(tuple(p)) for p in prompts]
        ids, mask = self._left_padded(distinct)
        keep, max_new = self.fit_context(ids.shape[1], params.max_tokens, self.context_limit(), len(prompts))
        ids, mask = ids[:, -keep:].to(self.model.device), mask[:, -keep:].to(self.model.device)
        if len(distinct) < len(prompts) and keep > 1:
            inputs = self._shared_prefill(ids, mask, rows)
        else:
            inputs = {"input_ids": ids, "attention_mask": mask}
        sampling = {"do_sample": False}
        if not params.greedy:  # sampled by RowSampler; generate() then keeps the one token left
            sampling["logits_processor"] = [RowSampler(seeds, params.temperature, params.top_p, self.model.device)]
        steps = StepCounter(len(prompts), self._budget_used)
        out = self.model.generate(
            **inputs,
            streamer=steps,
            max_new_tokens=max_new,
            eos_token_id=self._eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(params.stop) or None,
            tokenizer=self.tokenizer,
            **sampling,
        )
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        completions = []
        for row, prompt in zip(new_tokens, prompts):
            ended = [j for j, tok in enumerate(row.tolist()) if tok in self._eos_ids]
            tokens = row[: ended[0] + 1 if ended else len(row)].tolist()
            completions.append(self._completion(tokens, bool(ended), params, min(len(prompt), keep)))
        self._budget_used(len(prompts) * (params.max_tokens - steps.steps))  # what early stops left
        return completions


def decoding_for(model) -> str:
    """``continuous`` for a model on a CPU that the continuous loop drives with texts independent
    of batch-mates (its linear layers packed first), else ``micro-batches``; logs why."""
    if model.device.type != "cpu":
        return "micro-batches"
    packed = pack_linears(model)
    reason = rows_are_independent(model)
    log.info("%s: %s decoding (%d linear layers packed)%s", type(model).__name__,
             "micro-batch" if reason else "continuous", packed, f": {reason}" if reason else "")
    return "micro-batches" if reason else "continuous"
