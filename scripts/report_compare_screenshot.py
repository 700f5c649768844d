"""The README's picture of ``symoe report``'s two-runs view: the report of a folder of runs opened
in headless Chromium (Playwright, Debian's chromium), runs A and B chosen by the start of their
labels, one cell of the 2x2 table shown, and the section saved as a PNG.

    python scripts/report_compare_screenshot.py RUNS_FOLDER OUT.png [--a "symoe("] [--b "symoe_expert("] [--cell only_b]
"""

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from symoe_eval.analysis.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs")
    parser.add_argument("out")
    parser.add_argument("--a", default="symoe(")
    parser.add_argument("--b", default="symoe_expert(")
    parser.add_argument("--cell", default="only_b", choices=["", "both", "neither", "only_a", "only_b"])
    args = parser.parse_args()
    report = build_report(args.runs)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1250, "height": 900})
        page.goto(report.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        labels = page.locator("#c-a option").all_inner_texts()
        page.select_option("#c-a", label=next(x for x in labels if x.startswith(args.a)))
        page.select_option("#c-b", label=next(x for x in labels if x.startswith(args.b)))
        page.select_option("#c-cell", args.cell)
        print(page.locator("#c-test").inner_text())
        page.locator("#compare-section").screenshot(path=str(Path(args.out)))
        browser.close()


if __name__ == "__main__":
    main()
