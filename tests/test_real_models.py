"""Real tiny-cpu models through the transformers engine and the real lm_eval CLI (slow)."""

import functools
import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import run_cli
from symoe_eval.engines import GenerationRequest, SamplingParams, make_engine
from symoe_eval.pools.schema import load_pool
from symoe_eval.pools.weights import resolve_weights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    pool = load_pool("tiny-cpu")
    with make_engine(pool.expert("smollm2-135m"), engine="hf", batch_size=4) as engine:
        yield engine


PROMPTS = ["What is 2+3? Answer with a number.", "Name a primary colour.", "Say hello."]


@pytest.fixture
def micro_batched(monkeypatch):
    """The engine's other path (GPUs, models the continuous loop cannot drive): transformers'
    generate() over left-padded micro-batches."""
    monkeypatch.setattr("symoe_eval.engines.hf.decoding_for", lambda model: "micro-batches")


def test_a_request_draws_the_same_text_alone_and_beside_any_others():
    """The continuous loop (bf16, this CPU's default): six requests through two rows, so rows
    leave and others take their slots mid-run; each text equals the request's text alone and in
    the reversed order, greedy and sampled."""
    spec = load_pool("tiny-cpu").expert("smollm2-135m")
    greedy, sampled = SamplingParams(temperature=0.0, max_tokens=20), SamplingParams(temperature=0.9, max_tokens=20, seed=3)
    requests = [GenerationRequest.user(p, params) for p in PROMPTS for params in (greedy, sampled)]
    with make_engine(spec, engine="hf", batch_size=2) as engine:
        assert engine.loaded_setup()["decoding"] == "continuous"
        together = [c.text for c in engine.generate(requests)]
        reversed_order = [c.text for c in engine.generate(requests[::-1])][::-1]
        alone = [engine.generate([r])[0].text for r in requests]
    assert together == reversed_order == alone
    assert len({len(t) for t in together}) > 1  # rows of different lengths: some left before others


def test_repeated_samples_share_one_prefill_and_draw_as_if_alone(monkeypatch):
    """Copies of one prompt (keyword samples, duplicate recruits) are prefilled once and copied
    into their slots; each still draws with its own seed exactly what it draws alone."""
    from symoe_eval.engines.continuous import ContinuousDecoder, SlotCache

    spec = load_pool("tiny-cpu").expert("smollm2-135m")
    params = SamplingParams(temperature=0.8, max_tokens=16, seed=5)
    requests = [GenerationRequest.user(PROMPTS[0], params, s) for s in range(3)] + [GenerationRequest.user(PROMPTS[1], params)]
    prefilled = []
    prefill = SlotCache.prefill
    monkeypatch.setattr(SlotCache, "prefill", lambda self, slot: prefilled.append(slot) or prefill(self, slot))
    with make_engine(spec, engine="hf", batch_size=4) as engine:
        prefilled.clear()  # the load's own probe prefills too
        batch = [c.text for c in engine.generate(requests)]
        assert len(prefilled) == 2  # two distinct prompts for four rows
        alone = [engine.generate([r])[0].text for r in requests]
        monkeypatch.setattr(ContinuousDecoder, "share_prefills", False)  # method_cost's --ablate-prefill
        prefilled.clear()
        unshared = [c.text for c in engine.generate(requests)]
        assert len(prefilled) == 4
    assert batch == alone == unshared
    assert len(set(batch[:3])) > 1  # the copies are separate samples


def test_finished_rows_leave_at_once_and_progress_adds_up(smollm):
    """A short request ends first although it came last; every token of budget is reported once."""
    params = [SamplingParams(temperature=0.0, max_tokens=n) for n in (24, 24, 3)]
    reported = []
    smollm.report_budget_to(reported.append)
    try:
        order = [i for i, _ in smollm.iter_generate([GenerationRequest.user(p, s) for p, s in zip(PROMPTS, params)])]
    finally:
        smollm.report_budget_to(None)
    assert order[0] == 2 and sorted(order) == [0, 1, 2]
    assert sum(reported) == 24 + 24 + 3


def test_left_padding_keeps_greedy_output_in_fp32(micro_batched):
    """Micro-batches: batch invariance holds in fp32; in bf16 the padded batch rounds differently
    and greedy text can change (see docs/engines.md on batch invariance)."""
    spec = load_pool("tiny-cpu").expert("smollm2-135m")
    spec = replace(spec, engine_kwargs={**spec.engine_kwargs, "dtype": "float32"})
    params = SamplingParams(temperature=0.0, max_tokens=24)
    with make_engine(spec, engine="hf", batch_size=4) as engine:
        assert engine.loaded_setup()["decoding"] == "micro-batches"
        batch = engine.generate([GenerationRequest.user(p, params) for p in PROMPTS])
        alone = engine.generate([GenerationRequest.user(PROMPTS[1], params)])
    assert batch[1].text == alone[0].text


def test_micro_batches_share_one_prefill_for_repeated_samples(micro_batched, monkeypatch):
    """Copies of one prompt in a micro-batch are prefilled once; each still draws with its own
    seed exactly what it draws alone (fp32)."""
    from symoe_eval.engines.hf import HFEngine

    spec = load_pool("tiny-cpu").expert("smollm2-135m")
    spec = replace(spec, engine_kwargs={**spec.engine_kwargs, "dtype": "float32"})
    params = SamplingParams(temperature=0.8, max_tokens=16, seed=5)
    requests = [GenerationRequest.user(PROMPTS[0], params, s) for s in range(3)] + [GenerationRequest.user(PROMPTS[1], params)]
    prefilled = []
    shared = HFEngine._shared_prefill
    monkeypatch.setattr(HFEngine, "_shared_prefill", lambda self, ids, mask, rows: prefilled.append((ids.shape[0], rows))
                        or shared(self, ids, mask, rows))
    with make_engine(spec, engine="hf", batch_size=4) as engine:
        batch = [c.text for c in engine.generate(requests)]
        alone = [engine.generate([r])[0].text for r in requests]
    assert prefilled == [(2, [0, 1, 1, 1])]  # two distinct prompts (shorter first) prefilled for four rows
    assert batch == alone
    assert len(set(batch[:3])) > 1


def test_the_probe_refuses_a_model_whose_rows_talk_to_each_other():
    """``rows_are_independent`` passes the real model and fails it once each row's logits carry
    a trace of the batch's mean (the engine would then take micro-batches)."""
    from symoe_eval.engines.continuous import rows_are_independent

    spec = load_pool("tiny-cpu").expert("smollm2-135m")
    with make_engine(spec, engine="hf") as engine:
        model = engine.model
        assert rows_are_independent(model) is None
        forward = model.forward

        @functools.wraps(forward)
        def leaky(*args, **kwargs):
            out = forward(*args, **kwargs)
            out.logits = out.logits + 1e-3 * out.logits.mean(0, keepdim=True)
            return out

        model.forward = leaky
        try:
            assert "batch-mates" in rows_are_independent(model)
        finally:
            del model.forward


def test_the_probe_refuses_a_model_whose_wide_steps_round_otherwise():
    """A kernel that sums otherwise from nine rows on (as this CPU's linear layer does over one
    row against two) would change a row's text with the number of rows decoding beside it: the
    probe's wide steps catch it, where alone and beside the other probe prompts (two and three
    rows) agree."""
    from symoe_eval.engines.continuous import PROBE_WIDE, rows_are_independent

    spec = load_pool("tiny-cpu").expert("smollm2-135m")
    with make_engine(spec, engine="hf") as engine:
        model = engine.model
        forward = model.forward

        @functools.wraps(forward)
        def wide_rounds_otherwise(*args, **kwargs):
            out = forward(*args, **kwargs)
            if out.logits.shape[0] > 8:
                out.logits = out.logits * (1 + 2**-7)
            return out

        model.forward = wide_rounds_otherwise
        try:
            assert PROBE_WIDE > 8 and "width" in rows_are_independent(model)
        finally:
            del model.forward


def test_steps_narrow_as_rows_end_and_texts_stay_those_drawn_alone(smollm, monkeypatch):
    """Four rows with budgets of 24, 16, 8 and 4 tokens: a step has one row per active row (never
    fewer than two), so the steps narrow from 4 to 3 to 2 as rows end; every text is the one its
    request draws alone."""
    from symoe_eval.engines.continuous import ContinuousDecoder

    forward, shapes = ContinuousDecoder._forward, []
    monkeypatch.setattr(ContinuousDecoder, "_forward", lambda self, cache, ids, positions: shapes.append(ids.shape)
                        or forward(self, cache, ids, positions))
    requests = [GenerationRequest.user(PROMPTS[i % 3], SamplingParams(temperature=0.0, max_tokens=n))
                for i, n in enumerate((24, 16, 8, 4))]
    together = [c.text for c in smollm.generate(requests)]
    widths = [rows for rows, tokens in shapes if tokens == 1]  # a prefill is one row of its prompt's tokens
    assert widths == sorted(widths, reverse=True) and widths[0] == 4 and 3 in widths and widths[-1] == 2
    assert together == [smollm.generate([r])[0].text for r in requests]


def test_batched_generation_with_chat_template_and_stop(smollm):
    params = SamplingParams(temperature=0.0, max_tokens=24)
    batch = smollm.generate([GenerationRequest.user(p, params) for p in PROMPTS])
    assert all(c.text.strip() for c in batch)
    assert all(0 < c.num_tokens <= 24 for c in batch)

    first_word = batch[2].text.split()[0]
    stopped = smollm.generate([GenerationRequest.user(PROMPTS[2], SamplingParams(0.0, max_tokens=24, stop=(first_word,)))])
    assert first_word not in stopped[0].text and stopped[0].finish_reason == "stop"


def test_seeds_are_honoured(smollm):
    def sample(seed):
        params = SamplingParams(temperature=1.0, max_tokens=16, seed=seed)
        return [c.text for c in smollm.generate([GenerationRequest.user("Write a random word.", params)] * 3)]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_dense_copy_is_cached_after_the_first_load(smollm):
    from symoe_eval.paths import cache_root

    dense = list((cache_root() / "dense").glob("smollm2-135m-*/config.json"))
    assert dense, "the de-quantized copy should be saved for fast reloads"
    assert smollm.stats.loads == 1


def results_of(out: Path):
    (results,) = out.rglob("results_*.json")
    samples = list(out.rglob("samples_symoe_gpqa_*.jsonl"))
    return json.loads(results.read_text()), [json.loads(line) for line in samples[0].open()]


def test_lm_eval_cli_runs_a_single_expert(tmp_path, data_dir):
    out = tmp_path / "q"
    done = run_cli(
        ["lm_eval", "--model", "symoe_expert",
         "--model_args", f"pool=tiny-cpu,expert=smollm2-135m,cache_dir={tmp_path / 'generations'}",
         "--tasks", "symoe_gpqa", "--limit", "3", "--gen_kwargs", "max_gen_toks=48",
         "--batch_size", "4", "--output_path", str(out), "--log_samples"],
        cwd=tmp_path,
        env_extra={"SYMOE_DATA_DIR": str(data_dir)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results, samples = results_of(out)
    assert "exact_match,answer" in results["results"]["symoe_gpqa"]
    assert len(samples) == 3 and all(s["resps"][0][0].strip() for s in samples)
    assert all(s["filtered_resps"][0] in "ABCD" or s["filtered_resps"][0] == "[invalid]" for s in samples)
    assert len((tmp_path / "generations" / "smollm2-135m.jsonl").read_text().splitlines()) == 3


def test_lm_eval_hf_model_still_works(tmp_path, data_dir):
    folder, gguf = resolve_weights(load_pool("tiny-cpu").expert("smollm2-135m"))
    done = run_cli(
        ["lm_eval", "--model", "hf", "--model_args", f"pretrained={folder},gguf_file={gguf}",
         "--tasks", "symoe_gpqa", "--limit", "1", "--gen_kwargs", "max_gen_toks=8",
         "--device", "cpu", "--output_path", str(tmp_path / "hf"), "--log_samples"],
        cwd=tmp_path,
        env_extra={"SYMOE_DATA_DIR": str(data_dir)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results, _ = results_of(tmp_path / "hf")
    assert results["config"]["model"] == "hf"


def test_fitted_aggregation_prompt_is_not_cut_again_by_the_engine():
    """Prompt fitting counts with the engine's own tokenizer and template: at a 1024-token context
    the engine has nothing left to cut."""
    from symoe_eval.symbolic.aggregation import ChatTokens, aggregate_prompt, fit_prompt

    spec = load_pool("tiny-cpu").expert("smollm2-135m")
    spec = replace(spec, engine_kwargs={**spec.engine_kwargs, "max_model_len": 1024})
    engine = make_engine(spec, engine="hf", batch_size=1)
    long = "Water boils at 100 degrees Celsius at sea level. " * 120
    fitted = fit_prompt(aggregate_prompt, "Question: " + long + "At what temperature does water boil?",
                        [long + "The answer is (A)"] * 3, 1024 - 16, lambda: ChatTokens(engine.load_tokenizer()))
    assert fitted.question_cut and fitted.responses_cut == 3
    with engine:
        (out,) = engine.generate([GenerationRequest.user(fitted.prompt, SamplingParams(temperature=0.0, max_tokens=16))])
    assert engine.stats.truncated_prompts == 0 and out.num_tokens > 0


def test_hf_cuts_an_overlong_prompt_from_the_left():
    spec = load_pool("tiny-cpu").expert("smollm2-135m")
    spec = replace(spec, engine_kwargs={**spec.engine_kwargs, "max_model_len": 64})
    with make_engine(spec, engine="hf") as engine:
        (out,) = engine.generate([GenerationRequest.user("word " * 200 + "Say hi.", SamplingParams(0.0, max_tokens=8))])
    assert engine.stats.truncated_prompts == 1 and 0 < out.num_tokens <= 8


def test_stock_flags_on_a_real_model(tmp_path):
    """--apply_chat_template with --system_instruction reaches the expert as a system message;
    --seed 1 twice gives the same texts, --seed 2 others; runs are named by method, pool, expert."""
    def run(name, *flags):
        out = tmp_path / name
        done = run_cli(["lm_eval", "--model", "symoe_expert", "--model_args",
                        "pool=tiny-cpu,expert=smollm2-135m,cache_dir=none,max_gen_toks=24", "--tasks", "symoe_demo",
                        "--limit", "3", "--batch_size", "3", "--output_path", str(out), "--log_samples", *flags], cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        (samples,) = out.rglob("samples_symoe_demo_*.jsonl")
        assert samples.parent.name == "symoe_expert-tiny-cpu-smollm2-135m"
        return [json.loads(line) for line in samples.open()]

    from symoe_eval.harness.lm import split_context

    chat = run("chat", "--apply_chat_template", "--system_instruction", "Answer in French.")
    (context,) = [v["arg_0"] for v in chat[0]["arguments"].values()]
    prefix, question = split_context(context)
    assert prefix == (("system", "Answer in French."),) and question.startswith("Question: ")

    def texts(rows):
        return [r["resps"][0][0] for r in sorted(rows, key=lambda r: r["doc_id"])]

    one, two, again = run("s1", "--seed", "1"), run("s2", "--seed", "2"), run("s1b", "--seed", "1")
    assert texts(one) == texts(again) and texts(one) != texts(two)
