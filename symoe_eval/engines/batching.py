"""Which requests share a micro-batch: one rule, whatever engine runs them and however a run is spread.

A row's arithmetic depends on its batch-mates (the padded width, the kernels picked for the
batch's shape; in bf16 on a CPU the texts differ), so a request must meet the same batch-mates
with 1 worker or 4, in one chunk or many, fresh or resumed. The rule reads the requests alone:
order them by sampling parameters, prompt length and prompt, then cut runs of ``size`` distinct
prompts, each with all its copies (repeated samples share one prefill, as with vLLM's ``n``).

Applied to any union of its own batches it gives those batches back (within a parameter group
every batch but the last is full, and the order is total), so a chunk of whole batches handed to
a worker, or the rest of a run whose cache holds whole batches, is batched as in the whole stage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from symoe_eval.engines.base import GenerationRequest


def parameter_group(request: GenerationRequest) -> str:
    """Requests that one ``generate()`` call can take together (the seed is per row)."""
    return repr(replace(request.params, seed=None))


def batch_order(request: GenerationRequest) -> tuple:
    """Similar lengths side by side (little padding), copies of one prompt adjacent."""
    length = sum(len(text) for _, text in request.messages)
    return parameter_group(request), length, request.messages, request.sample_index


def micro_batches(requests: Sequence[GenerationRequest], size: int) -> list[list[int]]:
    """Indices into ``requests``, one list per micro-batch of up to ``size`` distinct prompts."""
    order = sorted(range(len(requests)), key=lambda i: batch_order(requests[i]))
    batches: list[list[int]] = []
    distinct, previous = 0, None
    for i in order:
        group, prompt = parameter_group(requests[i]), requests[i].messages
        new = (group, prompt) != previous
        if previous is None or group != previous[0] or (new and distinct == size):
            batches.append([])
            distinct = 0
        batches[-1].append(i)
        distinct += new
        previous = (group, prompt)
    return batches
