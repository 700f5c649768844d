"""Symbolic-MoE on a skill its profile has never seen: the specialists pool with one subject's
validation questions held out of the profile.

The held-out profile is rebuilt from the committed profile's own validation records
(``annotations.jsonl``) without that subject's questions, with ``symbolic.profiles``' builders and
the committed aggregator; it is written under ``OUT/profiles``. Then ``symoe`` answers the
subject's 25 test questions with it (``--samples``), by the paper's router, ``routing=records``,
``routing=task`` and ``routing=random``, each run with a cold generation cache of its own. The
same questions answered with the full profile are read from the leaderboard's runs
(``benchmarks/specialists_leaderboard.sh``), and every arm is paired with them (exact McNemar).

    python benchmarks/specialists_unseen.py --runs results/specialists [--subject reversal]
        [--out /tmp/specialists_unseen] [--output results/benchmarks/specialists_unseen.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from symoe_eval import paths
from symoe_eval.paths import tasks_dir
from symoe_eval.analysis.runs import load_run
from symoe_eval.analysis.stats import accuracy_ci, mcnemar_exact
from symoe_eval.symbolic.profiles import (
    ANNOTATIONS_FILE,
    TaskProfile,
    build_expert_profiles,
    count_keywords,
    load_profile,
    render_report,
    save_profile,
)

TASK, POOL = "symoe_skills", "specialists"
ARMS = {"instance": "symoe", "records": "symoe-records", "task": "symoe-task", "random": "symoe-random"}


def held_out_profile(subject: str, root: Path) -> int:
    """The committed profile without ``subject``'s validation questions, saved under ``root``; how
    many validation questions it keeps."""
    full = load_profile(paths.profiles_root(), POOL, TASK)
    folder = paths.profiles_root() / POOL / TASK
    lines = (folder / ANNOTATIONS_FILE).read_text().splitlines()
    validation = json.loads((tasks_dir() / f"{TASK}.json").read_text())["train"]
    kept = [json.loads(line) for line, doc in zip(lines, validation) if doc["category"] != subject]
    keywords = [row["keywords"] for row in kept]
    experts = build_expert_profiles(keywords, {e: [row["right"][e] for row in kept] for e in full.experts})
    profile = TaskProfile(TASK, POOL, experts, full.aggregator, aggregator_choice=f"the full profile's ({full.aggregator_choice})",
                          keywords=sorted({k for kws in keywords for k in kws}), keyword_counts=count_keywords(keywords, 1),
                          provenance={**full.provenance, "questions": len(kept), "held_out": subject})
    saved = save_profile(profile, root, render_report(profile))
    (saved / ANNOTATIONS_FILE).write_text("".join(json.dumps(row) + "\n" for row in kept))
    return len(kept)


def run_arm(routing: str, docs: list[int], profiles: Path, out: Path) -> tuple[dict[int, float], float]:
    """One held-out arm through the stock CLI: per-doc scores and wall seconds."""
    folder = out / routing
    args = f"pool={POOL},routing={routing},profile=own,profiles={profiles},cache_dir={folder / 'cache'}"
    start = time.perf_counter()
    subprocess.run(["lm_eval", "--model", "symoe", "--model_args", args, "--tasks", TASK, "--samples",
                    json.dumps({TASK: docs}), "--batch_size", "8", "--output_path", str(folder), "--log_samples"],
                   check=True, capture_output=True)
    return load_run(folder).tasks[TASK].scores, time.perf_counter() - start


def row(name: str, scores: list[float], own: list[float]) -> str:
    low, high = accuracy_ci(scores)
    p, only_arm, only_own = mcnemar_exact(scores, own)
    return (f"| {name} | {sum(scores):.0f}/{len(scores)} ({sum(scores) / len(scores):.0%}, [{low:.0%}, {high:.0%}]) "
            f"| {sum(scores) - sum(own):+.0f} | {p:.3g} ({only_arm}:{only_own}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="the leaderboard's run folders (OUT of specialists_leaderboard.sh)")
    parser.add_argument("--subject", default="reversal", choices=["addition", "reversal", "sorting", "comparison"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/specialists_unseen"))
    parser.add_argument("--output", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    test = json.loads((tasks_dir() / f"{TASK}.json").read_text())["test"]
    docs = [i for i, doc in enumerate(test) if doc["category"] == args.subject]
    kept = held_out_profile(args.subject, args.out / "profiles")
    lines = [f"{TASK} on pool {POOL}: the {len(docs)} {args.subject} test questions, routed with a profile built from "
             f"the {kept} validation questions of the other three skills (no {args.subject} question in it), against "
             "the same questions answered with the full profile in the leaderboard's runs. Paired: exact McNemar "
             "(right only in this arm : only with the full profile).", "",
             "| arm | right | vs full profile, instance (questions) | McNemar p |", "| --- | --- | --- | --- |"]
    own = [load_run(args.runs / "symoe").tasks[TASK].scores[d] for d in docs]
    for routing, leaderboard_run in ARMS.items():
        full = [load_run(args.runs / leaderboard_run).tasks[TASK].scores[d] for d in docs]
        lines.append(row(f"{routing}, full profile", full, own))
        scores, seconds = run_arm(routing, docs, args.out / "profiles", args.out)
        lines.append(row(f"{routing}, {args.subject} held out ({seconds:.0f} s)", [scores[d] for d in docs], own))
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
