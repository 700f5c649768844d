"""LoRA experts: a pool entry names a base expert and a peft adapter; the ``hf`` engine loads the
base once and runs each expert with its adapter active (a switch, not a load); the scheduler
counts experts on one base as one resident model. The real-model tests use the committed
``specialists`` adapters of smollm2-135m."""

import json
import shutil
from pathlib import Path

import pytest

from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import load_pool, parse_pool

BASE = """name: p
experts:
  - name: base
    model: m
    source: {hf_id: org/base}
    engine_kwargs: {dtype: bfloat16, max_model_len: 2048}
"""


def lora(name="tuned", base="base", adapter="{path: adapters/x, sha256: '%s'}" % ("a" * 64), extra="") -> str:
    return f"  - name: {name}\n    model: m+lora\n    base: {base}\n    adapter: {adapter}\n{extra}"


def test_a_lora_expert_takes_its_bases_weights_and_settings(tmp_path):
    pool = parse_pool(BASE + lora(extra="    engine_kwargs: {max_model_len: 1024}\n"), tmp_path / "p.yaml")
    tuned, base = pool.expert("tuned"), pool.expert("base")
    assert tuned.source == base.source and tuned.residency == "base" and base.residency == "base"
    assert tuned.engine_kwargs == {"dtype": "bfloat16", "max_model_len": 1024}
    assert tuned.adapter.path == str(tmp_path / "adapters/x")  # relative to the pool file


@pytest.mark.parametrize("entry, message", [
    (lora(base="nobody"), "base 'nobody' must be another expert of the pool"),
    (lora() + lora(name="chained", base="tuned"), "base 'tuned' must be another expert"),
    (lora(adapter="{path: adapters/x}"), "with the sha256 of its adapter_model.safetensors"),
    (lora(adapter="{hf_id: org/adapter, sha256: '%s'}" % ("a" * 64)), "an adapter is a local path"),
    ("  - name: half\n    model: m\n    base: base\n", "needs both base and adapter"),
])
def test_a_lora_entry_that_cannot_work_is_one_line(tmp_path, entry, message):
    with pytest.raises(SymoeError, match=message) as err:
        parse_pool(BASE + entry, tmp_path / "p.yaml")
    assert "\n" not in str(err.value)


def committed_adapter(skill: str) -> Path:
    return Path(load_pool("specialists").expert(f"smollm2-{skill}").adapter.path)


@pytest.mark.parametrize("damage, message", [
    ("hash", "has SHA-256 .* registry expects"),
    ("missing", "has no adapter_config.json"),
    ("gone", "does not exist"),
])
def test_bad_adapter_files_are_one_line(tmp_path, monkeypatch, damage, message):
    from symoe_eval.pools.weights import resolve_adapter

    monkeypatch.setenv("SYMOE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "adapters" / "x"
    shutil.copytree(committed_adapter("addition"), folder)
    sha = load_pool("specialists").expert("smollm2-addition").adapter.sha256
    if damage == "hash":
        (folder / "adapter_model.safetensors").write_bytes(b"not the adapter")
    elif damage == "missing":
        (folder / "adapter_config.json").unlink()
    else:
        shutil.rmtree(folder)
    spec = parse_pool(BASE + lora(adapter="{path: adapters/x, sha256: '%s'}" % sha), tmp_path / "p.yaml").expert("tuned")
    with pytest.raises(SymoeError, match=message) as err:
        resolve_adapter(spec)
    assert "\n" not in str(err.value) and "'tuned'" in str(err.value)


def test_vllm_runs_a_base_and_its_adapters_on_one_engine(tmp_path, monkeypatch):
    """vLLM: the first of them starts the base with LoRA on (rank from the adapter), the others
    share it; each adapter's requests carry its ``LoRARequest``, the base's none; the engine shuts
    down when the last of them unloads. A base started without LoRA refuses an adapter in one line."""
    from fakes import install_fake_vllm
    from symoe_eval.engines import GenerationRequest, SamplingParams, make_engine

    state = install_fake_vllm(monkeypatch)
    monkeypatch.setenv("SYMOE_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(committed_adapter("addition"), tmp_path / "adapters" / "x")
    sha = load_pool("specialists").expert("smollm2-addition").adapter.sha256
    pool = parse_pool(BASE + lora(adapter="{path: adapters/x, sha256: '%s'}" % sha)
                      + lora(name="other", adapter="{path: adapters/x, sha256: '%s'}" % sha), tmp_path / "p.yaml")
    request = [GenerationRequest.user("q", SamplingParams(temperature=0.0, max_tokens=4))]
    engines = [make_engine(pool.expert(name), "vllm") for name in ("tuned", "base", "other")]
    for engine in engines:
        engine.load()
        engine.generate(request)
    assert len(state.constructed) == 1 and state.constructed[0]["enable_lora"] is True
    assert state.constructed[0]["max_lora_rank"] == 8 and [e.stats.loads for e in engines] == [1, 0, 0]
    tuned, base, other = state.lora_requests
    assert base is None and (tuned.lora_name, other.lora_name) == ("tuned", "other") and tuned.lora_int_id != other.lora_int_id
    for engine in engines:
        engine.unload()
    assert state.teardown.count("engine_core.shutdown") == 1
    plain = parse_pool(BASE.replace("engine_kwargs", "backend_kwargs: {vllm: {enable_lora: false}}\n    engine_kwargs")
                       + lora(adapter="{path: adapters/x, sha256: '%s'}" % sha), tmp_path / "p.yaml")
    first = make_engine(plain.expert("base"), "vllm")
    first.load()
    with pytest.raises(SymoeError, match="running without LoRA") as err:
        make_engine(plain.expert("tuned"), "vllm").load()
    assert "\n" not in str(err.value)
    first.unload()


# ---------------------------------------------------------------------- real models


def skill_requests(skill: str, n: int = 8):
    from symoe_eval.engines import GenerationRequest, SamplingParams
    from symoe_eval.paths import tasks_dir

    rows = [r for r in json.loads((tasks_dir() / "symoe_skills.json").read_text())["test"] if r["category"] == skill][:n]
    prompt = 'Question: {}\nReply with "The answer is X.", where X is the answer.'
    params = SamplingParams(temperature=0.0, max_tokens=16)
    return [GenerationRequest.user(prompt.format(r["question"]), params) for r in rows], [r["gold_answer"] for r in rows]


def right(completions, golds) -> int:
    from symoe_eval.answers import extract_free_form

    return sum(extract_free_form(c.text) == g for c, g in zip(completions, golds))


@pytest.mark.slow
def test_the_base_loads_once_and_each_adapter_answers_its_own_skill(tiny_cpu_weights):
    from symoe_eval.engines import make_engine
    from symoe_eval.runtime.scheduling import Call, Scheduler

    pool = load_pool("specialists")
    factory = lambda name: make_engine(pool.expert(name), "hf", batch_size=8)  # noqa: E731
    requests, golds = skill_requests("addition")
    experts = ["smollm2-135m", "smollm2-addition", "smollm2-sorting"]
    calls = [Call((e, i), e, r) for e in experts for i, r in enumerate(requests)]
    with Scheduler(factory, max_loaded=1, progress=False) as scheduler:
        out = scheduler.run("answers", calls)
        stats = scheduler.model_stats()
    by_expert = {e: [out[(e, i)] for i in range(len(requests))] for e in experts}
    assert sum(s.loads for s in stats.values()) == 1  # three experts, one base in memory
    assert sum(s.adapter_switches for s in stats.values()) >= 2
    base, adder, sorter = (right(by_expert[e], golds) for e in experts)
    assert adder >= base + 4 and sorter <= 1, (base, adder, sorter)  # measured: 0, 5, 0 of 8


@pytest.mark.slow
def test_an_adapter_for_another_shape_is_one_line(tiny_cpu_weights, tmp_path):
    import yaml

    from symoe_eval.engines import make_engine

    folder = tmp_path / "adapters" / "x"
    shutil.copytree(committed_adapter("addition"), folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "r": 16}))  # its weights are rank 8
    specialists = load_pool("specialists")
    raw = yaml.safe_load(specialists.path.read_text())
    base = next(e for e in raw["experts"] if e["name"] == "smollm2-135m")
    wrong = {"name": "wrong", "model": "m", "base": "smollm2-135m",
             "adapter": {"path": "adapters/x", "sha256": specialists.expert("smollm2-addition").adapter.sha256}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "p", "experts": [base, wrong]}))
    from symoe_eval.engines.hf import HFEngine

    engine = make_engine(load_pool(str(tmp_path / "p.yaml")).expert("wrong"), "hf")
    with pytest.raises(SymoeError, match="expert 'wrong' failed to load from adapter") as err:
        engine.load()
    assert "\n" not in str(err.value)
    assert HFEngine.resident == {}  # the base it loaded is not left behind
