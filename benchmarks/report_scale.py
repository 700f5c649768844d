"""How ``symoe report`` scales: 4 symoe runs of N questions each (default 10,000; synthetic, in
the layout lm-eval and our run log write, from tests/lm_eval_outputs.py), the report built, then
opened in headless Chromium and Firefox from file:// and driven: page ready, a search over every response,
a filter, and the compare view switched to another pair of runs.

    python benchmarks/report_scale.py [--questions 10000] [--runs 4]

Prints the file size and each time (seconds, one run each) in Debian's chromium through
Playwright and in Debian's firefox-esr over WebDriver BiDi.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from lm_eval_outputs import write_symoe_run  # noqa: E402

from symoe_eval.analysis.report import build_report  # noqa: E402


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def drive(report: Path, questions: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        ready = timed(lambda: (page.goto(report.as_uri()), page.wait_for_selector("body[data-ready='1']")))
        search = timed(lambda: (page.fill("#f-search", f"reasons about doc {questions - 1}."), page.wait_for_function(
            "document.getElementById('count').textContent.startsWith('1 of')")))
        page.fill("#f-search", "")
        expert = timed(lambda: page.select_option("#f-expert", "expert-c"))
        compare = timed(lambda: page.select_option("#c-b", "2"))
        browser.close()
    return {"page ready (load + parse + first draw)": ready, "search in every response": search,
            "expert filter": expert, "compare view, another pair": compare}


# In Firefox: navigation ends at the load event, then the page's own script times its work.
FIREFOX_STEPS = """(async () => {
  const $ = (id) => document.getElementById(id), timed = (act) => { const t = performance.now(); act(); return (performance.now() - t) / 1000; };
  const pick = (id, v) => { $(id).value = v; $(id).dispatchEvent(new Event("change")); };
  const search = timed(() => { $("f-search").value = "reasons about doc LAST."; $("f-search").dispatchEvent(new Event("input")); });
  if (!$("count").textContent.startsWith("1 of")) throw new Error("search found " + $("count").textContent);
  $("f-search").value = ""; $("f-search").dispatchEvent(new Event("input"));
  return JSON.stringify({search, expert: timed(() => pick("f-expert", "expert-c")), compare: timed(() => pick("c-b", "2"))});
})()"""


def drive_firefox(report: Path, questions: int) -> dict[str, float]:
    """The same steps in Debian's Firefox ESR over WebDriver BiDi (``tests/firefox_bidi.py``)."""
    import asyncio
    import json

    from firefox_bidi import firefox_tab

    async def steps() -> dict[str, float]:
        async with firefox_tab() as tab:
            start = time.perf_counter()
            await tab.goto(report.as_uri())
            await tab.evaluate("new Promise((done) => { const wait = () => document.body.dataset.ready === '1' ? "
                               "done() : setTimeout(wait, 5); wait(); })")
            ready = time.perf_counter() - start
            took = json.loads(await tab.evaluate(FIREFOX_STEPS.replace("LAST", str(questions - 1))))
            assert tab.errors == [], tab.errors
        return {"page ready (load + parse + first draw)": ready, "search in every response": took["search"],
                "expert filter": took["expert"], "compare view, another pair": took["compare"]}

    return asyncio.run(steps())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i in range(args.runs):
            write_symoe_run(root / f"run{i}", args.questions, stamp=f"2026-12-07T10-0{i}-00.000001")
        built = timed(lambda: build_report(root))
        report = root / "report.html"
        print(f"{args.runs} runs x {args.questions} questions: report.html {report.stat().st_size / 2**20:.1f} MiB, "
              f"built in {built:.1f} s")
        print("Chromium (Playwright):")
        for name, seconds in drive(report, args.questions).items():
            print(f"  {name}: {seconds:.2f} s")
        print("Firefox ESR (WebDriver BiDi; its timings are the page's own, after the load event):")
        for name, seconds in drive_firefox(report, args.questions).items():
            print(f"  {name}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
