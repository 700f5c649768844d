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
    """The golden files (what each method wrote before the schema had an owner) hold exactly the
    fields its row type declares, and the summary fields every reader relies on."""
    recorded = json.loads((GOLDEN / f"{name}.json").read_text())
    declared = {f.name for f in dataclasses.fields(ROW_TYPES[method])}
    assert all(set(row) == declared for row in recorded["rows"])
    summary = recorded["summary"]
    assert summary[SUMMARY.method] == method
    optional = {SUMMARY.aggregators, SUMMARY.routing_log, SUMMARY.profile_sources}  # routing_log: volatile
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
