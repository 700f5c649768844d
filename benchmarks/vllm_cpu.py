"""Our transformers engine against vLLM on this CPU, and our vLLM engine against calling vLLM directly.

One run, the same requests for every row: the 40 symoe_demo test questions in the paper's prompt,
``--new-tokens`` each, sampled at T=0.7 with per-request seeds and greedy, for each expert named
(tiny-cpu). Rows per expert and sampling:
- ``hf (continuous)``: our transformers engine as ``engine=auto`` runs it on a CPU (the
  continuous loop, ``--batch_size`` rows);
- ``hf, batch N (continuous)``: the same with N rows (``--hf-batch``: vLLM decodes every request
  it holds at once, so this is the engine at vLLM's batch);
- ``hf (micro-batches)``: the engine's other path (transformers' generate over left-padded
  micro-batches, as on a GPU), forced here; what the CPU path was before the continuous loop;
- ``vllm (ours)``: our VLLMEngine (in-process engine core, eager, KV cache sized for CPU);
- ``vllm.LLM.generate``: the same loaded LLM called directly with the same token ids and
  SamplingParams (and vLLM's progress bar, as ours shows it), alternated with ours: the adapter's
  overhead; its own host work is also timed alone;
- ``vllm multiprocess`` (``--multiprocess``, smollm2 sampled only): vLLM's default mode
  (``VLLM_ENABLE_V1_MULTIPROCESSING=1``) in a child process, called directly: what reproducible
  seeds cost; ``same texts`` says whether its two identical calls drew the same texts.
The last column is vLLM (ours)'s tokens/s over the row's: the issue's goal is hf within 1.5x.
Usage (in the .ci/vllm-venv venv): python benchmarks/vllm_cpu.py [--experts a,b] [--out FILE]
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


def demo_requests(new_tokens: int, temperature: float = 0.7) -> list[GenerationRequest]:
    docs = json.loads((tasks_dir() / "symoe_demo.json").read_text())["test"]
    params = SamplingParams(temperature=temperature, max_tokens=new_tokens, seed=0)
    return [GenerationRequest.user(f"Question: {d['question']}{INSTRUCTION}", params) for d in docs]


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def engine_row(name: str, spec, requests, engine_name: str, batch_size: int = 8) -> dict:
    engine = make_engine(spec, engine_name, batch_size=batch_size)
    load_s, _ = timed(engine.load)
    seconds, out = timed(lambda: engine.generate(requests))
    decoding = engine.loaded_setup().get("decoding")
    engine.unload()
    return {"row": f"{name} ({decoding})" if decoding else name, "load_s": load_s, "generate_s": seconds,
            "tokens": sum(c.num_tokens for c in out)}


def micro_batch_row(spec, requests) -> dict:
    """The hf engine with its micro-batch path forced (the one a GPU takes)."""
    import symoe_eval.engines.hf as hf

    chosen = hf.decoding_for
    hf.decoding_for = lambda model: "micro-batches"
    try:
        return engine_row("hf", spec, requests, "hf")
    finally:
        hf.decoding_for = chosen


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
    lines = ["| expert | sampling | engine | load s | generate s | tokens | tok/s | vLLM (ours) tok/s / this | same texts twice |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        ours = next(o for o in rows if o["row"] == "vllm (ours)" and o["expert"] == r["expert"] and o["mode"] == r["mode"])
        rate = r["tokens"] / r["generate_s"]
        lines.append(f"| {r['expert']} | {r['mode']} | {r['row']} | {r['load_s']:.1f} | {r['generate_s']:.1f} | "
                     f"{r['tokens']} | {rate:.1f} | {(ours['tokens'] / ours['generate_s']) / rate:.2f} | "
                     f"{r.get('same_texts', '')} |")
    return "\n".join(lines)


def rows_for(expert: str, temperature: float, args) -> list[dict]:
    spec = load_pool("tiny-cpu").expert(expert)
    requests = demo_requests(args.new_tokens, temperature)
    rows = [engine_row("hf", spec, requests, "hf"),
            *[engine_row(f"hf, batch {n}", spec, requests, "hf", n) for n in args.hf_batch],
            micro_batch_row(spec, requests), *adapter_rows(spec, requests, args.rounds)]
    if args.multiprocess and expert == "smollm2-135m" and temperature > 0:
        rows.append(multiprocess_row(expert, args.new_tokens))
    mode = f"T={temperature}" if temperature > 0 else "greedy"
    return [{**r, "expert": expert, "mode": mode} for r in rows]


def overhead_lines(rows: list[dict]) -> list[str]:
    out = []
    for r in (r for r in rows if "host_s" in r):
        direct = next(d for d in rows if d["row"] == "vllm.LLM.generate" and d["expert"] == r["expert"] and d["mode"] == r["mode"])
        out.append(f"- {r['expert']} {r['mode']}: our adapter {100 * (r['generate_s'] - direct['generate_s']) / direct['generate_s']:+.1f}% "
                   f"of the direct call's time (the direct call ranged {r['spread'][0]:.1f}-{r['spread'][1]:.1f} s); "
                   f"its own host work {1000 * r['host_s']:.0f} ms")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experts", default="smollm2-135m,qwen2.5-coder-0.5b")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hf-batch", type=lambda v: [int(x) for x in v.split(",") if x], default=[40])
    parser.add_argument("--multiprocess", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--expert", default="smollm2-135m", help=argparse.SUPPRESS)  # the child's
    args = parser.parse_args()
    if args.child:
        return multiprocess_child(args.expert, args.new_tokens)
    rows = [r for expert in args.experts.split(",") for t in (0.7, 0.0) for r in rows_for(expert, t, args)]
    text = (f"40 symoe_demo requests, {args.new_tokens} new tokens, batch size 8 unless named, {os.cpu_count()} CPU "
            f"cores; vllm rows: median of {args.rounds} alternated calls\n\n{table(rows)}\n\n"
            + "\n".join(overhead_lines(rows)))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
