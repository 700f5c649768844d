"""One owner for what a run writes (``symoe_eval.runoutput``): the writer's files carry exactly the
declared fields, and every reader names fields through the schema, so a renamed field fails where
it is read instead of reading as missing."""

import dataclasses
import json
from pathlib import Path

import pytest

from symoe_eval import runoutput
from symoe_eval.analysis import report
from symoe_eval.engines.base import EngineStats
from symoe_eval.runoutput import MODEL_STATS, ROW_TYPES, SETUP, SUMMARY, Response, SymoeRow, row_fields

GOLDEN = Path(__file__).parent / "golden"
PAGE = Path(report.__file__).parent / "page" / "report.js"


@pytest.mark.parametrize("name,method", [("symoe-default", "symoe"), ("moa-layers2", "moa"),
                                         ("discussion-rounds1", "discussion")])
def test_the_recorded_outputs_are_the_schemas(name, method):
    """The golden files hold exactly the fields each row type declares, each row names its kind,
    and the summary has its schema version and the fields every reader relies on."""
    recorded = json.loads((GOLDEN / f"{name}.json").read_text())
    declared = {"kind"} | {f.name for f in dataclasses.fields(ROW_TYPES[method])}
    assert all(set(row) == declared and ROW_TYPES[row["kind"]] is ROW_TYPES[method] for row in recorded["rows"])
    summary = recorded["summary"]
    assert summary[SUMMARY.method] == method and summary[SUMMARY.schema_version] == runoutput.SCHEMA_VERSION == 2
    optional = {SUMMARY.aggregators, SUMMARY.routing_log, SUMMARY.profile_sources, SUMMARY.embedding}  # routing_log: volatile
    assert set(SUMMARY) - optional <= set(summary)
    assert all(set(MODEL_STATS) <= set(stats) for stats in summary[SUMMARY.models].values())
    assert set(SETUP) <= set(summary[SUMMARY.reproducibility])


def test_the_engines_count_what_the_summary_declares():
    assert set(MODEL_STATS) <= {f.name for f in dataclasses.fields(EngineStats)}


def row() -> dict:
    return dataclasses.asdict(SymoeRow(
        task="t", doc_id=0, repeat=0, experts=["a"], final_answer="B", final_text="The answer is (B)",
        keywords=["algebra"], mapped_keywords=["algebra"], fallback=None, weights={"a": 1.0},
        responses=[Response("a", "B", "The answer is (B)")], aggregator="a", consensus=False))


def test_a_renamed_row_field_fails_where_it_is_read(monkeypatch):
    samples = type("Samples", (), {"docs": {}, "targets": {0: "B"}, "texts": {}, "answers": {0: "B"}, "scores": {0: 1.0}})
    shown = report.question_item("t", 0, samples, [row()], "symoe")
    assert shown["keywords"] == ["algebra"] and shown["final"]["who"] == "a" and shown["rounds"][0]["responses"][0]["who"] == "a"

    @dataclasses.dataclass(frozen=True)
    class Renamed(runoutput.Row):  # SymoeRow with keywords renamed to skills
        skills: list[str]

    monkeypatch.setattr(report, "ROW", row_fields(runoutput.Row, Renamed, runoutput.MoaRow, runoutput.DiscussionRow))
    with pytest.raises(AttributeError, match="keywords"):
        report.question_item("t", 0, samples, [row()], "symoe")


def test_the_page_takes_the_invalid_marker_from_the_schema():
    script = PAGE.read_text()
    assert runoutput.INVALID not in script and "const INVALID = DATA.invalid" in script


def test_version_1_rows_read_as_no_prompt_cut_and_hostile_counts_as_none():
    samples = type("Samples", (), {"docs": {}, "targets": {0: "B"}, "texts": {}, "answers": {0: "B"}, "scores": {0: 1.0}})
    v2 = runoutput.row_record(SymoeRow(**{**row(), "responses": [], "prompts_cut": 2}))
    assert v2["kind"] == "symoe" and v2["prompts_cut"] == 2
    assert report.question_item("t", 0, samples, [v2], "symoe")["prompts_cut"] == 2
    assert report.question_item("t", 0, samples, [row() | {"prompts_cut": None}], "symoe")["prompts_cut"] == 0
    for hostile in ("3", True, -1, 2.5, [1], {"a": 1}):
        assert report.question_item("t", 0, samples, [row() | {"prompts_cut": hostile}], "symoe")["prompts_cut"] == 0
    v1 = {k: v for k, v in row().items() if k != "prompts_cut"}
    assert report.question_item("t", 0, samples, [v1], "symoe")["prompts_cut"] == 0
