"""Engine plumbing without real models: the generation cache, the vLLM adapter, the factory."""

import json

import pytest

from fakes import FakeEngine, expert, install_fake_vllm
from symoe_eval.engines import (
    CachedEngine,
    GenerationCache,
    GenerationRequest,
    SamplingParams,
    make_engine,
    pick_backend,
    truncate_at_stop,
)
from symoe_eval.engines.cache import request_key
from symoe_eval.errors import SymoeError
from symoe_eval.registry import Generation, WeightSource


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
    for _ in range(3):  # the run dies after three generations came back
        next(stream)
    stream.close()
    with open(tmp_path / "alpha.jsonl", "a") as fh:
        fh.write('{"key": "torn')  # a half-written last line from the kill

    resumed = CachedEngine(FakeEngine(spec, batch_size=2), GenerationCache(tmp_path))
    out = resumed.generate(requests(6))
    assert len(out) == 6 and all(out)
    assert resumed.stats.cached_calls == 3  # everything that came back had been written
    assert resumed.stats.calls == 3


def test_cache_key_covers_expert_prompt_params_and_sample_index():
    a, b = FakeEngine(expert("a")), FakeEngine(expert("b"))
    base = GenerationRequest.user("q", SamplingParams(temperature=0.7))
    keys = {
        request_key(a, base),
        request_key(b, base),
        request_key(a, GenerationRequest.user("q2", base.params)),
        request_key(a, GenerationRequest.user("q", SamplingParams(temperature=0.0))),
        request_key(a, GenerationRequest.user("q", base.params, sample_index=1)),
        request_key(FakeEngine(expert("a", generation=Generation(max_gen_toks=9))), base),
    }
    assert len(keys) == 5  # generation defaults are not part of a request; everything else is
    assert request_key(a, base) == request_key(FakeEngine(expert("a")), base)


def test_truncate_at_stop():
    assert truncate_at_stop("abc\n\nQuestion: x", ["Question:", "zz"]) == ("abc\n\n", True)
    assert truncate_at_stop("abc", []) == ("abc", False)


def test_backend_choice(monkeypatch):
    assert pick_backend("hf") == "hf"
    with pytest.raises(SymoeError, match="unknown engine"):
        pick_backend("tensorrt")


def test_vllm_adapter_against_a_faithful_fake(monkeypatch, tmp_path):
    state = install_fake_vllm(monkeypatch)
    spec = expert(
        "big",
        engine_kwargs={"dtype": "bfloat16", "max_model_len": 16000, "trust_remote_code": True, "ignored_by_vllm": 1},
        vllm_kwargs={"gpu_memory_utilization": 0.85},
    )
    engine = make_engine(spec, backend="vllm", seed=3)
    batch = [
        GenerationRequest.user("q1", SamplingParams(temperature=0.7, max_tokens=100, stop=("###",), seed=3)),
        GenerationRequest.user("q2", SamplingParams(temperature=0.0, max_tokens=4)),
    ]
    with engine:
        out = engine.generate(batch)
    assert state.constructed == [
        {"model": "org/big", "seed": 3, "dtype": "bfloat16", "max_model_len": 16000,
         "trust_remote_code": True, "gpu_memory_utilization": 0.85}
    ]
    (prompts, params), = state.generate_calls  # one batched call for the whole group
    assert prompts == ["<|user|>q1<|end|><|assistant|>", "<|user|>q2<|end|><|assistant|>"]
    assert (params[0].temperature, params[0].max_tokens, params[0].stop, params[0].seed) == (0.7, 100, ["###"], 3)
    assert (params[1].temperature, params[1].stop) == (0.0, None)
    assert [c.finish_reason for c in out] == ["stop", "length"]
    assert out[1].num_tokens == 4 and engine.stats.calls == 2
    assert state.teardown == ["destroy_model_parallel", "destroy_distributed_environment"]
    assert engine.llm is None


def test_vllm_reads_packaged_gguf_files_directly(monkeypatch, tmp_path):
    state = install_fake_vllm(monkeypatch)
    (tmp_path / "m.gguf").write_bytes(b"x")
    spec = expert("g").__class__(name="g", model="org/g-instruct", source=WeightSource(path=str(tmp_path), gguf_file="m.gguf"))
    with make_engine(spec, backend="vllm") as engine:
        engine.generate(requests(1))
    assert state.constructed[0]["model"] == str(tmp_path / "m.gguf")
    assert state.constructed[0]["tokenizer"] == "org/g-instruct"


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
        make_engine(spec, backend="hf").load()
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"expert 'broken' failed to load from {tmp_path}")


def test_vllm_load_failure_is_one_line(monkeypatch):
    state = install_fake_vllm(monkeypatch)
    import vllm

    def refuse(self, model, **kwargs):
        raise ValueError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr(vllm.LLM, "__init__", refuse)
    with pytest.raises(SymoeError, match="expert 'big' failed to load from org/big: ValueError: CUDA out of memory.$"):
        make_engine(expert("big"), backend="vllm").load()
    assert state.constructed == []
