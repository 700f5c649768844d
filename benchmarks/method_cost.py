"""What Symbolic-MoE costs next to the baselines it must beat, and where its time goes.

On one pool and the same validation questions (GPQA and AIME), each method runs in a fresh process
with a cold generation cache, one after another: ``symoe`` (the paper), ``symoe`` with
``aggregate=disagree``, ``moa`` with 3 layers, ``discussion`` with 2 rounds, and naive per-question
loading, which replays exactly the calls ``symoe`` made, question by question, loading each model
the question needs at each stage (the charitable naive: a question's calls to one model share a
batch). Printed per method: wall seconds (model construction + ``generate_until``), ratio to
``moa``, model loads (distinct models), calls, prompt and generated tokens per question, the
orchestration overhead (wall minus the engines' load and generate seconds: planning, routing,
embeddings, prompt building, caching, logging) and accuracy by the task's own grader; then the
targets, the stage times of ``symoe``, and the consensus-skip lever with the paired test that
``symoe compare`` uses. ``--ablate-prefill`` adds a ``symoe`` run whose engine prefills repeated
prompts row by row (the engine before the shared-prefill lever). ``--merged`` adds a ``symoe`` run
on a copy of the pool whose LoRA experts are full models, each adapter merged into its base
(peft's ``merge_and_unload``; built before the clock starts): what the experts would cost without
LoRA. ``--spread`` takes the questions evenly from each validation split instead of its first ones
(symoe_skills' validation split is sorted by skill).

Usage: python benchmarks/method_cost.py [--pool tiny-cpu] [--tasks symoe_gpqa,symoe_aime24] [--questions 8]
       [--spread] [--max-gen-toks 256] [--batch-size 8] [--ablate-prefill] [--merged]
       [--out results/benchmarks/method_cost.txt]
       (needs SYMOE_DATA_DIR; each task needs a committed profile for the pool)
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = {  # row name -> (method, model_args)
    "symoe": ("symoe", {}),
    "symoe aggregate=disagree": ("symoe", {"aggregate": "disagree"}),
    "moa layers=3": ("moa", {"layers": 3}),
    "discussion rounds=2": ("discussion", {"rounds": 2}),
}
ABLATION = "symoe, prefill per row"
MERGED = "symoe, adapters merged"


def questions(args):
    """``args.questions`` validation questions of each task: the first ones, or with ``--spread``
    evenly spaced over the split."""
    from dataclasses import replace

    from symoe_eval.harness.profiling import load_validation

    sets = [load_validation(task, None if args.spread else args.questions, None) for task in args.tasks.split(",")]
    if not args.spread:
        return sets
    picked = []
    for val in sets:
        index = [i * len(val.docs) // args.questions for i in range(min(args.questions, len(val.docs)))]
        picked.append(replace(val, docs=[val.docs[i] for i in index], prompts=[val.prompts[i] for i in index],
                              questions=[val.questions[i] for i in index]))
    return picked


def instances(sets):
    from lm_eval.api.instance import Instance

    return [Instance("generate_until", doc, (prompt, dict(val.gen_kwargs)), i, metadata=(val.task, i, 1))
            for val in sets for i, (doc, prompt) in enumerate(zip(val.docs, val.prompts))]


def grades(sets, texts: list[str]) -> list[int]:
    graded, start = [], 0
    for val in sets:
        graded += [int(val.grade(i, t)) for i, t in enumerate(texts[start : start + len(val.docs)])]
        start += len(val.docs)
    return graded


def totals(models: dict) -> dict:
    keys = ("loads", "calls", "prompt_tokens", "generated_tokens", "load_seconds", "generate_seconds", "adapter_switches")
    out = {k: sum(m.get(k, 0) for m in models.values()) for k in keys}
    out["distinct"] = sum(1 for m in models.values() if m["loads"])
    return out


def record_calls(into: list) -> None:
    """Keep every call the scheduler runs, in order, for the naive replay."""
    from symoe_eval.runtime.scheduling import Scheduler

    run = Scheduler.run

    def recording(self, stage, calls, later=()):
        into.extend((stage, c) for c in calls)
        return run(self, stage, calls, later)

    Scheduler.run = recording


def prefill_per_row() -> None:
    """The engine without the shared-prefill lever: every row is prefilled on its own, on the CPU's
    continuous path and on the micro-batch path alike."""
    from symoe_eval.engines.continuous import ContinuousDecoder
    from symoe_eval.engines.hf import HFEngine

    ContinuousDecoder.share_prefills = False
    HFEngine._shared_prefill = lambda self, ids, mask, rows: {"input_ids": ids[rows], "attention_mask": mask[rows]}


def run_method(name: str, args, work: Path) -> dict:
    from symoe_eval.harness.lm import lm_class

    method, extra = METHODS.get(name, ("symoe", {}))
    cls = lm_class(method)
    if name == ABLATION:
        prefill_per_row()
    sets = questions(args)
    pool = str(work.parent / "merged" / "pool.yaml") if name == MERGED else args.pool
    calls: list = []
    record_calls(calls)
    start = time.perf_counter()
    lm = cls(pool=pool, cache_dir=str(work / "cache"), log_dir=str(work / "logs"), batch_size=args.batch_size,
             max_gen_toks=args.max_gen_toks, seed=0, **extra)
    texts = lm.generate_until(instances(sets), disable_tqdm=True)
    wall = time.perf_counter() - start
    summary = json.loads(next((work / "logs").glob("routing_summary_*.json")).read_text())
    if name == "symoe":
        (work.parent / "symoe_calls.pkl").write_bytes(pickle.dumps(calls))
    return {"wall": wall, **totals(summary["models"]), "questions": len(texts), "correct": grades(sets, texts),
            "stages": {s["name"]: s["seconds"] for s in summary["stages"]},
            "consensus": summary.get("consensus_answers"), "team": summary.get("proposers") or summary.get("agents")}


def question_of(stage: str, key, by_text: dict) -> tuple:
    return by_text[key[0]] if stage == "keywords" else key[0] if stage == "experts" else key


def run_naive(args, work: Path) -> dict:
    """symoe's own calls, question by question: each stage loads the models the question needs."""
    from symoe_eval.engines import make_engine
    from symoe_eval.pools.schema import load_pool

    pool = load_pool(args.pool)
    calls = pickle.loads((work.parent / "symoe_calls.pkl").read_bytes())
    sets = questions(args)
    keys = [(val.task, i, 0) for val in sets for i in range(len(val.docs))]
    by_text = {q: (val.task, i, 0) for val in sets for i, q in enumerate(val.questions)}
    plan: dict = {k: {} for k in keys}  # question -> stage -> model -> calls
    for stage, call in calls:
        plan[question_of(stage, call.key, by_text)].setdefault(stage, {}).setdefault(call.expert, []).append(call)
    stats, finals = {}, {}
    start = time.perf_counter()
    for key in keys:
        for stage, groups in plan[key].items():
            for model, group in groups.items():
                with make_engine(pool.expert(model), "hf", batch_size=args.batch_size) as engine:
                    out = engine.generate([c.request for c in group])
                stats.setdefault(model, []).append(engine.stats)
                if stage == "aggregation":
                    finals[key] = out[0].text
    wall = time.perf_counter() - start
    models = {m: {f: sum(getattr(s, f) for s in runs) for f in ("loads", "calls", "prompt_tokens", "generated_tokens",
                                                                  "load_seconds", "generate_seconds", "adapter_switches")}
              for m, runs in stats.items()}
    return {"wall": wall, **totals(models), "questions": len(keys), "correct": grades(sets, [finals[k] for k in keys]),
            "stages": {}, "consensus": None, "team": None}


def merge_adapters(pool_name: str, folder: Path) -> Path:
    """A copy of the pool whose LoRA experts are full models (each adapter merged into its base,
    saved under ``folder``), under the same name so the pool's profiles apply; its YAML's path."""
    import torch
    import yaml
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from symoe_eval.pools.schema import load_pool
    from symoe_eval.pools.weights import loadable_weights, resolve_adapter

    pool = load_pool(pool_name)
    data = yaml.safe_load(pool.path.read_text())
    entries = {e["name"]: e for e in data["experts"]}
    for name, spec in pool.experts.items():
        if spec.adapter is None:
            continue
        base_folder, _ = loadable_weights(spec, build_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.bfloat16)
        merged = PeftModel.from_pretrained(model, resolve_adapter(spec)).merge_and_unload()
        merged.save_pretrained(folder / name)
        AutoTokenizer.from_pretrained(base_folder).save_pretrained(folder / name)
        base = entries[entries[name].pop("base")]
        entries[name].pop("adapter")
        entries[name].update(source={"path": str(folder / name)},
                             **{k: copy.deepcopy(base[k]) for k in ("engine_kwargs", "generation") if k in base})
    data["description"] = f"{data.get('description', pool.name)}; adapters merged into full models"
    (folder / "pool.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / "pool.yaml"


def one(args) -> None:
    work = Path(args.work) / args.one.replace(" ", "_").replace("=", "-").replace(",", "")
    work.mkdir(parents=True, exist_ok=True)
    result = run_naive(args, work) if args.one == "naive" else run_method(args.one, args, work)
    Path(args.result).write_text(json.dumps(result))


HEADER = ("| method | wall s | x moa | loads (distinct) | adapter switches | load s | generate s | calls/q | prompt tok/q "
          "| generated tok/q | overhead s | accuracy |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


def row(name: str, r: dict, moa: dict) -> str:
    """One markdown table row (docs/results.md quotes the table as printed)."""
    n = r["questions"]
    overhead = r["wall"] - r["load_seconds"] - r["generate_seconds"]
    return (f"| {name} | {r['wall']:.1f} | {r['wall'] / moa['wall']:.2f} | {r['loads']} ({r['distinct']}) "
            f"| {r.get('adapter_switches', 0)} | {r['load_seconds']:.1f} | {r['generate_seconds']:.1f} | {r['calls'] / n:.1f} | {r['prompt_tokens'] / n:.0f} "
            f"| {r['generated_tokens'] / n:.0f} | {overhead:.1f} ({100 * overhead / r['wall']:.1f}%) "
            f"| {sum(r['correct']) / n:.3f} |")


def report(args, results: dict) -> str:
    from symoe_eval.analysis.stats import paired_result

    symoe, moa, naive = results["symoe"], results["moa layers=3"], results["naive"]
    n = symoe["questions"]
    chosen = "evenly spaced" if args.spread else "the first"
    lines = [
        f"method_cost: pool {args.pool}, {args.questions} validation questions ({chosen}) each of "
        f"{args.tasks.replace(',', ', ')} ({n} in all), max {args.max_gen_toks} new tokens, batch size {args.batch_size}, cold generation cache, one process per method",
        f"teams: moa {moa['team']}; discussion {results['discussion rounds=2']['team']}",
        "",
        HEADER,
    ]
    lines += [row(name, r, moa) for name, r in results.items()]
    overhead = (symoe["wall"] - symoe["load_seconds"] - symoe["generate_seconds"]) / symoe["wall"]
    checks = [
        (f"symoe / moa wall time {symoe['wall'] / moa['wall']:.2f} (target <= 0.5)", symoe["wall"] <= 0.5 * moa["wall"]),
        (f"symoe / naive wall time {symoe['wall'] / naive['wall']:.3f} (target <= 0.15)", symoe["wall"] <= 0.15 * naive["wall"]),
        (f"symoe loads {symoe['loads']} = distinct models {symoe['distinct']}", symoe["loads"] == symoe["distinct"]),
        (f"symoe overhead {100 * overhead:.1f}% of wall time (target <= 3%)", overhead <= 0.03),
    ]
    lines += ["", "targets:"] + [f"  [{'met' if ok else 'MISSED'}] {text}" for text, ok in checks]
    lines += ["", "stage seconds (model loads included):"]
    lines += [f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
              for name, r in results.items() if r["stages"]]
    skip = results["symoe aggregate=disagree"]
    paired = paired_result("disagree vs always", skip["correct"], symoe["correct"])
    lines += [
        f"consensus skip: {skip['consensus']} of {n} questions answered without the aggregator "
        f"({skip['calls']} calls vs {symoe['calls']}), wall {skip['wall']:.1f} s vs {symoe['wall']:.1f} s",
        f"  accuracy {paired.accuracy_a:.3f} vs {paired.accuracy_b:.3f}: difference {paired.difference:+.3f}, "
        f"95% CI [{paired.ci_low:+.3f}, {paired.ci_high:+.3f}], McNemar p={paired.mcnemar_p:.3f} "
        f"({paired.only_a} right only with the skip, {paired.only_b} only without)",
    ]
    if ABLATION in results:
        before = results[ABLATION]
        lines.append(f"shared prefill: keywords stage {before['stages']['keywords']:.1f} s -> {symoe['stages']['keywords']:.1f} s, "
                     f"experts {before['stages']['experts']:.1f} s -> {symoe['stages']['experts']:.1f} s, "
                     f"wall {before['wall']:.1f} s -> {symoe['wall']:.1f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", default="tiny-cpu")
    parser.add_argument("--tasks", default="symoe_gpqa,symoe_aime24", help="comma-separated; each needs a profile")
    parser.add_argument("--questions", type=int, default=8, help="per task")
    parser.add_argument("--spread", action="store_true", help="questions evenly spaced over each validation split")
    parser.add_argument("--merged", action="store_true", help="add symoe on the pool with its adapters merged")
    parser.add_argument("--max-gen-toks", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--ablate-prefill", action="store_true")
    parser.add_argument("--out", default=None, help="also write the report here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args)
    names = list(METHODS) + ["naive"] + ([ABLATION] if args.ablate_prefill else []) + ([MERGED] if args.merged else [])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.merged:
            merge_adapters(args.pool, Path(tmp) / "merged")
        for name in names:
            result = Path(tmp) / "result.json"
            command = [sys.executable, __file__, "--one", name, "--work", tmp, "--result", str(result),
                       "--pool", args.pool, "--tasks", args.tasks, "--questions", str(args.questions),
                       "--max-gen-toks", str(args.max_gen_toks), "--batch-size", str(args.batch_size)]
            command += ["--spread"] if args.spread else []
            with open(Path(tmp) / "stderr.log", "w+") as log:
                if subprocess.run(command, stderr=log).returncode:
                    log.seek(0)
                    sys.exit(f"{name} failed:\n" + "".join(log.readlines()[-20:]))
            results[name] = json.loads(result.read_text())
            print(f"{name}: {results[name]['wall']:.1f} s", file=sys.stderr, flush=True)
    text = report(args, results)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
