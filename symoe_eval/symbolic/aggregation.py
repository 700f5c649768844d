"""Prompts that quote other experts' responses (aggregate-and-synthesize for Symbolic-MoE, its
aggregator benchmark and Mixture-of-Agents; a discussion round), fitted into the reader's context,
and the consensus check that lets ``aggregate=disagree`` skip the aggregator."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

from symoe_eval.answers import INVALID, strip_thinking
from symoe_eval.engines.base import GenerationRequest, chat_token_ids
from symoe_eval.runoutput import SUMMARY
from symoe_eval.runtime.context import RunContext

log = logging.getLogger(__name__)

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


def consensus(responses: Sequence[str], read_answer: Callable[[str], str]) -> str | None:
    """The response to answer with when ``read_answer`` (the task's filter: ``Question.answer``)
    reads the same valid answer in every response (an aggregator then rarely overturns them;
    ``aggregate=disagree`` skips it), else ``None``. The first response is returned whole: it
    states that answer in the format the task asked for."""
    answers = {read_answer(text) for text in responses}
    if len(answers) == 1 and INVALID not in answers:
        return responses[0]
    return None


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


MIN_RESPONSE_TOKENS = 64  # below this a quoted response says nothing; cut the question instead
MIN_QUESTION_TOKENS = 32
TEMPLATE_ALLOWANCE = 256  # chat-template tokens a byte count cannot see


class ChatTokens:
    """Token counts and cuts with the reader's own tokenizer and chat template: the same count
    its engine will see, so a fitted prompt is never cut again by the engine."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt(self, text: str) -> int:
        """Tokens of ``text`` sent as the user turn, template included."""
        return len(chat_token_ids(self.tokenizer, GenerationRequest.user(text)))

    def text(self, text: str) -> int:
        return len(self._ids(text))

    def tail(self, text: str, keep: int) -> str:
        return self.tokenizer.decode(self._ids(text)[-keep:]) if keep > 0 else ""

    def middle(self, text: str, keep: int) -> str:
        ids = self._ids(text)
        head = keep // 2
        return f"{self.tokenizer.decode(ids[:head])} [...] {self.tokenizer.decode(ids[len(ids) - (keep - head):])}"


@dataclass
class Fitted:
    prompt: str
    responses_cut: int = 0
    question_cut: bool = False


def share(free: int, sizes: Sequence[int]) -> list[int]:
    """Split ``free`` tokens among responses of ``sizes``: short ones keep all, long ones share the rest."""
    budgets = [0] * len(sizes)
    remaining = free
    for rank, i in enumerate(sorted(range(len(sizes)), key=lambda i: sizes[i])):
        budgets[i] = min(sizes[i], remaining // (len(sizes) - rank))
        remaining -= budgets[i]
    return budgets


def fit_prompt(build: Callable[[str, list[str]], str], question: str, responses: Sequence[str], room: int,
               tokens: Callable[[], ChatTokens]) -> Fitted:
    """``build(question, responses)`` made to fit ``room`` prompt tokens (the reader's context less
    its new tokens). Responses lose their beginnings first (the answer is at the end); if that
    would leave each less than ``MIN_RESPONSE_TOKENS``, the question loses its middle. The
    instruction and one block per response always stay. ``tokens`` is called only when the
    prompt's byte count says it might not fit."""
    texts = [strip_thinking(r).strip() for r in responses]
    prompt = build(question, texts)
    if len(prompt.encode()) + TEMPLATE_ALLOWANCE <= room:
        return Fitted(prompt)
    counter = tokens()
    if counter.prompt(prompt) <= room:
        return Fitted(prompt)
    count = max(1, len(texts))
    free = room - counter.prompt(build(question, [""] * len(texts)))
    question_cut = False
    if free < count * MIN_RESPONSE_TOKENS:
        keep = max(MIN_QUESTION_TOKENS, counter.text(question) - (count * MIN_RESPONSE_TOKENS - free))
        question, question_cut = counter.middle(question, keep), True
        free = room - counter.prompt(build(question, [""] * len(texts)))
    sizes = [counter.text(t) for t in texts]
    budgets = share(max(0, free - 8 * count), sizes)  # a little slack for "[...] " and joins
    for _ in range(4):
        fitted = [t if size <= b else "[...] " + counter.tail(t, b) for t, size, b in zip(texts, sizes, budgets)]
        prompt = build(question, fitted)
        over = counter.prompt(prompt) - room
        if over <= 0:
            break
        budgets = [max(0, b - over // count - 1) for b in budgets]
    return Fitted(prompt, sum(f != t for f, t in zip(fitted, texts)), question_cut)


@dataclass
class SynthesisPrompts:
    """Requests whose prompt quotes earlier responses, fitted to the reading expert's context with
    its own tokenizer (loaded alone, once per run); the cuts are counted for the run summary and,
    by question key, for its routing-log row (``cut_prompts``)."""

    runtime: RunContext
    truncated_responses: int = 0
    truncated_questions: int = 0
    cut_prompts: Counter = field(default_factory=Counter)
    _counters: dict[str, ChatTokens] = field(default_factory=dict, repr=False)

    def token_counter(self, expert: str) -> ChatTokens:
        if expert not in self._counters:
            self._counters[expert] = ChatTokens(self.runtime.reader(expert).load_tokenizer())
        return self._counters[expert]

    def request(self, expert: str, prompt: str, responses: Sequence[str], gen_kwargs: dict | None, sample: int,
                max_tokens: int | None = None, build: Callable[[str, list[str]], str] = aggregate_prompt,
                where: str = "", system: tuple = (), key: Hashable = None) -> GenerationRequest:
        """A prompt quoting ``responses`` (the aggregate-and-synthesize prompt by default), fitted
        to the expert's context (see ``fit_prompt``); ``key``: the question it is for."""
        params = self.runtime.sampling(expert, gen_kwargs, max_tokens)
        room = self.runtime.reader(expert).context_limit() - params.max_tokens
        fitted: Fitted = fit_prompt(build, prompt, responses, room, lambda: self.token_counter(expert))
        if fitted.responses_cut or fitted.question_cut:
            self.truncated_responses += fitted.responses_cut
            self.truncated_questions += fitted.question_cut
            self.cut_prompts[key] += 1
            log.warning("%s: cut %d response(s)%s to fit %s's context of %d prompt tokens", where or "prompt",
                        fitted.responses_cut, " and the question's middle" if fitted.question_cut else "", expert, room)
        return GenerationRequest((*system, ("user", fitted.prompt)), params, sample)

    def counts(self) -> dict:
        return {SUMMARY.truncated_responses: self.truncated_responses, SUMMARY.truncated_questions: self.truncated_questions}
