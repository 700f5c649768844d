"""``symoe leaderboard``: every lm-eval run under a folder in one table, with plots.

Rows are runs, columns are tasks and their macro average; a cell is accuracy with its 95% CI and
a mark where the run is significantly better (+) or worse (-) than the baseline row (paired exact
McNemar on the shared documents, Holm-corrected across the row's tasks, alpha 0.05). Cost columns
come from our run summaries and lm-eval's own wall time.
"""

from __future__ import annotations

import csv
import io
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np

from symoe_eval.analysis.compare import paired_scores
from symoe_eval.errors import SymoeError
from symoe_eval.analysis.runs import Run, find_runs, read_jsonl
from symoe_eval.analysis.stats import accuracy_ci, holm, mcnemar_exact
from symoe_eval.atomic import replace_file
from symoe_eval.runoutput import MODEL_STATS, ROW, SUMMARY

ALPHA = 0.05


# What the method needs (as a cold cache would run it), then what this run happened to compute.
COST_COLUMNS = {"models_used": "models used", "calls": "calls", "tokens": "tokens (cold cache)",
                "loads": "loads (this run)", "generated": "generated tokens (this run)", "wall_s": "wall time (s)"}


def method_work(summary: dict | None) -> dict:
    """Cost columns from a run summary: a cached call still counts as the method's work."""
    if not summary:
        return {key: None for key in COST_COLUMNS if key != "wall_s"}
    models = summary.get(SUMMARY.models, {}).values()
    s = MODEL_STATS
    return {
        "models_used": sum(1 for m in models if m.get(s.calls, 0) + m.get(s.cached_calls, 0)),
        "calls": sum(m.get(s.calls, 0) + m.get(s.cached_calls, 0) for m in models),
        "tokens": sum(m.get(s.generated_tokens, 0) + m.get(s.cached_tokens, 0) for m in models),
        "loads": summary.get(SUMMARY.total_loads),
        "generated": sum(m.get(s.generated_tokens, 0) for m in models),
    }


def _accuracy(run: Run, task: str) -> tuple[float, float, float, int]:
    scores = list(run.tasks[task].scores.values())
    low, high = accuracy_ci(scores)
    return float(np.mean(scores)), low, high, len(scores)


def significance_marks(run: Run, baseline: Run, tasks: list[str]) -> dict[str, str]:
    """'+' / '-' per task where ``run`` beats / trails ``baseline`` after Holm correction."""
    tested, pvalues, signs = [], [], []
    for task in tasks:
        if task not in run.tasks or task not in baseline.tasks:
            continue
        try:
            _, a, b = paired_scores(run, baseline, task)
        except SymoeError:
            continue  # different documents: not comparable, left unmarked
        p, only_run, only_base = mcnemar_exact(a, b)
        tested.append(task)
        pvalues.append(p)
        signs.append("+" if only_run > only_base else "-")
    return {t: s for t, s, p in zip(tested, signs, holm(pvalues)) if p < ALPHA}


def row_labels(runs: list[Run]) -> list[str]:
    """Each run's label; runs with equal model args are told apart by their tasks (``[a,b]``) when
    those differ, else (a rerun, another --limit or seed) by their results' timestamps."""
    counts = Counter(r.label for r in runs)
    tasks = Counter((r.label, ",".join(sorted(r.tasks))) for r in runs)

    def label(run: Run) -> str:
        if counts[run.label] == 1:
            return run.label
        names = ",".join(sorted(run.tasks))
        return f"{run.label} [{names}]" if tasks[(run.label, names)] == 1 else f"{run.label} @ {run.stamp}"
    return [label(r) for r in runs]


def build_table(runs: list[Run], baseline: str | None = None) -> tuple[list[str], list[dict]]:
    tasks = sorted({t for r in runs for t in r.tasks})
    base_run, labels = None, row_labels(runs)
    if baseline:
        matches = [r for r, label in zip(runs, labels) if baseline in label]
        if len(matches) != 1:
            found = "; ".join(f"{label} ({r.results_path})" for r, label in zip(runs, labels) if r in (matches or runs))
            raise SymoeError(f"baseline '{baseline}' matches {len(matches)} runs, not one: {found}")
        base_run = matches[0]
    rows = []
    for run, label in zip(runs, labels):
        marks = significance_marks(run, base_run, tasks) if base_run and run is not base_run else {}
        cells = {t: _accuracy(run, t) for t in tasks if t in run.tasks}
        summary = run.summary or {}
        rows.append({
            "run": label + (" (baseline)" if run is base_run else ""),
            "cells": cells,
            "marks": marks,
            "macro": float(np.mean([c[0] for c in cells.values()])) if cells else float("nan"),
            **method_work(summary),
            "wall_s": run.wall_seconds,
            "run_obj": run,
        })
    return tasks, rows


def column_sizes(rows: list[dict]) -> dict[str, int]:
    """Each task's most common document count: cells with another count are marked."""
    counts: dict[str, Counter] = {}
    for r in rows:
        for task, cell in r["cells"].items():
            counts.setdefault(task, Counter())[cell[3]] += 1
    return {t: c.most_common(1)[0][0] for t, c in counts.items()}


def _cell(row: dict, task: str, usual_n: int | None = None) -> str:
    if task not in row["cells"]:
        return "-"
    acc, low, high, n = row["cells"][task]
    other_n = f" (n={n})" if usual_n is not None and n != usual_n else ""
    return f"{acc:.1%} [{low:.1%}, {high:.1%}]{other_n}{' ' + row['marks'][task] if task in row['marks'] else ''}"


def render_markdown(tasks: list[str], rows: list[dict], note: str = "") -> str:
    usual = column_sizes(rows)
    sizes = sorted({c[3] for r in rows for c in r["cells"].values()})
    head = ["run", *tasks, "macro avg", *COST_COLUMNS.values()]
    lines = [
        f"Accuracy (exact match) with 95% Wilson CI; n per task: {', '.join(map(str, sizes))}. "
        "+ / - : significantly better / worse than the baseline (paired exact McNemar, Holm, alpha 0.05). "
        "(n=N): this cell counts N documents, not the column's usual number.",
    ]
    if note:
        lines.append(note)
    lines += ["", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cost = ["-" if r[key] is None else f"{r[key]:.0f}" for key in COST_COLUMNS]
        lines.append("| " + " | ".join([r["run"], *(_cell(r, t, usual.get(t)) for t in tasks), f"{r['macro']:.1%}", *cost]) + " |")
    return "\n".join(lines) + "\n"


def render_csv(tasks: list[str], rows: list[dict]) -> str:
    with io.StringIO(newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run", *(f"{t}{s}" for t in tasks for s in ("", "_ci_low", "_ci_high", "_n", "_mark")),
                         "macro_avg", *COST_COLUMNS])
        for r in rows:
            values = []
            for t in tasks:
                acc, low, high, n = r["cells"].get(t, (None, None, None, None))
                values += [acc, low, high, n, r["marks"].get(t, "")]
            writer.writerow([r["run"], *values, r["macro"], *(r[key] for key in COST_COLUMNS)])
        return fh.getvalue()


def pyplot():
    """matplotlib's pyplot, drawing off screen, with text taken as text: a ``$`` in a run label or
    an expert name is not TeX."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(path, tasks: list[str], rows: list[dict]) -> None:
    plt = pyplot()
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(tasks) + 0.6 * len(rows)), 4.5))
    for i, r in enumerate(rows):
        xs, ys, err = [], [], [[], []]
        for j, t in enumerate(tasks):
            if t in r["cells"]:
                acc, low, high, _ = r["cells"][t]
                xs.append(j + i * width)
                ys.append(acc)
                err[0].append(acc - low)
                err[1].append(high - acc)
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=r["run"])
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(tasks))], tasks)
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_ylim(0, 1)
    # below the axes, so it never covers a bar near 100%
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(3, max(1, len(rows))), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


COST = "tokens"  # the cost a cost-accuracy plot puts on its x axis: generated tokens, cold cache


def pareto_front(points: list[tuple[float, float]]) -> set[int]:
    """Indices of the (cost, accuracy) points no other point beats: none costs no more and is at
    least as accurate, better in one of the two."""
    return {i for i, (c, a) in enumerate(points)
            if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in points)}


def costed(rows: list[dict], task: str) -> list[dict]:
    """The rows with the task's accuracy and a recorded cost (runs of other lm-eval models have none)."""
    return [r for r in rows if task in r["cells"] and r.get(COST)]


def plot_cost_accuracy(path, tasks: list[str], rows: list[dict]) -> None:
    """Per task, each run's accuracy (95% CI) against its generated tokens (cold cache), the
    Pareto front joined and its runs labelled."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        shown = costed(rows, task)
        points = [(float(r[COST]), r["cells"][task][0]) for r in shown]
        front = pareto_front(points)
        for i, (r, (cost, acc)) in enumerate(zip(shown, points)):
            _, low, high, _ = r["cells"][task]
            ax.errorbar([cost], [acc], yerr=[[acc - low], [high - acc]], fmt="o" if i in front else "x", capsize=3)
            if i in front:
                ax.annotate(textwrap.shorten(r["run"], 28), (cost, acc), fontsize=6, xytext=(4, 4), textcoords="offset points")
        if front:
            ax.plot(*zip(*sorted(points[i] for i in front)), "--", lw=1)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("generated tokens (cold cache)")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("accuracy (95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def recruitment_counts(run: Run) -> tuple[dict[str, Counter], dict[str, str]] | None:
    """Experts recruited per task and the aggregator(s), from a symoe run's routing log (rows
    without a task and a list of experts are skipped)."""
    summary = run.summary or {}
    if summary.get(SUMMARY.method) != "symoe" or run.routing_log is None:
        return None
    counts: dict[str, Counter] = {}
    for row in read_jsonl(run.routing_log):
        if isinstance(row.get(ROW.experts), list) and ROW.task in row:
            counts.setdefault(str(row[ROW.task]), Counter()).update(map(str, row[ROW.experts]))
    aggregators = summary.get(SUMMARY.aggregators)
    if not counts:
        return None
    return counts, {str(k): str(v) for k, v in aggregators.items()} if isinstance(aggregators, dict) else {}


def plot_recruitment(path, label: str, counts: dict[str, Counter], aggregators: dict[str, str]) -> None:
    plt = pyplot()
    tasks = sorted(counts)
    experts = sorted({e for c in counts.values() for e in c})
    grid = np.array([[counts[t][e] / max(1, sum(counts[t].values())) for t in tasks] for e in experts])
    fig, ax = plt.subplots(figsize=(2.5 + 2.4 * len(tasks), 1.8 + 0.45 * len(experts)))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(tasks)), [f"{t}\n(aggregator: {aggregators.get(t, '?')})" for t in tasks], fontsize=7)
    ax.set_yticks(range(len(experts)), experts, fontsize=8)
    for i in range(len(experts)):
        for j in range(len(tasks)):
            ax.text(j, i, f"{grid[i, j]:.0%}", ha="center", va="center", color="white" if grid[i, j] < 0.5 else "black", fontsize=7)
    ax.set_title("experts recruited:\n" + textwrap.fill(label, width=max(30, int(14 * fig.get_figwidth()))), fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def build_leaderboard(root: str | Path, out_dir: str | Path | None = None, baseline: str | None = None,
                      note: str = "", metric: str | None = None, filter_name: str | None = None) -> dict[str, Path]:
    runs = find_runs(root, metric, filter_name)
    if not runs:
        raise SymoeError(f"no lm-eval runs with samples under {root} (use --output_path and --log_samples)")
    out = Path(out_dir or root)
    out.mkdir(parents=True, exist_ok=True)
    tasks, rows = build_table(runs, baseline)
    written = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv", "accuracy_plot": out / "accuracy.png"}
    replace_file(written["markdown"], render_markdown(tasks, rows, note).encode("utf-8", "replace"))
    replace_file(written["csv"], render_csv(tasks, rows).encode("utf-8", "replace"))
    replace_file(written["accuracy_plot"], png_bytes(plot_accuracy, tasks, rows))
    for i, r in enumerate(rows):
        found = recruitment_counts(r["run_obj"])
        if found:
            written[f"recruitment_{i}"] = out / f"recruitment_{i}.png"
            replace_file(written[f"recruitment_{i}"], png_bytes(plot_recruitment, r["run"], *found))
    return written


def png_bytes(plot, *args) -> bytes:
    """A plot function drawn into memory."""
    buffer = io.BytesIO()
    plot(buffer, *args)
    return buffer.getvalue()
