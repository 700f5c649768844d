"""Measure each expert of a pool on this machine: file size, load times, tokens/s at batch 1 and 8.

Prints a markdown table for the registry's `measured` fields and docs/pools.md. Greedy decoding
of a fixed prompt; tokens/s counts the tokens actually generated (rows that end early count less).
Usage: python benchmarks/cpu_models.py [--pool tiny-cpu] [--new-tokens 64]
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from symoe_eval.engines import GenerationRequest, SamplingParams
from symoe_eval.engines.base import pick_dtype
from symoe_eval.engines.hf import HFEngine
from symoe_eval.pools.schema import load_pool
from symoe_eval.pools.weights import resolve_weights

PROMPT = "Explain step by step why the sum of two odd numbers is always even."


def tokens_per_second(engine: HFEngine, batch: int, new_tokens: int) -> float:
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens)
    engine.batch_size = batch
    engine.generate([GenerationRequest.user(PROMPT, params)] * batch)  # warm-up
    start = time.perf_counter()
    out = engine.generate([GenerationRequest.user(PROMPT, params)] * batch)
    return sum(c.num_tokens for c in out) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", default="tiny-cpu")
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    pool = load_pool(args.pool)
    scratch = Path(tempfile.mkdtemp(prefix="symoe-bench-"))
    os.environ["SYMOE_CACHE_DIR"] = str(scratch)  # cold caches: the first load de-quantizes
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {pick_dtype('auto', 'cpu')}")
    print("| expert | model | package(s) | file | first load (GGUF) | reload (dense copy) | tok/s b1 | tok/s b8 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    try:
        for spec in pool.experts.values():
            folder, gguf = resolve_weights(spec)
            size = (Path(folder) / gguf).stat().st_size / 1e6 if gguf else float("nan")
            timings = []
            for _ in range(2):
                engine = HFEngine(spec)
                start = time.perf_counter()
                engine.load()
                timings.append(time.perf_counter() - start)
                if len(timings) == 2:
                    b1 = tokens_per_second(engine, 1, args.new_tokens)
                    b8 = tokens_per_second(engine, 8, args.new_tokens)
                engine.unload()
            packages = ", ".join(spec.source.packages[:1]) + (" (+parts)" if len(spec.source.packages) > 1 else "")
            print(f"| {spec.name} | {spec.model} | {packages} | {size:.0f} MB | {timings[0]:.1f} s "
                  f"| {timings[1]:.1f} s | {b1:.1f} | {b8:.1f} |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
