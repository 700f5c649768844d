"""The aggregate-and-synthesize prompt, shared by Symbolic-MoE, its aggregator benchmark and the
Mixture-of-Agents baseline."""

from __future__ import annotations

from typing import Sequence

from symoe_eval.answers import strip_thinking

AGGREGATE_INSTRUCTION = (
    "You have been provided with a set of responses from various open-source models to the latest "
    "user query. Your task is to synthesize these responses into a single, high-quality response. "
    "It is crucial to critically evaluate the information provided in these responses, recognizing "
    "that some of it may be biased or incorrect. Your response should not simply replicate the "
    "given answers but should offer a refined, accurate, and comprehensive reply to the "
    "instruction. Ensure your response is well-structured, coherent, and adheres to the highest "
    "standards of accuracy and reliability. Responses from models:"
)


def aggregate_prompt(question_prompt: str, responses: Sequence[str]) -> str:
    """Instruction, then ``### Model i's response:`` blocks (``<think>`` parts stripped), then the
    original question prompt, as the paper authors' aggregation step builds it."""
    blocks = "".join(
        f"### Model {i}'s response:\n{strip_thinking(r).strip()}\n\n" for i, r in enumerate(responses, 1)
    )
    return f"{AGGREGATE_INSTRUCTION}\n\n{blocks}{question_prompt}"
