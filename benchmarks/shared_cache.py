"""Two runs at once on one generation cache against the same two runs on caches of their own.

The same command twice, started together (``lm_eval --model symoe`` on ``symoe_demo``, tiny-cpu,
``threads=1`` and ``OMP_NUM_THREADS=1`` each, as two model processes on one machine must):
- ``own caches``: what two runs cost when nothing is shared (each generates everything);
- ``shared cache``: both on one cache; per model one generates while the other waits on the
  model's lock, then reads the records instead of generating them again.
Rows: wall time of the pair, generations written, and whether both runs returned the same texts.
Usage: python benchmarks/shared_cache.py [--limit 4] [--max-gen-toks 32] > results/benchmarks/shared_cache.txt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path


def start(folder: Path, cache: Path, limit: int, tokens: int) -> subprocess.Popen:
    args = f"pool=tiny-cpu,max_gen_toks={tokens},threads=1,cache_dir={cache}"
    command = ["lm_eval", "--model", "symoe", "--model_args", args, "--tasks", "symoe_demo", "--limit", str(limit),
               "--batch_size", "8", "--output_path", str(folder)]
    return subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def final_texts(folder: Path) -> list[str]:
    summary = json.loads(next(folder.glob("routing_summary_*.json")).read_text())
    return [json.loads(line)["final_text"] for line in open(summary["routing_log"])]


def pair(root: Path, shared: bool, limit: int, tokens: int) -> dict:
    caches = [root / "cache"] * 2 if shared else [root / "cache-a", root / "cache-b"]
    began = time.perf_counter()
    runs = [start(root / f"run-{i}", cache, limit, tokens) for i, cache in enumerate(caches)]
    assert all(run.wait() == 0 for run in runs), "a run failed"
    wall = time.perf_counter() - began
    written = sum(len(p.read_text().splitlines()) for cache in set(caches) for p in cache.glob("*.jsonl"))
    return {"wall": wall, "written": written, "same": final_texts(root / "run-0") == final_texts(root / "run-1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--max-gen-toks", type=int, default=32)
    args = parser.parse_args()
    rows = {}
    for name, shared in (("own caches", False), ("shared cache", True)):
        with tempfile.TemporaryDirectory() as folder:
            rows[name] = pair(Path(folder), shared, args.limit, args.max_gen_toks)
    print(f"# two runs at once: symoe on symoe_demo --limit {args.limit}, {args.max_gen_toks} tokens, tiny-cpu, "
          f"threads=1 each, {os.cpu_count()} cores")
    print(f"{'':14}{'wall s':>8}{'generations':>13}  same texts")
    for name, row in rows.items():
        print(f"{name:14}{row['wall']:8.1f}{row['written']:13d}  {row['same']}")
    own, shared = rows["own caches"], rows["shared cache"]
    print(f"shared / own: wall {shared['wall'] / own['wall']:.2f}, generations {shared['written'] / own['written']:.2f}")


if __name__ == "__main__":
    main()
