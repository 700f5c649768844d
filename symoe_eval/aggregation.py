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
    blocks = "".join(f"### Model {i}'s response:\n{strip_thinking(r).strip()}\n\n" for i, r in enumerate(responses, 1))
    return f"{AGGREGATE_INSTRUCTION}\n\n{blocks}{question_prompt}"


DISCUSSION_INSTRUCTION = (
    "Using the reasoning from other agents as additional advice, examine your previous answer and "
    "theirs step by step, and give an updated answer to the question."
)
CONFIDENCE_INSTRUCTION = "Also state how confident you are as \"Confidence: <a number between 0 and 1>\"."


def discussion_prompt(question_prompt: str, own: str, others: Sequence[str], ask_confidence: bool = False) -> str:
    """One discussion round (Du et al. 2023; ReConcile for heterogeneous agents): the other agents'
    latest answers and explanations, the agent's own, then the original question prompt."""
    blocks = "".join(f"### Agent {i}'s response:\n{strip_thinking(r).strip()}\n\n" for i, r in enumerate(others, 1))
    extra = f" {CONFIDENCE_INSTRUCTION}" if ask_confidence else ""
    return (
        f"These are the recent answers to the question from other agents:\n\n{blocks}"
        f"Your previous answer was:\n{strip_thinking(own).strip()}\n\n"
        f"{DISCUSSION_INSTRUCTION}{extra}\n\n{question_prompt}"
    )


# Conservative characters-per-token for budgeting text before it reaches a tokenizer.
CHARS_PER_TOKEN = 3
DEFAULT_CONTEXT = 32768
MIN_RESPONSE_CHARS = 200


def response_budget(context_tokens: int | None, max_new_tokens: int, fixed_text: str, count: int) -> int:
    """Characters each of ``count`` responses may keep so that the prompt plus ``max_new_tokens``
    fits a ``context_tokens`` window (``fixed_text`` is the rest of the prompt)."""
    free_tokens = (context_tokens or DEFAULT_CONTEXT) - max_new_tokens - len(fixed_text) // CHARS_PER_TOKEN - 64
    return max(MIN_RESPONSE_CHARS, free_tokens * CHARS_PER_TOKEN // max(1, count))


def fit_responses(responses: Sequence[str], budget_chars: int) -> tuple[list[str], int]:
    """Keep the end of each over-long response (where its answer is); returns how many were cut."""
    out, cut = [], 0
    for text in responses:
        text = strip_thinking(text).strip()
        if len(text) > budget_chars:
            text = "[...] " + text[-budget_chars:]
            cut += 1
        out.append(text)
    return out, cut
