"""``symoe report``'s page from ``file://`` in Debian's Firefox ESR (over WebDriver BiDi:
``firefox_bidi.py``): the filters, the search, the two-runs view with ``symoe compare``'s cells,
the export and a sent link give what they give in Chromium (``test_report.py``), with no
JavaScript error. Skips without Firefox unless SYMOE_REQUIRE_BROWSER=1 (``.ci/run`` installs it)."""

import asyncio
import json
import os

import pytest

from firefox_bidi import firefox_binary, firefox_tab
from lm_eval_outputs import discordant, write_run, write_symoe_run
from symoe_eval.analysis.report import build_report

# Drives the page as a user would (choices, typing, clicks) and returns what it showed.
SCENARIO = """(async () => {
  const $ = (id) => document.getElementById(id);
  const pick = (id, value) => { $(id).value = value; $(id).dispatchEvent(new Event("change")); };
  const byLabel = (id, start) => [...$(id).options].find((o) => o.text.startsWith(start)).value;
  const seen = { ready: document.body.dataset.ready };
  pick("f-run", byLabel("f-run", "symoe("));
  pick("f-cut", "yes");
  seen.cut = $("count").innerText;
  pick("f-cut", "");
  $("f-search").value = "REASONS ABOUT DOC 7.";
  $("f-search").dispatchEvent(new Event("input"));
  seen.search = $("count").innerText;
  document.querySelector("#questions tbody tr.q").click();
  seen.marks = [...document.querySelectorAll("#questions tbody tr.detail mark")].map((m) => m.textContent);
  const made = [];
  URL.createObjectURL = (blob) => { made.push(blob); return "about:blank"; };
  $("export-jsonl").click();
  seen.exported = (await made[0].text()).trim().split("\\n").map((line) => JSON.parse(line).doc);
  pick("c-a", byLabel("c-a", "symoe_expert(expert=a)"));
  pick("c-b", byLabel("c-b", "symoe_expert(expert=b)"));
  seen.test = $("c-test").innerText;
  pick("c-cell", "only_a");
  seen.only_a = [...document.querySelectorAll("#c-questions tr.pair")].map((r) => Number(r.dataset.doc));
  seen.hash = location.hash;
  return JSON.stringify(seen);
})()"""

RESTORED = """JSON.stringify({count: document.getElementById("count").innerText,
  test: document.getElementById("c-test").innerText, search: document.getElementById("f-search").value})"""


@pytest.fixture
def firefox():
    if not firefox_binary():
        if os.environ.get("SYMOE_REQUIRE_BROWSER"):
            pytest.fail("SYMOE_REQUIRE_BROWSER is set but Firefox (Debian's firefox-esr) is missing")
        pytest.skip("Firefox is not installed")


async def drive(url: str) -> tuple[dict, dict, list]:
    async with firefox_tab() as tab:
        await tab.goto(url)
        seen = json.loads(await tab.evaluate(SCENARIO))
        await tab.goto(url + seen["hash"])  # a colleague opens the sent link
        await tab.evaluate("new Promise((done) => setTimeout(done, 200))")
        return seen, json.loads(await tab.evaluate(RESTORED)), tab.errors


def test_the_report_works_from_file_in_firefox(firefox, tmp_path):
    from symoe_eval.analysis.compare import compare_runs
    from symoe_eval.analysis.runs import find_runs

    write_symoe_run(tmp_path, 30)
    sa, sb = discordant(both=5, only_a=3, only_b=1, neither=2)
    write_run(tmp_path, "a", {"expert": "a"}, {"symoe_demo": sa})
    write_run(tmp_path, "b", {"expert": "b"}, {"symoe_demo": sb}, stamp="2026-11-25T10-00-00.000002")
    runs = {r.label: r for r in find_runs(tmp_path)}
    test = compare_runs(runs["symoe_expert(expert=a)"], runs["symoe_expert(expert=b)"])["tasks"][0]
    seen, restored, errors = asyncio.run(drive(build_report(tmp_path).as_uri()))
    assert seen["ready"] == "1" and seen["cut"].startswith("7 of 30 questions")  # doc % 4 == 3
    assert seen["search"].startswith("1 of 30 questions") and seen["marks"] == ["reasons about doc 7."] * 3
    assert seen["exported"] == [7]
    assert seen["test"] == (f"both right 5, only A right 3, only B right 1, both wrong 2; "
                            f"exact McNemar p = {test['mcnemar_p']:.3g} (as symoe compare)")
    assert seen["only_a"] == [5, 6, 7]
    assert restored == {"count": restored["count"], "test": seen["test"], "search": "REASONS ABOUT DOC 7."}
    assert restored["count"].startswith("1 of 30 questions") and errors == []
