"""Checks of our vLLM engine against a real vLLM, each run in a fresh process by test_real_vllm.py
(vLLM's parallel state is per process, and RSS must not carry other tests' memory).

``python real_vllm_checks.py CHECK POOL`` prints one line ``RESULT <json>``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import psutil

from symoe_eval.engines import GenerationRequest, SamplingParams, make_engine
from symoe_eval.pools.schema import load_pool

QUESTION = "Question: Which gas do plants take in for photosynthesis?\n(A) oxygen (B) carbon dioxide (C) helium (D) neon"


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def spy_on_prompts(engine) -> list[list[int]]:
    """The token ids the real vLLM read, captured from its own RequestOutputs."""
    seen: list[list[int]] = []
    real = engine.llm.generate

    def generate(*args, **kwargs):
        outputs = real(*args, **kwargs)
        seen.extend(list(o.prompt_token_ids) for o in outputs)
        return outputs

    engine.llm.generate = generate
    return seen


def reload_cycle(pool) -> dict:
    """Load A, unload, load B, unload, load A, unload: RSS and child processes after each step."""
    import vllm  # noqa: F401 - the baseline includes vLLM's own import

    names = list(pool.experts)
    first, second = pool.expert(names[0]), pool.expert(names[1])
    request = [GenerationRequest.user(QUESTION, SamplingParams(temperature=0.0, max_tokens=8))]
    engines = {first.name: make_engine(first, "vllm"), second.name: make_engine(second, "vllm")}
    steps = [{"step": "baseline", "rss_mib": rss_mib(), "children": 0}]
    for spec in (first, second, first):
        engine = engines[spec.name]
        before = rss_mib()
        engine.load()
        engine.generate(request)
        loaded = rss_mib()
        engine.unload()
        steps.append({"step": spec.name, "before_rss_mib": before, "loaded_rss_mib": loaded, "rss_mib": rss_mib(),
                      "children": len(psutil.Process().children(recursive=True))})
    return {"steps": steps, "loads": {name: e.stats.loads for name, e in engines.items()}}


def prompt_ids(pool) -> dict:
    """Per expert: the ids vLLM read, the ids the HF engine's tokenizer gives without special
    tokens (computed here with transformers alone), and what each engine counted."""
    from transformers import AutoTokenizer

    out = {}
    request = GenerationRequest.user(QUESTION, SamplingParams(temperature=0.0, max_tokens=4))
    for name, spec in pool.experts.items():
        tokenizer = AutoTokenizer.from_pretrained(spec.source.path)  # the pool's local folders
        text = tokenizer.apply_chat_template(request.chat(), tokenize=False, add_generation_prompt=True)
        with make_engine(spec, "vllm") as engine:
            seen = spy_on_prompts(engine)
            vllm_count = engine.generate([request])[0].prompt_tokens
        with make_engine(spec, "hf") as engine:
            hf_count = engine.generate([request])[0].prompt_tokens
        out[name] = {"vllm_ids": seen[0], "transformers_ids": tokenizer(text, add_special_tokens=False).input_ids,
                     "with_special_tokens": tokenizer(text).input_ids, "bos_id": tokenizer.bos_token_id,
                     "vllm_count": vllm_count, "hf_count": hf_count}
    return out


def seeded_texts(pool) -> dict:
    """Sampled texts of 4 samples of one prompt and one other prompt, from two generate calls of
    the same batch (more prompt tokens than one step of vLLM's default budget holds), and from a
    third call with the batch reversed (other batch-mates per step: bf16 texts may change)."""
    spec = pool.expert(next(iter(pool.experts)))
    params = SamplingParams(temperature=0.7, max_tokens=24, seed=0)
    requests = [GenerationRequest.user("Name a colour and say why you like it.", params, sample_index=s) for s in range(4)]
    requests.append(GenerationRequest.user("Name a city.", params))
    filler = " ".join(f"fact {i}: plants need light." for i in range(40))
    requests += [GenerationRequest.user(f"{i}. {filler} Summarise.", replace(params, max_tokens=2)) for i in range(24)]
    with make_engine(spec, "vllm") as engine:
        first = [c.text for c in engine.generate(requests)]
        second = [c.text for c in engine.generate(requests)]
        reordered = [c.text for c in engine.generate(requests[::-1])][::-1]
    return {"first": first[:5], "second": second[:5], "reordered": reordered[:5],
            "dtype": engine.loaded_setup().get("dtype"), "prompt_tokens": engine.stats.prompt_tokens // 3}


def fitted_quote(pool) -> dict:
    """An aggregation prompt quoting three long responses for an expert whose config declares a
    short context (the pool declares none), fitted by the methods' synthesis prompts, then read by vLLM."""
    from symoe_eval.symbolic.aggregation import AGGREGATE_INSTRUCTION, SynthesisPrompts
    from symoe_eval.runtime.context import RunContext

    name = next(iter(pool.experts))
    context = RunContext.create(pool=str(pool.path), engine="vllm", cache_dir="none", max_gen_toks=32)
    responses = [f"Response {i}: " + " ".join(f"step {j} of my reasoning about plants and light." for j in range(60))
                 + f" The answer is ({'ABC'[i]})." for i in range(3)]
    prompts = SynthesisPrompts(context)
    request = prompts.request(name, QUESTION + "\nThe answer is (X).", responses, {}, 0)
    with make_engine(pool.expert(name), "vllm") as engine:
        seen = spy_on_prompts(engine)
        engine.generate([request])
        read = engine.llm.get_tokenizer().decode(seen[0])
        limit, cut_by_engine = engine.llm.llm_engine.model_config.max_model_len, engine.stats.truncated_prompts
    return {"limit": limit, "prompt_tokens": len(seen[0]), "cut_by_engine": cut_by_engine,
            "responses_cut": prompts.truncated_responses, "has_instruction": read.count(AGGREGATE_INSTRUCTION[:80]),
            "blocks": [read.count(f"### Model {i}'s response:") for i in (1, 2, 3)],
            "has_question_end": "The answer is (X)." in read}


def lora_adapters(pool) -> dict:
    """The specialists' base and two of its adapters through the scheduler on vLLM, one resident
    model: loads, and how many of 8 addition questions each answers (greedy)."""
    from symoe_eval.answers import extract_free_form
    from symoe_eval.paths import tasks_dir
    from symoe_eval.runtime.scheduling import Call, Scheduler

    rows = [r for r in json.loads((tasks_dir() / "symoe_skills.json").read_text())["test"] if r["category"] == "addition"][:8]
    params = SamplingParams(temperature=0.0, max_tokens=16)
    requests = [GenerationRequest.user(f'Question: {r["question"]}\nReply with "The answer is X.", where X is the answer.',
                                       params) for r in rows]
    experts = ["smollm2-135m", "smollm2-addition", "smollm2-sorting"]
    calls = [Call((e, i), e, r) for e in experts for i, r in enumerate(requests)]
    with Scheduler(lambda name: make_engine(pool.expert(name), "vllm", batch_size=8), max_loaded=1, progress=False) as s:
        out = s.run("answers", calls)
        stats = s.model_stats()
    right = {e: sum(extract_free_form(out[(e, i)].text) == r["gold_answer"] for i, r in enumerate(rows)) for e in experts}
    return {"loads": sum(st.loads for st in stats.values()), "right": right}


CHECKS = {"lora_adapters": lora_adapters, "reload_cycle": reload_cycle, "prompt_ids": prompt_ids, "seeded_texts": seeded_texts, "fitted_quote": fitted_quote}

if __name__ == "__main__":
    check, pool = sys.argv[1], load_pool(sys.argv[2])
    print("RESULT " + json.dumps(CHECKS[check](pool)), flush=True)
