"""Keyword prompts, parsing and consolidation (no model)."""

import pytest

from symoe_eval.symbolic.skills import KEYWORD_INSTRUCTION, consolidate, keyword_prompt, parse_keywords


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("Keywords: Algebra, Number Theory.", ["algebra", "number theory"]),
        ("keywords: organic chemistry,stereochemistry", ["organic chemistry", "stereochemistry"]),
        ("Sure! Here they are.\nKeywords: physics, optics", ["physics", "optics"]),
        ("Keywords:\n- genetics\n- molecular biology\n- 3. evolution", ["genetics", "molecular biology", "evolution"]),
        ("Example keywords: psychology\nKeywords: law, ethics", ["law", "ethics"]),
        ("probability, combinatorics", ["probability", "combinatorics"]),
        ("<think>hmm: virology</think>Keywords: \"pharmacology\", anatomy", ["pharmacology", "anatomy"]),
        ("Keywords: U.S. history, u.s. history", ["us history"]),
        ("", []),
        ("Keywords: 3d geometry, 2-sat, 19th century art", ["3d geometry", "2-sat", "19th century art"]),
        ("Keywords:\n1. 3d geometry\n2) number theory\n* 2-sat", ["3d geometry", "number theory", "2-sat"]),
        ("Keywords: addition, 762, 980, 1 + 2", ["addition"]),  # numbers from the question are no skills
    ],
)
def test_parse_keywords(reply, expected):
    assert parse_keywords(reply) == expected


def test_consolidate_keeps_keywords_said_more_than_once_and_short():
    replies = [
        "Keywords: algebra, geometry, quantum electrodynamics theory",
        "Keywords: Algebra., calculus, quantum electrodynamics theory",
        "Keywords: geometry",
        "Keywords: trigonometry",
        "Keywords: algebra",
    ]
    assert consolidate(replies) == ["algebra", "geometry"]  # >20 characters dropped even if repeated


def test_prompt_is_the_papers():
    prompt = keyword_prompt("What is 2+2?")
    assert prompt.startswith("Question: What is 2+2?\nWhat are the core knowledge, subjects or skills")
    assert prompt.endswith("Follow this format: Keywords: <keyword1>, <keyword2>...")
    assert "List 2-5 keywords separated in comma." in KEYWORD_INSTRUCTION


def test_replies_that_copy_the_example_list_are_ignored():
    parrot = "Keywords: psychology, virology, behavioral theory, microbiology, diplomacy, political science"
    honest = "Keywords: virology, immunology"
    assert consolidate([parrot, parrot, parrot, honest, honest]) == ["virology", "immunology"]
    assert consolidate([parrot] * 5) == []
    assert consolidate(["Keywords: finance, business, accounting"] * 2) == ["finance", "business", "accounting"]


def test_a_genuine_reply_naming_four_examples_is_kept_but_copies_of_the_list_are_not():
    from symoe_eval.symbolic.skills import EXAMPLE_KEYWORDS, parroted

    genuine = "Keywords: property law, finance, business, political science"
    assert not parroted(parse_keywords(genuine))  # four examples, not in the list's order
    assert consolidate([genuine, genuine]) == ["property law", "finance", "business", "political science"]
    assert parroted(parse_keywords("Keywords: psychology, virology, behavioral theory, microbiology"))  # in order
    assert parroted(parse_keywords("Keywords: diplomacy, algebra, political science, property law, finance"))
    shuffled = list(EXAMPLE_KEYWORDS[::-1])[:6]  # six of nine in any order: a near-complete copy
    assert parroted(shuffled) and not parroted(shuffled[:3])
    assert not parroted([])


def test_a_pool_may_drop_or_replace_the_example_list():
    from symoe_eval.symbolic.skills import keyword_instruction, parroted

    assert "Example keywords:" not in keyword_prompt("What is 2+2?", ())
    assert keyword_instruction(()).count("  ") == 0  # no gap where the list was
    assert keyword_instruction(None) == KEYWORD_INSTRUCTION
    assert "Example keywords: sorting, addition." in keyword_prompt("q", ("sorting", "addition"))
    paper_list = "Keywords: psychology, virology, behavioral theory, microbiology, diplomacy, political science"
    assert consolidate([paper_list] * 2, ()) == ["psychology", "virology", "behavioral theory", "microbiology",
                                                  "diplomacy", "political science"]  # no list: no copy of it
    assert not parroted(["sorting", "addition"], ())
    assert consolidate(["Keywords: sorting, addition, division"] * 3, ("sorting", "addition", "division")) == []


@pytest.mark.parametrize("value,ok", [(None, True), ([], True), (["Sorting", "digit reversal"], True),
                                      ("sorting", False), ([1], False), (["a, b"], False), ([" "], False)])
def test_pool_keyword_examples_are_checked(tmp_path, value, ok):
    import yaml

    from symoe_eval.errors import SymoeError
    from symoe_eval.pools.schema import parse_pool

    raw = {"name": "p", "experts": [{"name": "e", "model": "m", "source": {"hf_id": "org/m"}}]}
    if value is not None:
        raw["keyword_examples"] = value
    if not ok:
        with pytest.raises(SymoeError, match="keyword_examples must be a list"):
            parse_pool(yaml.safe_dump(raw), tmp_path / "p.yaml")
        return
    pool = parse_pool(yaml.safe_dump(raw), tmp_path / "p.yaml")
    assert pool.keyword_examples == (None if value is None else tuple(v.lower() for v in value))
