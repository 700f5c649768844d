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


def long_or_short(name, request):
    """Keywords for the keyword model; each expert a 400-word answer on questions whose prompt has
    an even length, else a short one; the aggregator a short answer."""
    prompt = request.messages[-1][1]
    if "core knowledge, subjects or skills" in prompt:
        return "Keywords: physics, algebra"
    if prompt.startswith("You have been provided"):
        return "Weighing them. The answer is (A)"
    return ("step " * 400 if len(prompt) % 2 == 0 else "Briefly.") + " The answer is (B)"


def test_each_row_counts_its_own_prompts_cut_to_fit(monkeypatch, tmp_path):
    """A 600-token aggregator context: the aggregation prompt of a question with 400-word answers
    is cut, the others are whole; the rows say which (schema version 2's ``prompts_cut``) and add
    up to the summary's count."""
    import json

    import lm_eval

    from fakes import FakeEngine, fake_symoe
    from symoe_eval.harness.lm import lm_class

    fake_symoe(monkeypatch, long_or_short, batch_size=64)
    monkeypatch.setattr(FakeEngine, "context_limit", lambda self: 600)
    lm = lm_class("symoe")(pool="tiny-cpu", cache_dir="none", log_dir=str(tmp_path), max_gen_toks=64, aggregate="always")
    results = lm_eval.simple_evaluate(model=lm, tasks=["symoe_demo"], limit=12, log_samples=True)
    summary = json.loads(next(tmp_path.glob("routing_summary_*.json")).read_text())
    rows = [json.loads(line) for line in open(summary["routing_log"])]
    long = [r["doc_id"] for r in rows if any(x["text"].startswith("step") for x in r["responses"])]
    assert 0 < len(long) < len(rows) == len(results["samples"]["symoe_demo"])
    assert {r["doc_id"]: r["prompts_cut"] for r in rows} == {r["doc_id"]: int(r["doc_id"] in long) for r in rows}
    assert summary["truncated_responses"] >= len(long) and summary["schema_version"] == 2
    assert {r["kind"] for r in rows} == {"symoe"}
