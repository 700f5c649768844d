"""``symoe report``: one self-contained HTML file to explore lm-eval runs in a browser.

The page holds the leaderboard (the same table as ``symoe leaderboard``: CIs, significance marks,
cost columns), its plots as inline images, and a question explorer over every run: per question
the document, the answer read and the gold answer; for our methods also what the routing log
recorded (keywords, mapped keywords, recruited experts or fallback, each response with its
answer, MoA layers, discussion rounds and votes). The data travel as one JSON block; the page's
script filters it and renders one page of questions at a time, so thousands stay responsive.
Nothing is fetched: CSS, script and images are inline.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
from importlib import resources
from pathlib import Path

from symoe_eval.analysis.leaderboard import (COST_COLUMNS, build_table, costed, plot_accuracy, plot_cost_accuracy,
                                              plot_recruitment, png_bytes, recruitment_counts)
from symoe_eval.analysis.compare import p_text, paired_scores
from symoe_eval.analysis.runs import Run, find_runs, read_jsonl
from symoe_eval.analysis.stats import mcnemar_exact
from symoe_eval.atomic import replace_file
from symoe_eval.errors import SymoeError
from symoe_eval.runoutput import INVALID, RESPONSE, ROW, SUMMARY

log = logging.getLogger(__name__)

QUESTION_FIELDS = ("question", "Question", "problem", "Problem", "input", "text")
SUBJECT_FIELDS = ("category", "subject", "src")


def png_data_uri(plot, *args) -> str:
    """A plot function of the leaderboard drawn into memory, as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(plot, *args)).decode()


def _number(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _count(value) -> int:
    """A count read from a file: a non-negative integer, else 0 (absent in schema version 1)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def leaderboard_data(tasks: list[str], rows: list[dict]) -> dict:
    """The leaderboard rows as the page's script reads them."""
    return {
        "tasks": tasks,
        "cost_columns": COST_COLUMNS,
        "rows": [{
            "run": r["run"],
            "cells": {t: [*map(_number, r["cells"][t]), r["marks"].get(t, "")] for t in r["cells"]},
            "macro": _number(r["macro"]),
            **{key: _number(r[key]) for key in COST_COLUMNS},
        } for r in rows],
    }


def _first(doc: dict, fields: tuple[str, ...]) -> str:
    return next((str(doc[f]) for f in fields if doc.get(f) not in (None, "")), "")


def answer_is_right(answer: str, gold: str) -> bool | None:
    """Whether a logged response's answer is the gold one. The report reads only run outputs, so
    it compares as exact match does: a letter against a letter; a free-form answer that differs
    in form (``045`` against ``45``) may still be right, so it gets no mark (None)."""
    if answer.strip() == gold.strip():
        return True
    return False if re.fullmatch(r"[A-J]", gold.strip()) else None


def text_list(value) -> list[str] | None:
    """A logged list as strings; anything else as one string (a run folder's files are untrusted)."""
    if value is None:
        return None
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _said(response, gold: str) -> dict:
    response = response if isinstance(response, dict) else {RESPONSE.text: response}
    answer = str(response.get(RESPONSE.answer, ""))
    return {"who": str(response.get(RESPONSE.expert, "?")), "answer": answer, "text": str(response.get(RESPONSE.text, "")),
            "right": answer_is_right(answer, gold) if gold else None}


def routing_rows(run: Run) -> dict[tuple[str, int], list[dict]]:
    """A run's routing-log rows by (task, doc_id), repeats in order; empty for other models. Rows
    without a task and an integer doc_id are skipped and counted."""
    if run.routing_log is None:
        return {}
    found: dict[tuple[str, int], list[dict]] = {}
    skipped = 0
    for row in read_jsonl(run.routing_log):
        try:
            found.setdefault((str(row[ROW.task]), int(row[ROW.doc_id])), []).append(row)
        except (KeyError, ValueError, TypeError):
            skipped += 1
    if skipped:
        log.warning("%s: skipped %d row(s) without a task and doc_id", run.routing_log, skipped)
    order = lambda r: r.get(ROW.repeat) if isinstance(r.get(ROW.repeat), int) else 0  # noqa: E731
    return {key: sorted(rows, key=order) for key, rows in found.items()}


def method_rounds(row: dict) -> list[tuple[str, list]]:
    """A routing-log row's responses as named rounds: symoe's experts, MoA's layers, a
    discussion's rounds."""
    if ROW.layers in row:
        return [(f"layer {i}", layer) for i, layer in enumerate(text_rounds(row[ROW.layers]), 1)]
    if ROW.rounds in row:
        return [(f"round {i}", answers) for i, answers in enumerate(text_rounds(row[ROW.rounds]))]
    responses = row.get(ROW.responses, [])
    return [("experts", responses if isinstance(responses, list) else [responses])]


def text_rounds(value) -> list[list]:
    rounds = value if isinstance(value, list) else [value]
    return [r if isinstance(r, list) else [r] for r in rounds]


def _rounds(rows: list[dict], gold: str) -> list[dict]:
    shown = []
    for row in rows:
        sample = f"sample {order + 1}: " if len(rows) > 1 and isinstance(order := row.get(ROW.repeat, 0), int) else ""
        for name, responses in method_rounds(row):
            shown.append({"name": sample + name, "responses": [_said(r, gold) for r in responses]})
    return shown


def question_item(task: str, doc: int, samples, rows: list[dict], model: str) -> dict:
    """One question as the explorer shows it."""
    document = samples.docs.get(doc, {})
    question, gold = _first(document, QUESTION_FIELDS), samples.targets.get(doc, "")
    texts = samples.texts.get(doc, [])
    first = rows[0] if rows else {}
    answered_by = str(first.get(ROW.aggregator) or ("majority vote" if ROW.votes in first else model))
    return {
        "task": task, "doc": doc, "subject": _first(document, SUBJECT_FIELDS), "question": question, "gold": gold,
        "answer": samples.answers.get(doc, ""), "score": samples.scores[doc],
        "final": {"who": answered_by, "text": str(texts[0] if texts else first.get(ROW.final_text, ""))},
        "keywords": text_list(first.get(ROW.keywords)), "mapped": text_list(first.get(ROW.mapped_keywords)),
        "fallback": None if first.get(ROW.fallback) is None else str(first[ROW.fallback]),
        "consensus": bool(first.get(ROW.consensus)), "prompts_cut": _count(first.get(ROW.prompts_cut)),
        "experts": text_list(first.get(ROW.experts)) or [], "votes": text_list(first.get(ROW.votes)),
        "rounds": _rounds(rows, gold),
    }


def run_data(run: Run, label: str) -> dict:
    """One run's questions (every scored document of every task) and what the page says of it."""
    logged = routing_rows(run)
    items = [question_item(task, doc, samples, logged.get((task, doc), []), run.model)
             for task, samples in sorted(run.tasks.items()) for doc in sorted(samples.scores)]
    summary = run.summary or {}
    sources = summary.get(SUMMARY.profile_sources)
    return {"label": label, "model": run.model, "method": str(summary.get(SUMMARY.method, run.model)),
            "results": str(run.results_path), "questions": items,
            "profile_sources": {str(k): str(v) for k, v in sources.items()} if isinstance(sources, dict) else {}}


def comparison(a: Run, b: Run, task: str) -> dict:
    """Run A against run B on one task, as ``symoe compare`` pairs and tests them: the 2x2 cells
    and the exact McNemar p; a pair it would refuse carries its one-line reason instead."""
    try:
        _, sa, sb = paired_scores(a, b, task)
    except SymoeError as err:
        return {"refused": str(err)}
    p, only_a, only_b = mcnemar_exact(sa, sb)
    both = sum(1 for x, y in zip(sa, sb) if x > 0.5 and y > 0.5)
    return {"p": p_text(p), "both": both, "only_a": only_a, "only_b": only_b, "neither": len(sa) - both - only_a - only_b}


def comparisons(runs: list[Run]) -> dict[str, dict]:
    """Every pair of runs on every task they share, keyed ``"i/j/task"`` (i < j, indices of ``runs``)."""
    return {f"{i}/{j}/{task}": comparison(a, b, task)
            for i, a in enumerate(runs) for j, b in enumerate(runs) if i < j
            for task in sorted(set(a.tasks) & set(b.tasks))}


def plots(tasks: list[str], rows: list[dict]) -> list[dict]:
    shown = [{"title": "accuracy per task (95% CI)", "src": png_data_uri(plot_accuracy, tasks, rows)}]
    priced = [t for t in tasks if len(costed(rows, t)) >= 2]
    if priced:
        shown.append({"title": "accuracy against cost: generated tokens, as a cold cache would run it "
                               "(o and dashes: the Pareto front; runs without a run summary left out)",
                      "src": png_data_uri(plot_cost_accuracy, priced, rows)})
    for r in rows:
        found = recruitment_counts(r["run_obj"])
        if found:
            shown.append({"title": f"experts recruited: {r['run']}", "src": png_data_uri(plot_recruitment, r["run"], *found)})
    return shown


def page_asset(name: str) -> str:
    return resources.files("symoe_eval.analysis").joinpath("page", name).read_text(encoding="utf-8")


# Inside <script>, JSON must not hold "<" (neither "</script" nor "<!--" may start there), and
# U+2028/9 end lines in older script parsers; "\\uXXXX" reads back as the same text.
SCRIPT_SAFE = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def script_json(data) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element whatever text it holds."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).translate(SCRIPT_SAFE)


def render_page(data: dict) -> str:
    """The template with its CSS, script, data and title inlined, in one pass (an inserted text is
    never searched for markers)."""
    parts = {"/*CSS*/": page_asset("report.css"), "/*JS*/": page_asset("report.js"),
             "/*DATA*/": script_json(data), "<!--TITLE-->": html.escape(data["title"])}
    return re.sub("|".join(map(re.escape, parts)), lambda m: parts[m.group(0)], page_asset("report.html"))


def build_report(root: str | Path, out: str | Path | None = None, baseline: str | None = None, title: str | None = None,
                 metric: str | None = None, filter_name: str | None = None) -> Path:
    """Write the report of every lm-eval run under ``root`` (a run folder or a folder of runs)."""
    runs = find_runs(root, metric, filter_name)
    if not runs:
        raise SymoeError(f"no lm-eval runs with samples under {root} (use --output_path and --log_samples)")
    tasks, rows = build_table(runs, baseline)
    data = {
        "title": title or f"symoe-eval report: {Path(root).resolve().name}",
        "leaderboard": leaderboard_data(tasks, rows),
        "plots": plots(tasks, rows),
        "runs": [run_data(r["run_obj"], r["run"]) for r in rows],
        "comparisons": comparisons([r["run_obj"] for r in rows]),
        "invalid": INVALID,  # the answer that marks "none readable" (runoutput), for the page
    }
    path = Path(out) if out else Path(root) / "report.html"
    replace_file(path, render_page(data).encode("utf-8", "replace"))
    return path
