"""Profile building, the synthetic aggregation set and profile files (no model)."""

import json

import pytest

from symoe_eval.errors import SymoeError
from symoe_eval.symbolic.profiles import (
    ExpertProfile,
    TaskProfile,
    build_aggregation_set,
    build_expert_profiles,
    choose_aggregator,
    load_profile,
    render_report,
    save_profile,
)


def test_expert_profiles_score_plus_minus_one_per_keyword():
    keywords = [["algebra", "geometry"], ["algebra"], ["biology"]]
    correct = {"a": [[True], [False], [True]], "b": [[False, False], [True, True], [False, True]]}
    profiles = build_expert_profiles(keywords, correct)
    assert profiles["a"].scores == {"algebra": 0, "geometry": 1, "biology": 1}
    assert profiles["a"].strength == 2 and profiles["a"].accuracy == pytest.approx(2 / 3)
    assert profiles["b"].scores == {"algebra": 0, "geometry": -2, "biology": 0}  # every sample counts
    assert profiles["b"].accuracy == pytest.approx(3 / 6)


def test_aggregation_set_draws_one_right_two_wrong_and_shuffles():
    answers = [
        [("r1", True), ("w1", False), ("w2", False), ("w3", False)],
        [("r", True), ("w", False)],  # too few wrong answers: skipped
        [("w1", False), ("w2", False), ("w3", False)],  # nothing right: skipped
        [("r2", True), ("r3", True), ("w4", False), ("w5", False)],
    ]
    items = build_aggregation_set(answers, seed=3)
    assert [i.question_index for i in items] == [0, 3]
    for item in items:
        assert len(item.responses) == 3
        right = [r for r in item.responses if r.startswith("r")]
        assert len(right) == 1 and item.responses[item.correct_position] == right[0]
    assert items == build_aggregation_set(answers, seed=3)
    positions = {build_aggregation_set([answers[0]] * 1, seed=s)[0].correct_position for s in range(30)}
    assert positions == {0, 1, 2}  # the correct chain is not always first


def test_choose_aggregator_breaks_ties_by_strength():
    profiles = {"a": ExpertProfile("a", {"x": 1}), "b": ExpertProfile("b", {"x": 3})}
    assert choose_aggregator({"a": 0.5, "b": 0.4}, profiles) == "a"
    assert choose_aggregator({"a": 0.5, "b": 0.5}, profiles) == "b"


def make_profile(task="symoe_gpqa"):
    return TaskProfile(task, "tiny-cpu", {"a": ExpertProfile("a", {"physics": 2}, 0.5)}, "a",
                       {"a": 0.6}, keywords=["physics"], provenance={"seed": 0, "questions": 4})


def test_save_and_load_round_trip(tmp_path):
    folder = save_profile(make_profile(), tmp_path, render_report(make_profile()))
    data = json.loads((folder / "profile.json").read_text())
    assert data["experts"]["a"]["strength"] == 2
    loaded = load_profile(tmp_path, "tiny-cpu", "symoe_gpqa")
    assert loaded.experts["a"].scores == {"physics": 2} and loaded.aggregator == "a"
    assert load_profile(tmp_path, "tiny-cpu", "symoe_gpqa_sc").task == "symoe_gpqa"  # variants share it
    assert "Aggregator: **a**" in (folder / "report.md").read_text()


def test_missing_profile_prints_the_command_to_build_it(tmp_path):
    with pytest.raises(SymoeError) as err:
        load_profile(tmp_path, "tiny-cpu", "symoe_aime24")
    message = str(err.value)
    assert "\n" not in message
    assert f"symoe profile --pool tiny-cpu --task symoe_aime24 --profiles {tmp_path}" in message


def test_corrupt_profile_is_one_line(tmp_path):
    (tmp_path / "tiny-cpu" / "symoe_gpqa").mkdir(parents=True)
    (tmp_path / "tiny-cpu" / "symoe_gpqa" / "profile.json").write_text("{not json")
    with pytest.raises(SymoeError, match="not a valid profile"):
        load_profile(tmp_path, "tiny-cpu", "symoe_gpqa")


def test_keyword_counts_are_the_answers_behind_each_score():
    from symoe_eval.symbolic.profiles import TaskProfile, build_expert_profiles, count_keywords

    keywords = [["a", "b"], ["a"], []]
    correct = {"x": [[True, False], [True, True], [False, False]]}
    counts = count_keywords(keywords, samples=2)
    assert counts == {"a": 4, "b": 2}
    experts = build_expert_profiles(keywords, correct)
    assert all(abs(experts["x"].scores[k]) <= n and (n - experts["x"].scores[k]) % 2 == 0 for k, n in counts.items())
    profile = TaskProfile("t", "p", experts, aggregator="x", keywords=["a", "b"], keyword_counts=counts)
    assert TaskProfile.from_json(profile.to_json()).keyword_counts == counts


def test_validation_records_are_read_from_the_annotations_beside_the_profile(tmp_path):
    """``routing=records`` reads annotations.jsonl; profile.json keeps its format (no records in it)."""
    folder = save_profile(make_profile(), tmp_path, render_report(make_profile()))
    assert load_profile(tmp_path, "tiny-cpu", "symoe_gpqa").records == []  # older profiles: none
    lines = [{"index": 0, "keywords": ["physics"], "right": {"a": [True, False], "gone": [True]}},
             {"index": 1, "keywords": [], "right": {"a": [True]}}]
    (folder / "annotations.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = load_profile(tmp_path, "tiny-cpu", "symoe_gpqa").records
    assert [(r.keywords, r.right) for r in records] == [(("physics",), {"a": 0.5}), ((), {"a": 1.0})]
    assert "records" not in json.loads((folder / "profile.json").read_text())
    assert "records" not in make_profile().to_json()


@pytest.mark.parametrize("line", ['{"keywords": "physics", "right": {}}', '{"keywords": [], "right": {"a": "yes"}}',
                                  '{"keywords": []}', "[1, 2]", "{not json"])
def test_a_bad_validation_record_is_one_line_naming_it_for_the_router_that_reads_them(tmp_path, line):
    """Only routing=records reads the records: the profile still loads, and the router's error
    names the bad line (an annotations file from before ``right`` was written reads the same)."""
    from symoe_eval.symbolic.routing import ROUTERS, QuestionRef

    folder = save_profile(make_profile(), tmp_path, render_report(make_profile()))
    (folder / "annotations.jsonl").write_text('{"keywords": ["physics"], "right": {"a": [true]}}\n' + line + "\n")
    profile = load_profile(tmp_path, "tiny-cpu", "symoe_gpqa")
    assert profile.records == [] and profile.aggregator == "a"
    with pytest.raises(SymoeError, match=r"needs the validation records .*annotations.jsonl line 2 is not a "
                                         r"validation record .*rebuild it") as err:
        ROUTERS["records"](3).route(profile, QuestionRef("symoe_gpqa", 0), ["physics"], None)
    assert "\n" not in str(err.value)


def test_pooled_records_are_every_tasks_or_none_with_the_reason():
    from symoe_eval.symbolic.profiles import ValidationRecord, pooled_profile

    first, second = make_profile("symoe_gpqa"), make_profile("symoe_aime24")
    first.records = [ValidationRecord(("physics",), {"a": 1.0})]
    second.records = [ValidationRecord(("algebra",), {"a": 0.0}), ValidationRecord((), {"a": 1.0})]
    assert [r.keywords for r in pooled_profile("new", [first, second]).records] == [("physics",), ("algebra",), ()]
    second.records, second.records_problem = [], "annotations.jsonl line 3 is bad"
    pooled = pooled_profile("new", [first, second])
    assert pooled.records == [] and pooled.records_problem == "annotations.jsonl line 3 is bad"
