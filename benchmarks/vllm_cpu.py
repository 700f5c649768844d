"""vLLM on this CPU against transformers, and our vLLM engine against calling vLLM directly.

One run, the same requests for every row: the symoe_demo test questions in the paper's prompt,
sampled at T=0.7 with per-request seeds, ``--new-tokens`` each, one expert of tiny-cpu. Rows:
- ``hf``: our transformers engine (what ``engine=auto`` picks on a CPU);
- ``vllm (ours)``: our VLLMEngine (in-process engine core, eager, KV cache sized for CPU);
- ``vllm.LLM.generate``: the same loaded LLM called directly with the same token ids and
  SamplingParams (and vLLM's progress bar, as ours shows it), alternated with ours: the adapter's
  overhead (prompt building, sampling params, stats); its own host work is also timed alone;
- ``vllm multiprocess``: vLLM's default mode (``VLLM_ENABLE_V1_MULTIPROCESSING=1``, a separate
  engine-core process) in a child process, called directly: what reproducible seeds cost;
  ``same texts`` says whether its two identical calls drew the same texts.
Usage (in the .ci/vllm-venv venv): python benchmarks/vllm_cpu.py [--expert smollm2-135m] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from symoe_eval.engines import GenerationRequest, SamplingParams, make_engine
from symoe_eval.engines.base import chat_token_ids
from symoe_eval.pools.schema import load_pool
from symoe_eval.paths import tasks_dir

INSTRUCTION = ('\nProvide your step-by-step reasoning first, and then print "The answer is (X)", where X is the '
               "answer choice (one capital letter), at the end of your response.")


def demo_requests(new_tokens: int) -> list[GenerationRequest]:
    docs = json.loads((tasks_dir() / "symoe_demo.json").read_text())["test"]
    params = SamplingParams(temperature=0.7, max_tokens=new_tokens, seed=0)
    return [GenerationRequest.user(f"Question: {d['question']}{INSTRUCTION}", params) for d in docs]


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def engine_row(name: str, spec, requests, backend: str) -> dict:
    engine = make_engine(spec, backend, batch_size=8)
    load_s, _ = timed(engine.load)
    seconds, out = timed(lambda: engine.generate(requests))
    engine.unload()
    return {"row": name, "load_s": load_s, "generate_s": seconds, "tokens": sum(c.num_tokens for c in out)}


def adapter_rows(spec, requests, rounds: int) -> list[dict]:
    """Ours and the direct call on one loaded LLM, alternated after a warm-up; medians."""
    from symoe_eval.engines.vllm import VLLMEngine

    engine = make_engine(spec, "vllm", batch_size=8)
    load_s, _ = timed(engine.load)
    tokenizer = engine.llm.get_tokenizer()
    prompts = [{"prompt_token_ids": chat_token_ids(tokenizer, r)} for r in requests]
    params = [VLLMEngine.sampling_params(r) for r in requests]
    direct = lambda: engine.llm.generate(prompts, params, use_tqdm=True)  # noqa: E731
    ours = lambda: engine.generate(requests)  # noqa: E731
    host_s, _ = timed(lambda: [({"prompt_token_ids": chat_token_ids(tokenizer, r)}, VLLMEngine.sampling_params(r))
                               for r in requests])
    direct()  # warm-up: prefix cache and kernels are then alike for both
    times = {"ours": [], "direct": []}
    for _ in range(rounds):
        for name, fn in (("ours", ours), ("direct", direct)):
            seconds, out = timed(fn)
            times[name].append(seconds)
            tokens = sum(c.num_tokens for c in out) if name == "ours" else sum(len(o.outputs[0].token_ids) for o in out)
    engine.unload()
    return [{"row": "vllm (ours)", "load_s": load_s, "generate_s": statistics.median(times["ours"]), "tokens": tokens,
             "host_s": host_s, "spread": (min(times["direct"]), max(times["direct"]))},
            {"row": "vllm.LLM.generate", "load_s": load_s, "generate_s": statistics.median(times["direct"]), "tokens": tokens}]


def multiprocess_child(expert: str, new_tokens: int) -> None:
    """In vLLM's default mode: load, then the same call twice; prints one JSON line."""
    from symoe_eval.engines.vllm import VLLMEngine

    spec = load_pool("tiny-cpu").expert(expert)
    requests = demo_requests(new_tokens)
    engine = make_engine(spec, "vllm", batch_size=8)
    load_s, _ = timed(engine.load)
    tokenizer = engine.llm.get_tokenizer()
    prompts = [{"prompt_token_ids": chat_token_ids(tokenizer, r)} for r in requests]
    params = [VLLMEngine.sampling_params(r) for r in requests]
    first = engine.llm.generate(prompts, params, use_tqdm=False)
    seconds, second = timed(lambda: engine.llm.generate(prompts, params, use_tqdm=False))
    engine.unload()
    texts = [[o.outputs[0].text for o in out] for out in (first, second)]
    print("ROW " + json.dumps({"row": "vllm multiprocess", "load_s": load_s, "generate_s": seconds,
                               "tokens": sum(len(o.outputs[0].token_ids) for o in second),
                               "same_texts": texts[0] == texts[1]}), flush=True)


def multiprocess_row(expert: str, new_tokens: int) -> dict:
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    done = subprocess.run([sys.executable, __file__, "--child", "--expert", expert, "--new-tokens", str(new_tokens)],
                          env=env, capture_output=True, text=True, timeout=1800)
    line = next((x for x in done.stdout.splitlines() if x.startswith("ROW ")), None)
    if line is None:
        raise SystemExit(f"multiprocess child failed: {done.stderr[-2000:]}")
    return json.loads(line[4:])


def table(rows: list[dict]) -> str:
    base = next(r for r in rows if r["row"] == "vllm.LLM.generate")
    lines = ["| engine | load s | generate s | tokens | tok/s | x direct vLLM (time) | same texts twice |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['load_s']:.1f} | {r['generate_s']:.1f} | {r['tokens']} | "
                     f"{r['tokens'] / r['generate_s']:.1f} | {r['generate_s'] / base['generate_s']:.3f} | "
                     f"{r.get('same_texts', '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expert", default="smollm2-135m")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return multiprocess_child(args.expert, args.new_tokens)
    spec = load_pool("tiny-cpu").expert(args.expert)
    requests = demo_requests(args.new_tokens)
    rows = [engine_row("hf", spec, requests, "hf"), *adapter_rows(spec, requests, args.rounds),
            multiprocess_row(args.expert, args.new_tokens)]
    ours, direct = rows[1]["generate_s"], rows[2]["generate_s"]
    text = (f"{len(requests)} symoe_demo requests, {args.expert}, T=0.7, {args.new_tokens} new tokens, batch size 8, "
            f"{os.cpu_count()} CPU cores; vllm rows: median of {args.rounds} alternated calls\n\n{table(rows)}\n\n"
            f"adapter overhead: {100 * (ours - direct) / direct:+.1f}% of the direct call's time (the direct call "
            f"itself ranged {rows[1]['spread'][0]:.1f}-{rows[1]['spread'][1]:.1f} s over the rounds); the adapter's "
            f"own host work (prompt ids, sampling params) {1000 * rows[1]['host_s']:.0f} ms = "
            f"{100 * rows[1]['host_s'] / direct:.2f}%; "
            f"vLLM (ours) / hf tokens/s: {(rows[1]['tokens'] / ours) / (rows[0]['tokens'] / rows[0]['generate_s']):.2f}")
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
