"""Continuous batching for transformers models on a CPU, with texts that do not depend on batch-mates.

A request's arithmetic involves only its own tokens: its prompt is prefilled alone (no padding);
at each decoding step the active rows' new tokens go through the model together, where every
operation is row by row (norms, rotary embeddings, activations) or a linear layer, whose rows are
bit-identical whatever the other rows hold, at any width from two rows on; attention runs per
row over that row's own keys (padding has exactly zero probability), in sums whose grouping does
not depend on the other rows' lengths, through an attention function registered with
transformers. So a finished row leaves at once, the step narrows or the next request takes its
slot, without changing any other row's text: a request draws the same text alone, in any batch,
at any batch size, in any worker, fresh or resumed. ``rows_are_independent`` checks this on the
loaded model before it is used.

Linear weights are re-laid out once for oneDNN (``pack_linears``) where that gives the same
numbers: decoding steps at batch 8 take about 0.6x the time on an AVX512-BF16 CPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

log = logging.getLogger(__name__)

ATTENTION = "symoe_rows"  # the attention function's name in transformers' AttentionInterface
_ACTIVE: contextvars.ContextVar["SlotCache"] = contextvars.ContextVar("symoe_slot_cache")


class Unsupported(Exception):
    """The model needs something this loop does not do (sliding windows, soft-capping)."""


SPAN_CHUNK = 64  # positions per product in a step's attention (``rows_attention``)


class SlotCache:
    """Keys and values of ``slots`` rows per layer, in float32, ``capacity`` positions each
    (grown on demand). A forward pass writes either one slot's prompt (``prefill``) or one new
    position of each of the rows in slots ``0..n-1`` (``step``)."""

    def __init__(self, slots: int, capacity: int):
        self.slots, self.capacity = slots, capacity
        self.keys: dict[int, object] = {}
        self.values: dict[int, object] = {}
        self.prefilling: int | None = None  # the slot a prompt is being written to
        self.lengths = None  # each row's length after this step (a tensor)
        self.mask = None  # additive attention mask of this step: (rows, 1, span, 1)

    def prefill(self, slot: int) -> None:
        self.prefilling = slot

    def step(self, lengths: list[int]) -> None:
        """A step of rows of these lengths (the new position included); the positions attended,
        ``span``, are the longest row's rounded up to whole ``SPAN_CHUNK``s."""
        import torch

        self.prefilling = None
        self.lengths = torch.tensor(lengths)
        span = -(-int(self.lengths.max()) // SPAN_CHUNK) * SPAN_CHUNK
        self.ensure(span)
        keep = torch.arange(span)[None, :] < self.lengths[:, None]
        self.mask = torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))[:, None, :, None]

    def update(self, key, value, layer_idx: int, **_):
        import torch

        if layer_idx not in self.keys:
            shape = (self.slots, key.shape[1], self.capacity, key.shape[3])
            self.keys[layer_idx] = torch.zeros(shape, device=key.device)
            self.values[layer_idx] = torch.zeros(shape, device=key.device)
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self.prefilling is not None:  # the prompt attends to itself: return it as computed
            keys[self.prefilling, :, : key.shape[2]] = key[0]
            values[self.prefilling, :, : key.shape[2]] = value[0]
            return key, value
        rows = torch.arange(len(self.lengths))
        keys[rows, :, self.lengths - 1] = key[:, :, 0].float()
        values[rows, :, self.lengths - 1] = value[:, :, 0].float()
        return keys, values

    def ensure(self, length: int) -> None:
        """Room for ``length`` positions in every slot (doubling, keeping what is there)."""
        if length <= self.capacity:
            return
        import torch

        self.capacity = max(length, 2 * self.capacity)
        for store in (self.keys, self.values):
            for layer, old in store.items():
                store[layer] = torch.zeros((*old.shape[:2], self.capacity, old.shape[3]), device=old.device)
                store[layer][:, :, : old.shape[2]] = old

    def copy(self, source: int, target: int, length: int) -> None:
        """Slot ``source``'s first ``length`` positions into slot ``target``."""
        for store in (self.keys, self.values):
            for buffer in store.values():
                buffer[target, :, :length] = buffer[source, :, :length]


def rows_attention(module, query, keys, values, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Prefill: causal attention of the prompt to itself. Step: each row's query against its
    slot's keys, masked past its length (zero probability, exactly), in float32, with batched
    matrix products laid out so that no row's sums depend on the step's longest row: scores sum
    over ``dim`` alone, and the weighted values over positions in chunks of ``SPAN_CHUNK``, added
    in order (one product over the whole span regroups its sum by the span's length, so a row's
    result changed with its batch-mates' lengths); a row's chunks past its length add exact
    zeros. Returns ``(batch, tokens, heads, head_dim)`` as transformers expects."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    if kwargs.get("sliding_window") or kwargs.get("softcap"):
        raise Unsupported("sliding-window or soft-capped attention")
    cache = _ACTIVE.get()
    if cache.prefilling is not None:
        out = sdpa(query, keys, values, is_causal=True, scale=scaling, enable_gqa=query.shape[1] != keys.shape[1])
        return out.transpose(1, 2).contiguous(), None
    rows, heads, _, dim = query.shape
    kv_heads, span = keys.shape[1], cache.mask.shape[2]
    q = query.float().reshape(rows * kv_heads, heads // kv_heads, dim)
    k = keys.view(-1, keys.shape[2], dim)[: rows * kv_heads, :span]
    v = values.view(-1, values.shape[2], dim)[: rows * kv_heads, :span]
    scores = torch.bmm(k, q.transpose(1, 2)).view(rows, kv_heads, span, -1)
    scores.mul_(scaling if scaling is not None else dim**-0.5).add_(cache.mask)
    probs = torch.softmax(scores, dim=2).view(rows * kv_heads, span, -1).transpose(1, 2)
    out = torch.bmm(probs[:, :, :SPAN_CHUNK], v[:, :SPAN_CHUNK])
    for start in range(SPAN_CHUNK, span, SPAN_CHUNK):
        out += torch.bmm(probs[:, :, start : start + SPAN_CHUNK], v[:, start : start + SPAN_CHUNK])
    return out.view(rows, heads, 1, dim).to(query.dtype).transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def rows_attention_on(model, cache: SlotCache):
    """``model`` attends with ``rows_attention`` over ``cache`` inside the block (one forward
    pass), as before after it."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, rows_attention)
    before = model.config._attn_implementation
    token = _ACTIVE.set(cache)
    model.config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        model.config._attn_implementation = before
        _ACTIVE.reset(token)


@dataclass
class Job:
    """One request as the loop runs it: its prompt ids (already fitted to the context), its
    budget and sampling, and a random generator of its own (``None``: greedy)."""

    index: int
    prompt: tuple[int, ...]
    max_new: int
    temperature: float = 0.0
    top_p: float = 1.0
    generator: object = None
    stop: tuple[str, ...] = ()


@dataclass(eq=False)
class Row:
    """A job holding a slot: the tokens drawn so far and the positions of the slot filled."""

    job: Job
    slot: int
    length: int
    first_logits: object  # the prompt's next-token logits, for copies of the same prompt
    tokens: list[int] = field(default_factory=list)


@dataclass
class Finished:
    index: int
    tokens: list[int]
    reason: str  # "stop" (an end token or stop string) or "length"


def draw(logits, job: Job) -> int:
    """The next token of one row: the first of its largest logits when greedy (``max`` picks it
    as ``argmax`` does, 4x faster over a bf16 vocabulary on a CPU), else ``sample_token`` with
    its generator."""
    if job.generator is None:
        return int(logits.max(dim=-1).indices)
    return sample_token(logits, job.temperature, job.top_p, job.generator)


def sample_token(logits, temperature: float, top_p: float, generator) -> int:
    """One token from one row's logits, temperature-scaled and top-p cut, with one uniform number
    from ``generator`` and an inverse-CDF lookup (a ``multinomial`` over a 150k vocabulary cost a
    quarter of a decoding step on a CPU). Both of the hf engine's paths draw here."""
    import torch

    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        drop = sorted_probs.cumsum(-1) - sorted_probs > top_p
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
    cdf = probs.double().cumsum(-1)
    # 1 - U lies in (0, 1], so a token of probability zero is never the first to reach it
    u = 1.0 - torch.rand(1, generator=generator, device=logits.device, dtype=torch.float64)
    return int(torch.searchsorted(cdf, u * cdf[-1]).clamp(max=logits.shape[-1] - 1))


# A step's fewest rows. On a CPU a linear layer over one row runs another kernel (it splits each
# sum across threads), whose last bits differ; from two rows on, each row's sums are the same at
# any width, which ``rows_are_independent`` checks on the loaded model.
NARROWEST = 2


class ContinuousDecoder:
    """Runs jobs through ``slots`` rows: a free slot takes the next job (its prompt prefilled
    alone, or copied from a row with the same prompt), every step decodes one token of each
    active row, and a row leaves as soon as it ends: an end token, a job's stop string in the
    text ``decode(tokens)`` gives, or its budget. ``on_tokens(n)`` hears of budget used (decoded
    or left unused); ``trace``, when given, collects each job's logits (``rows_are_independent``).
    A step has one row per active row and at least ``narrowest``, so rows that end early stop
    costing at once. ``share_prefills`` off prefills every row, copies of a prompt too
    (``benchmarks/method_cost.py --ablate-prefill`` measures the lever so)."""

    share_prefills = True

    def __init__(self, model, slots: int, end_ids: Sequence[int], decode: Callable[[list[int]], str] | None = None,
                 on_tokens: Callable[[int], None] = lambda n: None, trace: dict | None = None,
                 narrowest: int = NARROWEST):
        self.model, self.slots, self.end_ids = model, max(1, slots), set(end_ids)
        self.decode, self.on_tokens, self.trace, self.narrowest = decode, on_tokens, trace, narrowest
        self.cache_arg = cache_argument(model)

    def run(self, jobs: Sequence[Job]) -> Iterator[Finished]:
        if not jobs:
            return
        longest_prompt = max(len(j.prompt) for j in jobs)
        cache = SlotCache(max(self.slots, self.narrowest), longest_prompt + 128)
        waiting, active = deque(jobs), []
        while waiting or active:
            while waiting and len(active) < self.slots:
                active.append(self._admit(cache, waiting.popleft(), active))
            yield from self._leave(cache, active)
            if active:
                self._step(cache, active)
                yield from self._leave(cache, active)

    def _admit(self, cache: SlotCache, job: Job, active: list[Row]) -> Row:
        """A row for ``job`` in the next free slot, with its prompt's keys and first token."""
        import torch

        slot, length = len(active), len(job.prompt)
        cache.ensure(length)
        twin = next((r for r in active if r.job.prompt == job.prompt), None) if self.share_prefills else None
        if twin is not None:
            cache.copy(twin.slot, slot, length)
            logits = twin.first_logits
        else:
            cache.prefill(slot)
            ids = torch.tensor([job.prompt], device=self.model.device)
            logits = self._forward(cache, ids, torch.arange(length, device=ids.device).unsqueeze(0))[0, -1]
        row = Row(job, slot, length, logits)
        self._draw(row, logits)
        self.on_tokens(1)
        return row

    def _step(self, cache: SlotCache, active: list[Row]) -> None:
        """One token for every active row, in a step of ``len(active)`` rows and never fewer
        than ``narrowest`` (stand-ins of length 1 fill in, their draws dropped)."""
        import torch

        free = max(0, self.narrowest - len(active))
        cache.step([r.length + 1 for r in active] + [1] * free)
        ids = torch.tensor([[r.tokens[-1]] for r in active] + [[0]] * free, device=self.model.device)
        positions = torch.tensor([[r.length] for r in active] + [[0]] * free, device=ids.device)
        logits = self._forward(cache, ids, positions)
        for i, row in enumerate(active):
            row.length += 1
            self._draw(row, logits[i, -1])
        self.on_tokens(len(active))

    def _draw(self, row: Row, logits) -> None:
        row.tokens.append(draw(logits, row.job))
        if self.trace is not None:
            self.trace.setdefault(row.job.index, []).append(logits)

    def _forward(self, cache: SlotCache, ids, positions):
        import torch

        mask = torch.ones((ids.shape[0], 1, 1, 1), dtype=torch.bool, device=ids.device)  # unread: the cache masks
        with rows_attention_on(self.model, cache):  # only for this pass: the model is shared
            return self.model(input_ids=ids, position_ids=positions, attention_mask=mask, use_cache=True,
                              logits_to_keep=1, **{self.cache_arg: cache}).logits

    def _leave(self, cache: SlotCache, active: list[Row]) -> Iterator[Finished]:
        """Rows that ended give up their slots; the rows left move into slots ``0..n-1``."""
        ending = [(row, self._ending(row)) for row in active]
        if all(reason is None for _, reason in ending):
            return
        active[:] = [row for row, reason in ending if reason is None]
        for row, reason in ending:
            if reason is not None:
                self.on_tokens(row.job.max_new - len(row.tokens))
                yield Finished(row.job.index, row.tokens, reason)
        holes = iter(sorted(set(range(len(active))) - {r.slot for r in active}))
        for row in [r for r in active if r.slot >= len(active)]:
            hole = next(holes)
            cache.copy(row.slot, hole, row.length)
            row.slot = hole
        active.sort(key=lambda r: r.slot)

    def _ending(self, row: Row) -> str | None:
        """``stop`` (an end token or a stop string), ``length`` (the budget), or None: goes on."""
        if row.tokens[-1] in self.end_ids or self._stopped(row):
            return "stop"
        return "length" if len(row.tokens) >= row.job.max_new else None

    def _stopped(self, row: Row) -> bool:
        """Whether the row's last tokens (enough for its longest stop string) contain one."""
        if not row.job.stop or self.decode is None:
            return False
        tail = self.decode(row.tokens[-(4 + max(len(s) for s in row.job.stop)) :])
        return any(s and s in tail for s in row.job.stop)


def cache_argument(model) -> str:
    """What the model's forward calls its KV cache (``cache`` in newer transformers)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def pack_linears(model) -> int:
    """Re-lay every bf16 linear layer's weights out once for oneDNN on a CPU, where the packed
    layer gives bit-identical results on a probe; returns how many layers were packed (0 where
    torch lacks the ops or the results differ: the layers then stay as they were)."""
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight.dtype == torch.bfloat16
               and m.weight.device.type == "cpu" and not hasattr(m, "packed_weight")]
    try:
        packed = [torch.ops.mkldnn._reorder_linear_weight(m.weight.detach(), 8) for m in linears]
    except (AttributeError, RuntimeError) as err:
        log.info("linear layers left unpacked: %s", err)
        return 0
    probe = torch.Generator().manual_seed(0)
    for module, weight in zip(linears, packed):
        x = torch.randn((3, module.in_features), generator=probe).to(torch.bfloat16)
        if not torch.equal(packed_linear(weight, module.bias, x), torch.nn.functional.linear(x, module.weight, module.bias)):
            log.info("linear layers left unpacked: packed results differ from unpacked ones")
            return 0
    for module, weight in zip(linears, packed):
        module.packed_weight = weight
        module.forward = functools.partial(packed_linear, weight, module.bias)
    return len(linears)


def packed_linear(weight, bias, x):
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


# Token ids of three short probe prompts (any vocabulary has them) and the steps each decodes (they
# end apart, so the probe's steps narrow), and the width of the probe's wide steps.
PROBE_PROMPTS = ((11, 12, 13, 14, 15, 16, 17), (21, 22, 23), (31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41))
PROBE_STEPS = (3, 1, 4)
PROBE_WIDE = 16


def rows_are_independent(model) -> str | None:
    """None where this loop may serve ``model``: each probe prompt's logits over a few greedy
    steps are bit-identical alone (steps of ``NARROWEST`` rows), beside the others (steps that
    narrow as they end) and in steps of ``PROBE_WIDE`` rows, and match the model's own forward
    pass (transformers' attention) to bf16 rounding; else why not, for the log."""
    import torch

    def traced(indices, **decoding) -> dict:
        trace: dict = {}
        list(ContinuousDecoder(model, len(PROBE_PROMPTS), (), trace=trace, **decoding).run(
            [Job(i, PROBE_PROMPTS[i], PROBE_STEPS[i]) for i in indices]))
        return trace

    everyone = range(len(PROBE_PROMPTS))
    try:
        runs = [traced(everyone), traced(everyone, narrowest=PROBE_WIDE), {i: traced([i])[i] for i in everyone}]
        first = int(runs[0][0][0].argmax())
        own = model(input_ids=torch.tensor([[*PROBE_PROMPTS[0], first]], device=model.device)).logits[0, -1]
    except Exception as err:  # a model this loop cannot drive: the engine's batched path serves it
        return f"{type(err).__name__}: {str(err)[:200]}"
    if any(not torch.equal(a, b) for run in runs[1:] for i in everyone for a, b in zip(runs[0][i], run[i], strict=True)):
        return "a row's logits depend on its batch-mates or the step's width on this machine"
    gap = float((runs[0][0][1].float() - own.float()).abs().max())
    if gap > 0.05 * float(own.float().abs().max()):
        return f"logits differ from the model's own forward pass by {gap:.3g}"
    return None
