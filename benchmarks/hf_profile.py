"""Where the transformers engine's time goes on the vLLM benchmark's calls.

The same 40 symoe_demo requests as ``vllm_cpu.py`` (sampled at T=0.7 with per-request seeds, or
greedy), one expert of tiny-cpu, batch size 8, run once under cProfile. Each call of a function
named in BUCKETS is charged to its bucket (cumulative time, outermost bucket first), so the
table splits the engine's generate time into the model's forward pass (and, inside it, the KV
cache's update and the attention) and each overhead around it; "rest" is what no bucket names
(the decoding loop itself, padding, bookkeeping). Run it on an older checkout (``PYTHONPATH=<its
root>``) for the breakdown before a change.
Usage: python benchmarks/hf_profile.py [--expert smollm2-135m] [--greedy] [--out FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from pathlib import Path

from vllm_cpu import demo_requests

from symoe_eval.engines import make_engine
from symoe_eval.pools.schema import load_pool

# bucket -> (file suffix, function name) of the functions whose cumulative time it takes; the
# engine's continuous loop (engines/continuous.py) and transformers' generate() path both covered
BUCKETS = {
    "forward passes": [("module.py", "_call_impl")],
    "  of which linear layers": [("linear.py", "forward"), ("continuous.py", "packed_linear")],
    "  of which attention": [("sdpa_attention.py", "sdpa_attention_forward"), ("continuous.py", "rows_attention")],
    "  of which KV cache writes": [("cache_utils.py", "update"), ("continuous.py", "update")],
    "prompts prefilled alone (continuous loop)": [("continuous.py", "_admit")],
    "sampling (per-row seeded draw)": [("hf.py", "__call__"), ("continuous.py", "draw")],
    "stop strings": [("stopping_criteria.py", "__call__"), ("continuous.py", "_stopped")],
    "progress streamer": [("hf.py", "put")],
    "KV rows selected or moved": [("cache_utils.py", "batch_select_indices"), ("continuous.py", "copy")],
    "texts decoded": [("hf.py", "_completion")],
}
OVERLAPPING = ("prompts prefilled alone (continuous loop)",)  # made of forward passes: not added to "rest"


def bucket_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds per bucket; the outermost call of a function only (cProfile's ct)."""
    out = dict.fromkeys(BUCKETS, 0.0)
    for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items():
        for bucket, names in BUCKETS.items():
            if any(filename.endswith(suffix) and function == name for suffix, name in names):
                out[bucket] += cumulative
    return out


def profile(expert: str, greedy: bool, new_tokens: int) -> tuple[float, int, dict[str, float]]:
    spec = load_pool("tiny-cpu").expert(expert)
    requests = demo_requests(new_tokens, temperature=0.0 if greedy else 0.7)
    engine = make_engine(spec, "hf", batch_size=8)
    engine.load()
    engine.generate(requests[:8])  # warm-up: first-call allocations and kernel choices
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    out = engine.generate(requests)
    profiler.disable()
    seconds = time.perf_counter() - start
    engine.unload()
    return seconds, sum(c.num_tokens for c in out), bucket_seconds(pstats.Stats(profiler))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expert", default="smollm2-135m")
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    seconds, tokens, buckets = profile(args.expert, args.greedy, args.new_tokens)
    named = sum(v for k, v in buckets.items() if not k.startswith(" ") and k not in OVERLAPPING)
    lines = [f"hf engine, {args.expert}, 40 symoe_demo requests, {'greedy' if args.greedy else 'T=0.7'}, "
             f"{args.new_tokens} new tokens, batch size 8, {os.cpu_count()} CPU cores, under cProfile: "
             f"{seconds:.1f} s, {tokens} tokens, {tokens / seconds:.1f} tok/s", "",
             "| part | seconds | share |", "| --- | ---: | ---: |"]
    for bucket, value in [*buckets.items(), ("rest", seconds - named)]:
        lines.append(f"| {bucket} | {value:.2f} | {100 * value / seconds:.1f}% |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
