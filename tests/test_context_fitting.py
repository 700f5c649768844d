"""Prompts that quote responses are fitted to the reader's context with its own token count."""

import re

import pytest

from fakes import WordTokenizer
from symoe_eval.symbolic.aggregation import AGGREGATE_INSTRUCTION, ChatTokens, aggregate_prompt, discussion_prompt, fit_prompt, share

CONTEXT, NEW_TOKENS = 1024, 256
ROOM = CONTEXT - NEW_TOKENS


def words(n, tag):
    return " ".join(f"{tag}{i}" for i in range(n)) + f" The answer is ({tag[0].upper()})"


def counter():
    return ChatTokens(WordTokenizer())


def test_share_gives_short_responses_all_they_need():
    assert share(300, [50, 400, 400]) == [50, 125, 125]
    assert share(90, [10, 10, 10]) == [10, 10, 10]


@pytest.mark.parametrize("question_words", [40, 900])
def test_aggregation_prompt_keeps_instruction_and_every_block_at_1024_tokens(question_words):
    question = "Question: " + " ".join(f"q{i}" for i in range(question_words)) + " Provide your reasoning and print the answer."
    responses = [words(600, "a"), words(50, "b"), words(700, "c")]
    tokens = counter()
    fitted = fit_prompt(aggregate_prompt, question, responses, ROOM, lambda: tokens)
    assert tokens.prompt(fitted.prompt) <= ROOM
    assert fitted.prompt.startswith(AGGREGATE_INSTRUCTION)
    assert len(re.findall(r"### Model \d's response:", fitted.prompt)) == 3
    assert fitted.prompt.count("The answer is (") == 3  # each response keeps its end, where the answer is
    assert "b49" in fitted.prompt  # the short response is whole
    assert fitted.responses_cut == 2
    assert fitted.question_cut == (question_words == 900)
    assert fitted.prompt.rstrip().endswith("print the answer.")  # the question keeps its end


def test_discussion_prompt_fits_too():
    question = "Question: " + words(1200, "q") + " Answer it."
    others = [words(500, "a"), words(500, "b")]

    def build(q, texts):
        return discussion_prompt(q, texts[0], texts[1:])

    tokens = counter()
    fitted = fit_prompt(build, question, [words(500, "o")] + others, ROOM, lambda: tokens)
    assert tokens.prompt(fitted.prompt) <= ROOM and fitted.question_cut
    assert "Your previous answer was:" in fitted.prompt and fitted.prompt.count("### Agent") == 2


def test_a_prompt_that_fits_needs_no_tokenizer():
    def no_tokenizer():
        raise AssertionError("the byte count should have sufficed")

    fitted = fit_prompt(aggregate_prompt, "Question: 1+1?", ["The answer is 2."] * 3, 4096 - NEW_TOKENS, no_tokenizer)
    assert fitted.responses_cut == 0 and not fitted.question_cut
