"""Reading answers out of model text and scoring them; shared by tasks, profiles and baselines.

Multiple-choice: prefer the last "The answer is (X)", then other explicit answer statements, then
a boxed letter, then a lone letter on the final line. The allowed letters are the ones the
question itself lists, so one extractor serves MMLU-Pro (A-J) and the A-D tasks. Only where no
letter is found, an answer statement naming exactly one option's text ("The answer is Sydney.")
reads as that option (small models often answer so; the authors read letters alone: docs/method.md).
Free-form (AIME): the last ``\\boxed{...}`` (nested braces allowed), compared with math-verify.
"""

from __future__ import annotations

import re
from functools import lru_cache

from symoe_eval.runoutput import INVALID

THINK_END = "</think>"

_OPTION = re.compile(r"\(([A-J])\)\s")
# "answer is" in any case; a bare letter must be a capital (so "the answer is a ..." is no answer),
# a letter in brackets may be either case.
_STATEMENT = re.compile(r"(?i:answer\s*(?:is|:)|option\s+is)")
_ANSWER_IS = re.compile(
    _STATEMENT.pattern + r"\s*[:\s]*\**\s*(?i:option\s*)?[\"'“‘]?"
    r"(?:\(\s*([A-Ja-j])\s*\)|\[([A-Ja-j])\]|([A-J])(?![A-Za-z]))"
)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_PAREN_LETTER = re.compile(r"\(([A-J])\)")
_LONE_LETTER = re.compile(r"^[\W_]*(?:(?i:option)\s*)?([A-J])[\W_]*$")
_ANSWER_IS_FREE = re.compile(r"answer\s+is\s*[:\s]*\$?([^\n$]+?)\$?\s*\.?\s*$", re.IGNORECASE | re.MULTILINE)


def strip_thinking(text: str) -> str:
    """Drop a reasoning model's ``<think>...</think>`` part (an unclosed one too) before reading."""
    if THINK_END in text:
        return text.rsplit(THINK_END, 1)[1].strip()
    if text.lstrip().startswith("<think>"):
        return ""
    return text


def choices_in(question: str) -> str:
    """The option letters a question lists inline, e.g. ``"ABCD"``; ``""`` for free-form."""
    return "".join(sorted(set(_OPTION.findall(question + " "))))


def options_in(question: str) -> dict[str, str]:
    """Each option's text by letter, as the question lists them inline after "The options are:"."""
    listed = question[max(question.rfind("The options are:"), 0):] + " "
    marks = list(_OPTION.finditer(listed))
    ends = [m.start() for m in marks[1:]] + [len(listed)]
    return {m.group(1): listed[m.end():end].strip(" .,;\n") for m, end in zip(marks, ends)}


def named_option(text: str, options: dict[str, str]) -> str:
    """The option whose text the last answer statement's sentence names ("The answer is Sydney."),
    if exactly one does (an option inside a longer named one, "Sodium" in "Sodium chloride", yields
    to it); else ``INVALID``."""
    ends = [m.end() for m in _STATEMENT.finditer(text)]
    if not ends:
        return INVALID
    said = _SENTENCE_END.split(text[ends[-1]:].split("\n", 1)[0], maxsplit=1)[0].lower()
    named = [c for c, o in options.items() if o and re.search(rf"(?<!\w){re.escape(o.lower())}(?!\w)", said)]
    named = [c for c in named if not any(d != c and options[c].lower() in options[d].lower() for d in named)]
    return named[0] if len(named) == 1 else INVALID


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}``, nested braces included."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    start = starts[-1]
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip()
    return None  # unbalanced: the answer was cut off


def extract_choice(text: str, choices: str = "ABCD") -> str:
    text = strip_thinking(text)

    def allowed(found: list[str]) -> list[str]:
        return [c.upper() for c in found if c.upper() in choices]

    for found in (
        allowed(["".join(groups) for groups in _ANSWER_IS.findall(text)]),
        allowed([b] if (b := (last_boxed(text) or "").strip("() ")) and len(b) == 1 else []),
    ):
        if found:
            return found[-1]
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if lines:
        for found in (
            allowed(_LONE_LETTER.findall(lines[-1])),
            allowed(_PAREN_LETTER.findall(lines[-1])),
        ):
            if found:
                return found[-1]
    return INVALID


def extract_free_form(text: str) -> str:
    text = strip_thinking(text)
    if re.search(r"\\(?:boxed|fbox)\s*\{", text):
        return last_boxed(text) or INVALID  # an unbalanced box means the answer was cut off
    stated = _ANSWER_IS_FREE.findall(text)
    return stated[-1].strip() if stated else INVALID


def extract_answer(text: str, question: str) -> str:
    """The answer a response gives to ``question``, or ``INVALID``."""
    choices = choices_in(question)
    if not choices:
        return extract_free_form(text)
    letter = extract_choice(text, choices)
    return letter if letter != INVALID else named_option(strip_thinking(text), options_in(question))


@lru_cache(maxsize=4096)
def _parse_math(expr: str):
    from math_verify import parse

    return parse(f"${expr}$")


def math_equal(prediction: str, gold: str) -> bool:
    if prediction == INVALID:
        return False
    if prediction.strip() == gold.strip():
        return True
    from math_verify import verify

    try:
        return bool(verify(_parse_math(gold), _parse_math(prediction)))
    except Exception:  # math-verify raises on malformed LaTeX; that answer is simply wrong
        return False


def is_correct(prediction: str, gold: str, question: str) -> bool:
    if choices_in(question):
        return prediction == gold.strip().upper()
    return math_equal(prediction, gold)


def vote(answers: list[str], weights: list[float] | None = None, tie_break: list[float] | None = None) -> str:
    """The valid answer with the most (weighted) votes; ties go to the highest ``tie_break`` of
    its voters, then to the answer seen first. ``INVALID`` answers never win."""
    totals: dict[str, float] = {}
    best_tie: dict[str, float] = {}
    for i, answer in enumerate(answers):
        if answer == INVALID:
            continue
        totals[answer] = totals.get(answer, 0.0) + (weights[i] if weights else 1.0)
        best_tie[answer] = max(best_tie.get(answer, float("-inf")), tie_break[i] if tie_break else 0.0)
    if not totals:
        return INVALID
    order = {a: i for i, a in reversed(list(enumerate(answers)))}
    return max(totals, key=lambda a: (totals[a], best_tie[a], -order[a]))


def grade(text: str, question: str, gold: str) -> bool:
    """Whether a whole response answers ``question`` correctly."""
    return is_correct(extract_answer(text, question), gold, question)


def majority(answers: list[str], tie_break: list[float] | None = None) -> str:
    """Plain majority vote (one vote per answer)."""
    return vote(answers, None, tie_break)
