"""``symoe compare``: are two lm-eval runs really different? Paired per task and overall."""

from __future__ import annotations

import json
import logging

from symoe_eval.errors import SymoeError
from symoe_eval.analysis.runs import Run
from symoe_eval.analysis.stats import holm, paired_result
from symoe_eval.runoutput import MODEL_SETUP, SETUP, TEXT_SETUP

log = logging.getLogger(__name__)


def paired_scores(a: Run, b: Run, task: str, pair_by_doc: bool = False) -> tuple[list[int], list[float], list[float]]:
    """The two runs' scores on the same documents, refusing runs that did not see the same ones;
    with ``pair_by_doc``, prompts that differ (e.g. one run with --apply_chat_template) are
    paired by document with a warning."""
    ta, tb = a.tasks[task], b.tasks[task]
    for run, samples in ((a, ta), (b, tb)):
        if not samples.scores:
            raise SymoeError(
                f"{task}: no scored documents for {samples.scored_by} in {run.results_path} "
                f"(its results report: {', '.join(samples.available) or 'no metric'}); pick one with --metric/--filter"
            )
    if ta.scored_by != tb.scored_by:
        raise SymoeError(f"{task}: the runs are scored by {ta.scored_by} and {tb.scored_by}; pass --metric and --filter")
    if set(ta.scores) != set(tb.scores):
        common = len(set(ta.scores) & set(tb.scores))
        raise SymoeError(
            f"{task}: the runs scored different documents ({len(ta.scores)} vs {len(tb.scores)}, {common} in common); "
            "rerun both with the same --limit and data"
        )
    if any(ta.doc_hash[d] != tb.doc_hash[d] for d in ta.scores):
        doc = next(d for d in sorted(ta.scores) if ta.doc_hash[d] != tb.doc_hash[d])
        raise SymoeError(f"{task}: doc {doc} has a different document in the two runs (doc_hash differs)")
    differing = [d for d in sorted(ta.scores) if ta.prompt_hash[d] != tb.prompt_hash[d]]
    if differing and not pair_by_doc:
        raise SymoeError(f"{task}: doc {differing[0]} has a different prompt in the two runs (prompt_hash differs); "
                         "--pair-by-doc pairs them by document anyway")
    if differing:
        log.warning("%s: %d of %d documents were prompted differently; paired by document as asked",
                    task, len(differing), len(ta.scores))
    docs = sorted(ta.scores)
    return docs, [ta.scores[d] for d in docs], [tb.scores[d] for d in docs]


def setup_differences(a: Run, b: Run) -> list[str]:
    """What differs between two runs' setups that changes texts (docs/engines.md, Reproducibility):
    their accuracy may differ for these reasons too, not only for the method."""
    sa, sb = a.setup, b.setup
    found = [f"{key}: {sa[key]} vs {sb[key]}" for key in TEXT_SETUP if key in sa and key in sb and sa[key] != sb[key]]
    models_a, models_b = sa.get(SETUP.models, {}), sb.get(SETUP.models, {})
    for model in sorted(set(models_a) & set(models_b)):
        found += [f"{model} {key}: {models_a[model][key]} vs {models_b[model][key]}" for key in MODEL_SETUP
                  if key in models_a[model] and key in models_b[model] and models_a[model][key] != models_b[model][key]]
    return found


def compare_runs(a: Run, b: Run, tasks: list[str] | None = None, seed: int = 0, pair_by_doc: bool = False) -> dict:
    shared = sorted(set(a.tasks) & set(b.tasks))
    chosen = tasks or shared
    missing = [t for t in chosen if t not in shared]
    if missing or not chosen:
        def listed(run: Run) -> str:
            return ", ".join(sorted(run.tasks)) or "none with samples (run lm_eval with --log_samples)"

        asked = f"tasks {', '.join(missing)} are not in both runs" if missing else "the runs share no task"
        raise SymoeError(f"{asked}: A has {listed(a)}; B has {listed(b)}")
    rows, pooled_a, pooled_b = [], [], []
    for task in chosen:
        _, sa, sb = paired_scores(a, b, task, pair_by_doc)
        rows.append(paired_result(task, sa, sb, seed=seed))
        rows[-1].scored_by = a.tasks[task].scored_by
        pooled_a += sa
        pooled_b += sb
    for row, adjusted in zip(rows, holm([r.mcnemar_p for r in rows])):
        row.holm_p = adjusted
    overall = paired_result("overall", pooled_a, pooled_b, seed=seed)
    return {
        "setup_differences": setup_differences(a, b),
        "run_a": {"label": a.label, "path": str(a.results_path)},
        "run_b": {"label": b.label, "path": str(b.results_path)},
        "paired_docs": overall.n,
        "tasks": [r.to_dict() for r in rows],
        "overall": overall.to_dict(),
    }


COLUMNS = ("task", "scored by", "n", "acc A", "acc B", "A - B [95% CI]", "McNemar p", "Holm p", "perm. p")


def p_text(p: float) -> str:
    """A p-value as ``symoe compare`` prints it (and the report's two-runs view shows it)."""
    return f"{p:.3g}"


def _cells(row: dict) -> list[str]:
    holm_p = "" if row.get("holm_p") is None else p_text(row["holm_p"])
    return [row["name"], row.get("scored_by", ""), str(row["n"]), f"{row['accuracy_a']:.1%}", f"{row['accuracy_b']:.1%}",
            f"{row['difference']:+.1%} [{row['ci_low']:+.1%}, {row['ci_high']:+.1%}]",
            f"{p_text(row['mcnemar_p'])} ({row['only_a']}:{row['only_b']})", holm_p, p_text(row["permutation_p"])]


def render(report: dict, style: str = "table") -> str:
    if style == "json":
        return json.dumps(report, indent=1)
    rows = [_cells(r) for r in report["tasks"]] + [_cells(report["overall"])]
    head = [f"A = {report['run_a']['label']}", f"B = {report['run_b']['label']}",
            f"{report['paired_docs']} paired documents; McNemar counts are (A right only : B right only)"]
    head += [f"setup differs: {d}" for d in report.get("setup_differences", [])]
    if style == "markdown":
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join([f"- {h}" for h in head] + [""] + lines) + "\n"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(head + ["", fmt.format(*COLUMNS)] + [fmt.format(*r) for r in rows]) + "\n"
