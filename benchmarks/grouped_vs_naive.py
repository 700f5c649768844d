"""Why Symbolic-MoE is a systems problem: expert-grouped batching versus naive per-question routing.

Runs the real symoe model on N validation questions (grouped: each model loaded once, each
group one batch), then replays exactly the same calls naively, question by question, loading the
keyword model, each recruited expert and the aggregator for every question and generating one
question at a time. No generation cache in either run. Prints loads, wall time and their ratios.

Usage: python benchmarks/grouped_vs_naive.py [--pool tiny-cpu] [--task symoe_gpqa] [--questions 12]
       [--max-gen-toks 48] [--profiles DIR]   (needs SYMOE_DATA_DIR and a profile for the task)
"""

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from lm_eval.api.instance import Instance

from symoe_eval.harness.lm import lm_class
from symoe_eval.symbolic.aggregation import aggregate_prompt
from symoe_eval.engines import GenerationRequest, SamplingParams, make_engine
from symoe_eval.harness.profiling import load_validation
from symoe_eval.symbolic.skills import KEYWORD_MAX_GEN_TOKS, KEYWORD_SAMPLES, keyword_prompt


def grouped_run(args, val, log_dir: Path) -> tuple[float, dict, list[dict]]:
    lm = lm_class("symoe")(pool=args.pool, profiles=args.profiles, cache_dir="none", max_gen_toks=args.max_gen_toks,
                           log_dir=str(log_dir), batch_size=args.batch_size)
    kwargs = {"until": [], "do_sample": True, "temperature": 0.7, "max_gen_toks": args.max_gen_toks}
    requests = [Instance("generate_until", doc, (prompt, kwargs), i, metadata=(val.task, i, 1))
                for i, (doc, prompt) in enumerate(zip(val.docs, val.prompts))]
    start = time.perf_counter()
    lm.generate_until(requests, disable_tqdm=True)
    seconds = time.perf_counter() - start
    summary = json.loads(next(log_dir.glob("routing_summary_*.json")).read_text())
    rows = [json.loads(line) for line in open(summary["routing_log"])]
    return seconds, summary, rows


def naive_run(args, val, rows: list[dict], keyword_model: str) -> tuple[float, int]:
    from symoe_eval.pools.schema import load_pool

    pool = load_pool(args.pool)
    loads = 0

    def one_model(name: str, requests: list[GenerationRequest]) -> list[str]:
        nonlocal loads
        with make_engine(pool.expert(name), "hf", batch_size=1) as engine:
            loads += 1
            return [c.text for c in engine.generate(requests)]

    params = SamplingParams(temperature=0.7, max_tokens=args.max_gen_toks, seed=0)
    start = time.perf_counter()
    for doc, prompt, row in zip(val.docs, val.prompts, rows):
        kw_params = SamplingParams(temperature=0.7, max_tokens=KEYWORD_MAX_GEN_TOKS, seed=0)
        one_model(keyword_model, [GenerationRequest.user(keyword_prompt(doc["question"], pool.keyword_examples), kw_params, s)
                                  for s in range(KEYWORD_SAMPLES)])
        answers = [one_model(e, [GenerationRequest.user(prompt, params, slot)])[0] for slot, e in enumerate(row["experts"])]
        one_model(row["aggregator"], [GenerationRequest.user(aggregate_prompt(prompt, answers), params)])
    return time.perf_counter() - start, loads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", default="tiny-cpu")
    parser.add_argument("--task", default="symoe_gpqa")
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--max-gen-toks", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--profiles", default=None)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    val = load_validation(args.task, args.questions, None)
    with tempfile.TemporaryDirectory() as tmp:
        grouped_s, summary, rows = grouped_run(args, val, Path(tmp))
    naive_s, naive_loads = naive_run(args, val, rows, summary["keyword_model"])
    calls = sum(m["calls"] for m in summary["models"].values())
    print(f"{len(rows)} questions of {args.task}, pool {args.pool}, k={summary['k']}, {calls} generations, "
          f"max {args.max_gen_toks} new tokens, no cache")
    print(f"grouped (symoe scheduler): {summary['total_loads']} model loads, {grouped_s:.1f} s")
    print(f"naive per-question:        {naive_loads} model loads, {naive_s:.1f} s")
    print(f"ratio naive/grouped: loads {naive_loads / summary['total_loads']:.1f}x, wall time {naive_s / grouped_s:.2f}x")


if __name__ == "__main__":
    main()
