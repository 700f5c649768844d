"""``symoe report``: the self-contained HTML page, read as data and driven in headless Chromium.

The browser tests use Debian's ``chromium`` through Playwright; they skip where either is missing
unless SYMOE_REQUIRE_BROWSER=1 (``.ci/run`` sets it and installs chromium when absent)."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from lm_eval_outputs import discordant, write_run, write_symoe_run
from symoe_eval.analysis.report import build_report

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def page_data(html: str) -> dict:
    block = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    return json.loads(block)


def test_the_page_holds_every_question_with_its_routing_and_fetches_nothing(tmp_path):
    write_symoe_run(tmp_path, 30)
    write_run(tmp_path, "single", {"expert": "expert-a"}, {"symoe_demo": [1.0, 0.0, 1.0]})
    html = build_report(tmp_path).read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no script, style or image from elsewhere
    data = page_data(html)
    assert [(r["method"], len(r["questions"])) for r in data["runs"]] == [("symoe_expert", 3), ("symoe", 30)]
    symoe = next(r for r in data["runs"] if r["method"] == "symoe")
    q7, q1 = symoe["questions"][7], symoe["questions"][1]
    assert q7["fallback"] == "no usable keyword" and q7["keywords"] == []
    assert q1["keywords"] == ["chemistry", "noise"] and q1["mapped"] == ["chemistry"] and q1["subject"] == "chemistry"
    (experts,) = q1["rounds"]
    assert [(s["who"], s["answer"], s["right"]) for s in experts["responses"]] == [
        ("expert-a", "B", True), ("expert-b", "B", True), ("expert-c", "C", False)]
    assert (q1["gold"], q1["answer"], q1["score"], q1["final"]["who"]) == ("B", "B", 1.0, "expert-a")
    assert symoe["questions"][5]["answer"] == "[invalid]" and symoe["questions"][5]["score"] == 0.0
    assert len(data["leaderboard"]["rows"]) == 2 and data["plots"][0]["src"].startswith("data:image/png;base64,")
    assert [p["title"] for p in data["plots"]][1:] == ["experts recruited: symoe(pool=synthetic)"]  # from its routing log


def test_a_closing_script_tag_inside_a_response_stays_text(tmp_path):
    folder = write_symoe_run(tmp_path, 3)
    log = next(folder.glob("routing_symoe_*.jsonl"))
    log.write_text(log.read_text().replace("reasons about doc 1", "writes </script><b>bold</b>"))
    html = build_report(tmp_path).read_text()
    assert "</script><b>" not in html
    assert "writes </script><b>bold</b>" in json.dumps(page_data(html))


def test_moa_and_discussion_rows_show_their_rounds(tmp_path):
    from symoe_eval.analysis.report import method_rounds

    said = [{"expert": "x", "answer": "A", "text": "t"}]
    assert [name for name, _ in method_rounds({"layers": [said, said]})] == ["layer 1", "layer 2"]
    assert [name for name, _ in method_rounds({"rounds": [said, said, said], "votes": ["A"]})] == ["round 0", "round 1", "round 2"]
    assert method_rounds({"responses": said}) == [("experts", said)]


def test_report_cli_writes_the_file_and_an_empty_folder_is_one_line(tmp_path):
    write_symoe_run(tmp_path / "runs", 4)
    done = run_cli(["symoe", "report", str(tmp_path / "runs"), "--out", str(tmp_path / "r.html")], cwd=tmp_path)
    assert done.returncode == 0 and "report:" in done.stdout and (tmp_path / "r.html").stat().st_size > 10_000
    empty = run_cli(["symoe", "report", str(tmp_path / "nothing")], cwd=tmp_path)
    assert empty.returncode == 2 and empty.stderr.strip().count("\n") == 0 and "no lm-eval runs" in empty.stderr


# ---------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if not chromium or sync_playwright is None:
        missing = "Debian's chromium" if not chromium else "playwright (the test extra)"
        if os.environ.get("SYMOE_REQUIRE_BROWSER"):
            pytest.fail(f"SYMOE_REQUIRE_BROWSER is set but {missing} is missing")
        pytest.skip(f"{missing} is not installed")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def open_report(browser, path, fragment: str = ""):
    """The report in a new page (at ``fragment``: a view's link); any request that is not the file
    itself is recorded and refused."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    fetched = []
    page.route("**/*", lambda route: route.continue_() if route.request.url == path.as_uri()
               else (fetched.append(route.request.url), route.abort()))
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(path.as_uri() + fragment)
    page.wait_for_selector("body[data-ready='1']")
    return page, fetched, errors


def question_rows(page) -> int:
    return page.locator("#questions tbody tr.q").count()


def count_line(page) -> str:
    return page.locator("#count").inner_text()


def test_a_report_of_2000_questions_pages_filters_and_opens_a_question(browser, tmp_path):
    write_symoe_run(tmp_path, 2000)
    page, fetched, errors = open_report(browser, build_report(tmp_path))
    assert question_rows(page) == 50 and "1-50 of 2000 (page 1 of 40)" in page.locator("#page").inner_text()
    page.click("#next")
    assert page.locator("#questions tbody tr.q").first.get_attribute("data-key") == "symoe_demo/50"
    page.select_option("#f-fallback", "yes")  # doc % 7 == 0
    assert count_line(page).startswith(f"{len(range(0, 2000, 7))} of 2000 questions")
    page.select_option("#f-fallback", "")
    page.select_option("#f-correct", "invalid")  # doc % 5 == 0
    assert count_line(page).startswith("400 of 2000 questions; accuracy 0.0%")
    page.select_option("#f-correct", "")
    page.select_option("#f-subject", "geography")
    page.select_option("#f-expert", "expert-c")  # doc % 3 != 0
    expected = sum(1 for d in range(2000) if d % 5 == 2 and d % 3)
    assert count_line(page).startswith(f"{expected} of 2000 questions")
    page.locator("#questions tbody tr.q").first.click()
    detail = page.locator("#questions tbody tr.detail")
    assert detail.locator(".response").count() == 3 and "The answer is" in detail.inner_text()
    assert page.locator("#questions tbody tr").count() <= 51  # one page in the DOM, not 2000 rows
    assert fetched == [] and errors == []


def test_search_looks_in_responses_and_keywords_and_marks_what_it_found(browser, tmp_path):
    write_symoe_run(tmp_path, 30)
    page, _, errors = open_report(browser, build_report(tmp_path))
    page.fill("#f-search", "REASONS ABOUT DOC 7.")  # only in doc 7's three responses, any case
    assert count_line(page).startswith("1 of 30 questions")
    page.locator("#questions tbody tr.q").first.click()
    marks = page.locator("#questions tbody tr.detail mark")
    assert marks.count() == 3 and marks.first.inner_text() == "reasons about doc 7."
    page.fill("#f-search", "noise")  # a keyword of every question that has keywords (doc % 7 != 0)
    assert count_line(page).startswith("25 of 30 questions") and errors == []


def test_filters_by_recruits_consensus_and_the_final_against_the_experts(browser, tmp_path):
    write_symoe_run(tmp_path, 30)
    page, _, errors = open_report(browser, build_report(tmp_path))
    page.select_option("#f-distinct", "2")  # doc % 3 == 0 recruits expert-a twice
    assert count_line(page).startswith("10 of 30 questions")
    page.select_option("#f-distinct", "")
    page.select_option("#f-changed", "yes")  # two of three experts give the gold answer; doc % 5 == 0 ends in none
    assert count_line(page).startswith("6 of 30 questions; accuracy 0.0%")
    page.select_option("#f-changed", "")
    page.select_option("#f-consensus", "yes")
    assert count_line(page).startswith("0 of 30 questions")
    page.select_option("#f-consensus", "")
    page.select_option("#f-cut", "yes")  # doc % 4 == 3: two prompts shortened to fit a context
    assert count_line(page).startswith("7 of 30 questions")
    page.locator("#questions tbody tr.q").first.click()
    assert "2 prompt(s) quoting responses shortened" in page.locator("#questions tbody tr.detail").inner_text()
    page.select_option("#f-cut", "no")
    assert count_line(page).startswith("23 of 30 questions") and "cut=no" in page.url and errors == []


def test_a_view_is_kept_in_the_link(browser, tmp_path):
    write_symoe_run(tmp_path, 120)
    report = build_report(tmp_path)
    page, _, errors = open_report(browser, report)
    page.select_option("#f-distinct", "3")
    page.fill("#f-search", "noise")
    page.click("#next")
    page.locator("#questions tbody tr.q").first.click()
    page.click("#leaderboard th[data-key='macro']")
    fragment = "#" + page.url.split("#", 1)[1]
    again, _, more = open_report(browser, report, fragment)  # a colleague opens the sent link
    assert count_line(again) == count_line(page) and again.locator("#page").inner_text() == page.locator("#page").inner_text()
    assert again.locator("#f-distinct").input_value() == "3" and again.locator("#f-search").input_value() == "noise"
    assert again.locator("#questions tbody tr.detail").count() == 1
    assert again.locator("#leaderboard th.sorted-desc").get_attribute("data-key") == "macro"
    hostile, _, worse = open_report(browser, report, "#run=9&distinct=<b>&page=-4&sort=x&open=%3Cimg%3E")
    assert count_line(hostile).startswith("120 of 120 questions") and errors == more == worse == []


def test_the_questions_shown_export_as_csv_and_jsonl_without_a_network(browser, tmp_path):
    import csv
    import io

    write_symoe_run(tmp_path, 30)
    page, fetched, errors = open_report(browser, build_report(tmp_path))
    page.select_option("#f-distinct", "2")  # 10 questions, over one page
    files = {}
    for kind in ("csv", "jsonl"):
        with page.expect_download() as caught:
            page.click(f"#export-{kind}")
        files[kind] = (caught.value.suggested_filename, Path(caught.value.path()).read_text())
    name, text = files["csv"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert name.endswith(".csv") and [int(r["doc"]) for r in rows] == list(range(0, 30, 3))
    assert rows[1]["experts"] == "expert-a|expert-a|expert-b" and rows[1]["final_text"].startswith("Synthesis for doc 3.")
    name, text = files["jsonl"]
    lines = [json.loads(line) for line in text.splitlines()]
    assert name.endswith(".jsonl") and [q["doc"] for q in lines] == list(range(0, 30, 3))
    assert lines[0]["answer"] == "[invalid]" and lines[0]["keywords"] == [] and lines[1]["keywords"] == ["programming", "noise"]
    assert fetched == [] and errors == []


def test_two_runs_side_by_side_show_symoe_compares_cells(browser, tmp_path):
    from symoe_eval.analysis.compare import compare_runs
    from symoe_eval.analysis.runs import find_runs

    sa, sb = discordant(both=5, only_a=3, only_b=1, neither=2)
    write_run(tmp_path, "a", {"expert": "a"}, {"symoe_demo": sa})
    write_run(tmp_path, "b", {"expert": "b"}, {"symoe_demo": sb}, stamp="2026-11-25T10-00-00.000002")
    runs = {r.label: r for r in find_runs(tmp_path)}
    test = compare_runs(runs["symoe_expert(expert=a)"], runs["symoe_expert(expert=b)"])["tasks"][0]
    assert (test["only_a"], test["only_b"]) == (3, 1)
    page, fetched, errors = open_report(browser, build_report(tmp_path))
    page.select_option("#c-a", label="symoe_expert(expert=a)")
    page.select_option("#c-b", label="symoe_expert(expert=b)")
    assert page.locator("#c-test").inner_text() == (
        f"both right 5, only A right 3, only B right 1, both wrong 2; exact McNemar p = {test['mcnemar_p']:.3g} (as symoe compare)")
    for cell, docs in (("only_a", [5, 6, 7]), ("only_b", [8]), ("neither", [9, 10]), ("both", [0, 1, 2, 3, 4])):
        page.select_option("#c-cell", cell)
        assert [int(d) for d in page.locator("#c-questions tr.pair").evaluate_all("rows => rows.map(r => r.dataset.doc)")] == docs
    page.select_option("#c-a", label="symoe_expert(expert=b)")  # swapped: the cells follow
    page.select_option("#c-b", label="symoe_expert(expert=a)")
    assert "only A right 1, only B right 3" in page.locator("#c-test").inner_text()
    again, _, more = open_report(browser, build_report(tmp_path), "#" + page.url.split("#", 1)[1])
    assert again.locator("#c-test").inner_text() == page.locator("#c-test").inner_text()
    assert fetched == [] and errors == more == []


def test_the_page_says_which_tasks_ran_on_a_pooled_profile(browser, tmp_path):
    folder = write_symoe_run(tmp_path, 3)
    (summary_path,) = folder.glob("routing_summary_*.json")
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "profile_sources": {"symoe_demo": "pooled from symoe_gpqa, symoe_aime24"}}))
    page, _, errors = open_report(browser, build_report(tmp_path))
    assert count_line(page).endswith("Profiles: symoe_demo pooled from symoe_gpqa, symoe_aime24") and errors == []


def test_the_leaderboard_sorts_by_a_clicked_column(browser, tmp_path):
    write_run(tmp_path, "weak", {"expert": "w"}, {"symoe_demo": [0.0, 0.0, 1.0, 0.0]})
    write_run(tmp_path, "strong", {"expert": "s"}, {"symoe_demo": [1.0, 1.0, 1.0, 0.0]}, stamp="2026-11-25T10-00-00.000002")
    page, _, errors = open_report(browser, build_report(tmp_path))
    first_run = lambda: page.locator("#leaderboard tbody tr").first.locator("td").first.inner_text()  # noqa: E731
    page.click("#leaderboard th[data-key='task:symoe_demo']")
    assert "expert=s" in first_run()
    page.click("#leaderboard th[data-key='task:symoe_demo']")
    assert "expert=w" in first_run() and errors == []


def nonblank(png_path) -> bool:
    import matplotlib.image as mpimg

    pixels = mpimg.imread(png_path)[..., :3]
    return pixels.std() > 0.05 and (pixels.mean(axis=2) < 0.5).mean() > 0.005


@pytest.mark.slow
def test_a_report_of_the_quick_start_run_in_chromium(browser, demo_outputs, tmp_path):
    """The quick start's last command (``symoe report``) on the real demo run, clicked through."""
    done = run_cli(["symoe", "report", str(demo_outputs)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    page, fetched, errors = open_report(browser, demo_outputs / "report.html")
    assert page.locator("#leaderboard tbody tr").count() == 1 and "symoe(pool=tiny-cpu" in page.locator("#leaderboard").inner_text()
    assert question_rows(page) == 4 and page.locator("#f-subject option").count() == 5  # all + four subjects
    page.select_option("#f-subject", "geography")
    assert question_rows(page) == 1
    page.locator("#questions tbody tr.q").first.click()
    detail = page.locator("#questions tbody tr.detail")
    assert detail.locator(".response").count() == 3 and "recruited" in detail.inner_text()
    assert "keywords" in detail.inner_text() and "gold" in detail.inner_text()
    page.select_option("#f-subject", "")
    page.select_option("#f-correct", "wrong")
    wrong = int(count_line(page).split(" of ")[0])
    page.select_option("#f-correct", "right")
    assert int(count_line(page).split(" of ")[0]) + wrong == 4
    page.select_option("#f-correct", "")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert nonblank(tmp_path / "report.png") and fetched == [] and errors == []
    # search inside a real response, the view kept in the link, the rows exported
    line = max(detail.locator(".response pre").first.inner_text().splitlines(), key=len)
    words = line[len(line) // 2: len(line) // 2 + 12]
    page.fill("#f-search", words)
    found = int(count_line(page).split(" of ")[0])
    assert found >= 1 and page.locator("#questions tbody tr.detail mark").count() >= 1
    again, _, more = open_report(browser, demo_outputs / "report.html", "#" + page.url.split("#", 1)[1])
    assert count_line(again) == count_line(page) and again.locator("#questions tbody tr.detail").count() == 1
    with page.expect_download() as caught:
        page.click("#export-jsonl")
    assert len(Path(caught.value.path()).read_text().splitlines()) == found
    assert page.locator("#c-test").inner_text() == "choose two different runs" and more == []  # one run here


def test_the_quick_start_run_beside_a_single_expert_compares_in_chromium(browser, demo_outputs, tmp_path):
    """Two real runs of one task in one folder (the demo's symoe run, and smollm2-135m alone
    on the same four questions): the two-runs view's cells equal ``symoe compare``'s, and the
    cost-accuracy plot shows both."""
    from symoe_eval.analysis.compare import compare_runs
    from symoe_eval.analysis.runs import find_runs

    outputs = tmp_path / "demo"
    shutil.copytree(demo_outputs, outputs)
    done = run_cli(["lm_eval", "--model", "symoe_expert", "--model_args",
                    f"pool=tiny-cpu,expert=smollm2-135m,cache_dir={tmp_path / 'gen'}", "--tasks", "symoe_demo",
                    "--samples", '{"symoe_demo": [8, 16, 24, 32]}', "--batch_size", "8", "--output_path", str(outputs),
                    "--log_samples"], cwd=tmp_path, env_extra={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    runs = {r.model: r for r in find_runs(outputs)}
    test = compare_runs(runs["symoe"], runs["symoe_expert"])["tasks"][0]
    both = round(test["accuracy_a"] * test["n"]) - test["only_a"]
    cells = {"both": both, "only_a": test["only_a"], "only_b": test["only_b"], "mcnemar_p": test["mcnemar_p"],
             "neither": test["n"] - both - test["only_a"] - test["only_b"]}
    report = build_report(outputs)
    assert any(p["title"].startswith("accuracy against cost") for p in page_data(report.read_text())["plots"])
    page, fetched, errors = open_report(browser, report)
    labels = page.locator("#c-a option").all_inner_texts()
    page.select_option("#c-a", label=next(x for x in labels if x.startswith("symoe(")))
    page.select_option("#c-b", label=next(x for x in labels if x.startswith("symoe_expert(")))
    assert page.locator("#c-test").inner_text() == (
        f"both right {cells['both']}, only A right {cells['only_a']}, only B right {cells['only_b']}, "
        f"both wrong {cells['neither']}; exact McNemar p = {cells['mcnemar_p']:.3g} (as symoe compare)")
    page.select_option("#c-cell", "all")
    assert page.locator("#c-questions tr.pair").count() == 4 and fetched == [] and errors == []
