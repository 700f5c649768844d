"""``symoe report`` and ``symoe leaderboard`` over hostile run folders: any text renders as text
(in Chromium), outputs replace symlinks rather than write through them, only files inside the run
folder are read, and every unreadable input is one line naming the file and the line."""

import json
import re

import pytest

from conftest import run_cli
from lm_eval_outputs import write_run, write_symoe_run
from symoe_eval.analysis.leaderboard import build_leaderboard
from symoe_eval.analysis.report import build_report
from symoe_eval.errors import SymoeError
from test_report import browser, open_report, page_data, question_rows  # noqa: F401 - the browser fixture

HTML_QUIZ = ["What does <!-- start in HTML?", "Which tag holds JavaScript? <script>alert(1)</script>"]


def edit_samples(folder, change) -> None:
    path = next(folder.glob("samples_*.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(row)) + "\n" for row in rows))


def edit_log(folder, change) -> None:
    path = next(folder.glob("routing_symoe_*.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(row)) + "\n" for row in rows))


def quiz(row: dict) -> dict:
    if row["doc_id"] < 2:
        row["doc"]["question"] = HTML_QUIZ[row["doc_id"]]
    return row


def test_html_comment_and_script_openers_in_the_data_leave_the_page_whole(browser, tmp_path):  # noqa: F811
    folder = write_symoe_run(tmp_path / "<!--runs", 6)
    edit_samples(folder, quiz)
    path = build_report(tmp_path / "<!--runs", title="quiz <!-- and <script> in the title")
    block = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', path.read_text(), re.S).group(1)
    assert "<" not in block and ">" not in block and "&" not in block
    page, fetched, errors = open_report(browser, path)
    assert page.locator("#leaderboard tbody tr").count() == 1 and question_rows(page) == 6
    assert page.locator("h1").inner_text() == "quiz <!-- and <script> in the title"
    page.locator("#questions tbody tr.q").nth(1).click()
    assert "<script>alert(1)</script>" in page.locator("#questions tbody tr.detail").inner_text()
    assert errors == [] and fetched == []


def test_the_title_is_in_the_heading_and_the_tab(tmp_path):
    write_symoe_run(tmp_path, 3)
    html = build_report(tmp_path, title="my runs").read_text()
    assert "<h1>my runs</h1>" in html and "<title>my runs</title>" in html


def test_fields_of_the_wrong_type_show_as_text(browser, tmp_path):  # noqa: F811
    folder = write_symoe_run(tmp_path, 4)

    def wrong(row):
        row.update(experts="expert-a", keywords="chemistry", mapped_keywords=7, fallback=["x"], votes="A")
        row["responses"] = [{"expert": 3, "answer": None}, "just text"]
        return row
    edit_log(folder, wrong)
    page, _, errors = open_report(browser, build_report(tmp_path))
    assert question_rows(page) == 4 and "expert-a" in page.locator("#questions tbody tr.q").first.inner_text()
    page.locator("#questions tbody tr.q").first.click()
    detail = page.locator("#questions tbody tr.detail").inner_text()
    assert "chemistry" in detail and "just text" in detail and errors == []


@pytest.mark.parametrize("write", ["report", "leaderboard"])
def test_outputs_replace_a_symlink_instead_of_writing_through_it(tmp_path, write):
    write_symoe_run(tmp_path / "runs", 3)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    name = "report.html" if write == "report" else "leaderboard.md"
    (tmp_path / "runs" / name).symlink_to(victim)
    build_report(tmp_path / "runs") if write == "report" else build_leaderboard(tmp_path / "runs")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "runs" / name).is_symlink() and (tmp_path / "runs" / name).stat().st_size > 100


def test_only_files_inside_the_run_folder_are_read(tmp_path):
    folder = write_symoe_run(tmp_path / "runs", 3)
    outside = tmp_path / "routing_secret.jsonl"
    outside.write_text(json.dumps({"task": "symoe_demo", "doc_id": 0, "experts": ["SECRET-OUTSIDE"], "responses": []}) + "\n")
    summary_path = next(folder.glob("routing_summary_*.json"))
    summary = json.loads(summary_path.read_text())
    summary["routing_log"] = str(folder / ".." / ".." / ".." / outside.name)
    summary_path.write_text(json.dumps(summary))
    (tmp_path / "samples_x_2026-12-02T10-00-00.000001.jsonl").write_text(
        json.dumps({"doc_id": 0, "filter": "answer", "exact_match": 1.0, "doc": {"question": "SECRET-TASK"}}) + "\n")
    results_path = next(folder.glob("results_*.json"))
    results = json.loads(results_path.read_text())
    results["results"]["../../../x"] = {"exact_match,answer": 1.0}
    results_path.write_text(json.dumps(results))
    html = build_report(tmp_path / "runs").read_text()
    assert "SECRET-OUTSIDE" not in html and "SECRET-TASK" not in html


def test_a_routing_log_beside_its_summary_is_found_after_the_folder_moved(tmp_path):
    write_symoe_run(tmp_path / "before", 3)
    (tmp_path / "before").rename(tmp_path / "after")
    data = page_data(build_report(tmp_path / "after").read_text())
    assert data["runs"][0]["questions"][1]["keywords"] == ["chemistry", "noise"]


def test_a_samples_line_that_is_not_utf8_is_one_line_naming_file_and_line(tmp_path):
    folder = write_symoe_run(tmp_path / "runs", 3)
    path = next(folder.glob("samples_*.jsonl"))
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"Synthetic", b"Synth\xff\xfetic")
    path.write_bytes(b"\n".join(lines))
    for command in (["symoe", "report", str(tmp_path / "runs")], ["symoe", "leaderboard", str(tmp_path / "runs")]):
        done = run_cli(command, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
        assert f"{path}: line 2 is not UTF-8" in done.stderr


def test_lone_surrogates_and_dollars_in_labels_and_names_still_render(tmp_path):
    folder = write_symoe_run(tmp_path / "runs", 4)
    edit_samples(folder, lambda row: {**row, "doc": {**row["doc"], "question": "broken \ud800 text"}})
    edit_log(folder, lambda row: {**row, "experts": ["$x_1$ expert", "odd $ name", "expert-c"]})
    write_run(tmp_path / "runs", "dollar", {"expert": "$\\frac{1}{0", "note": "\udfff"}, {"symoe_demo": [1.0, 0.0, 1.0, 0.0]})
    path = build_report(tmp_path / "runs")
    data = page_data(path.read_text(encoding="utf-8"))
    assert any("broken \ufffd text" == q["question"] for r in data["runs"] for q in r["questions"])
    assert len(data["plots"]) == 2  # accuracy, and the recruitment heatmap with the $ names
    written = build_leaderboard(tmp_path / "runs")
    assert "$\\frac{1}{0" in written["markdown"].read_text() and written["accuracy_plot"].stat().st_size > 1000


def test_a_routing_response_without_text_is_shown_empty(tmp_path):
    folder = write_symoe_run(tmp_path, 3)
    edit_log(folder, lambda row: {**row, "responses": [{"expert": "expert-a"}]})
    data = page_data(build_report(tmp_path).read_text())
    assert data["runs"][0]["questions"][1]["rounds"][0]["responses"] == [
        {"who": "expert-a", "answer": "", "text": "", "right": False}]


def test_a_profile_whose_experts_is_a_list_is_one_line(tmp_path):
    from symoe_eval.symbolic.profiles import load_profile

    folder = tmp_path / "pool" / "symoe_demo"
    folder.mkdir(parents=True)
    (folder / "profile.json").write_text(json.dumps({"task": "symoe_demo", "pool": "pool", "aggregator": "a", "experts": ["a"]}))
    with pytest.raises(SymoeError, match="is not a valid profile .*rebuild it"):
        load_profile(tmp_path, "pool", "symoe_demo")
