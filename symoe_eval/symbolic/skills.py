"""Skill annotation: asking the keyword model which skills a question needs, and reading its answer.

Pure functions, except :func:`annotate`, which calls the keyword model through the scheduler like
any expert.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

KEYWORD_SAMPLES = 5
KEYWORD_TEMPERATURE = 0.7
# "Keywords: " and five keywords of at most 20 characters fit in ~35 tokens; a batch decodes as long
# as its longest reply, so one rambling sample must not set the pace (see docs/method.md, departures).
KEYWORD_MAX_GEN_TOKS = 40
# The reply is one line ("Keywords: a, b"), or a short list; stop before any explanation after it.
KEYWORD_STOP = ("\n\n",)
MAX_KEYWORD_LENGTH = 20

EXAMPLE_KEYWORDS = ("psychology", "virology", "behavioral theory", "microbiology", "diplomacy",
                    "political science", "property law", "finance", "business")
# A reply copied the instruction's example list when it names this many of them one after another
# in the list's own order, or this share of the whole list in any order; a reply that names a
# few of them in its own order ("property law, finance, business, political science") is kept.
PARROT_RUN = 4
PARROT_SHARE = 2 / 3


def keyword_instruction(examples: Sequence[str] | None = None) -> str:
    """The paper's instruction, with ``examples`` (None: the paper's list; empty: no example list)."""
    examples = EXAMPLE_KEYWORDS if examples is None else examples
    shown = f"Example keywords: {', '.join(examples)}. " if examples else ""
    return ("What are the core knowledge, subjects or skills needed to solve this problem? "
            f"List 2-5 keywords separated in comma. {shown}"
            "Give ONLY the keywords, no other words or explanation. "
            "Follow this format: Keywords: <keyword1>, <keyword2>...")


KEYWORD_INSTRUCTION = keyword_instruction()


def keyword_prompt(question: str, examples: Sequence[str] | None = None) -> str:
    return f"Question: {question}\n{keyword_instruction(examples)}"


QUOTES = " \t\"'`<>*"
# List numbering and bullets ("1.", "2)", "- ", "* "), never digits that belong to the keyword
# ("3d geometry", "2-sat", "19th century art").
LIST_MARKS = re.compile(r"^(?:\s*(?:[-*\u2022]+|\d+[.)])\s+)+")


def parse_keywords(text: str) -> list[str]:
    """Keywords from one reply: the text after the last "Keywords:", split on commas and lines,
    lower-cased, stripped of dots, bullets, quotes and markup; a piece without a letter (a number
    copied from the question) names no skill and is left out."""
    from symoe_eval.answers import strip_thinking

    text = strip_thinking(text)
    found = list(re.finditer(r"keywords?\s*:", text, re.IGNORECASE))
    if found:
        text = text[found[-1].end() :]
    out = []
    for piece in re.split(r"[,;\n]", text):
        word = LIST_MARKS.sub("", piece.strip(QUOTES)).strip(QUOTES).replace(".", "").strip().lower()
        if word and word not in out and any(c.isalpha() for c in word):
            out.append(word)
    return out


def parroted(keywords: Sequence[str], examples: Sequence[str] | None = None) -> bool:
    """Whether a reply copied the instruction's example list (small keyword models often do)."""
    examples = list(EXAMPLE_KEYWORDS if examples is None else examples)
    if not examples:
        return False
    named = [examples.index(k) for k in keywords if k in examples]
    if len(set(named)) >= PARROT_SHARE * len(examples):
        return True
    run = longest = 1 if named else 0
    for before, after in zip(named, named[1:]):
        run = run + 1 if after == before + 1 else 1
        longest = max(longest, run)
    return longest >= PARROT_RUN


def consolidate(replies: Iterable[str], examples: Sequence[str] | None = None) -> list[str]:
    """Keywords produced in more than one sampled reply, dropping any over 20 characters and
    ignoring replies that copied the instruction's example list (``examples``, as in
    ``keyword_instruction``)."""
    parsed = [parse_keywords(reply) for reply in replies]
    counts = Counter(k for words in parsed if not parroted(words, examples) for k in words if len(k) <= MAX_KEYWORD_LENGTH)
    return [k for k, n in counts.items() if n > 1]


def annotate(scheduler, keyword_model: str, questions: Sequence[str], seed: int, max_tokens: int = KEYWORD_MAX_GEN_TOKS,
             later: Sequence[str] = (), examples: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Keywords of every distinct question, from ``KEYWORD_SAMPLES`` sampled replies of the keyword
    model, run as one stage of ``scheduler`` (used by ``symoe`` and ``symoe profile`` alike, with
    the pool's ``keyword_examples``)."""
    from symoe_eval.engines import GenerationRequest, SamplingParams
    from symoe_eval.runtime.scheduling import Call

    params = SamplingParams(temperature=KEYWORD_TEMPERATURE, max_tokens=max_tokens, stop=KEYWORD_STOP, seed=seed)
    texts = list(dict.fromkeys(questions))
    calls = [
        Call((text, s), keyword_model, GenerationRequest.user(keyword_prompt(text, examples), params, s))
        for text in texts
        for s in range(KEYWORD_SAMPLES)
    ]
    replies = scheduler.run("keywords", calls, later)
    return {text: consolidate((replies[(text, s)].text for s in range(KEYWORD_SAMPLES)), examples) for text in texts}
