"""symoe_expert without real models: request translation, repeats, overrides, errors."""

import pytest
from lm_eval.api.instance import Instance

from fakes import use_fake_engines
from symoe_eval.errors import SymoeError
from symoe_eval.harness.lm import lm_class

ExpertLM = lm_class("symoe_expert")

MC = "Q? The options are: (A) x (B) y"


def instance(doc_id, context=MC, gen_kwargs=None, idx=0, task="symoe_gpqa"):
    kwargs = {"until": [], "do_sample": True, "temperature": 0.7, "max_gen_toks": 4096}
    kwargs.update(gen_kwargs or {})
    return Instance("generate_until", {"question": context}, (context, kwargs), idx,
                    metadata=(task, doc_id, 1))


@pytest.fixture
def engines(monkeypatch):
    """(engine, the run's own factory) of each engine built."""
    return use_fake_engines(monkeypatch, lambda name, req: f"{name}|{req.params}|{req.seed}")


def test_one_load_one_batch_and_params_from_the_task(engines, tmp_path):
    lm = ExpertLM(pool="tiny-cpu", expert="smollm2-135m", cache_dir=str(tmp_path), batch_size=16)
    out = lm.generate_until([instance(i, gen_kwargs={"max_gen_toks": 64, "until": ["###"]}) for i in range(5)])
    assert len(engines) == 1
    engine, run = engines[0]
    assert engine.stats.loads == 1 and run.engine_args["batch_size"] == 16 and run.cache_dir == tmp_path
    assert all("max_tokens=64" in o and "stop=('###',)" in o and "temperature=0.7" in o for o in out)


def test_model_args_override_the_task(engines):
    lm = ExpertLM(pool="tiny-cpu", expert="smollm2-135m", temperature=0, max_gen_toks=32, cache_dir="none")
    (out,) = lm.generate_until([instance(0)])
    assert "temperature=0.0" in out and "max_tokens=32" in out
    assert engines[0][1].cache_dir is None


def test_greedy_task_kwargs_mean_temperature_zero(engines):
    lm = ExpertLM(pool="tiny-cpu", expert="smollm2-135m")
    (out,) = lm.generate_until([instance(0, gen_kwargs={"do_sample": False})])
    assert "temperature=0.0" in out


def test_repeats_become_distinct_samples(engines):
    lm = ExpertLM(pool="tiny-cpu", expert="smollm2-135m")
    req = instance(7)
    other = instance(8)
    out = lm.generate_until([req, req, req, other])
    seeds = [o.rsplit("|", 1)[1] for o in out]
    assert len(set(seeds[:3])) == 3  # lm-eval's repeats sample with seeds of their own
    assert lm.generate_until([req, req, req, other]) == out  # and a rerun draws them again


def test_errors_are_one_line():
    with pytest.raises(SymoeError, match="needs model_args expert=NAME"):
        ExpertLM(pool="tiny-cpu")
    with pytest.raises(SymoeError, match="unknown model_args colour"):
        ExpertLM(pool="tiny-cpu", expert="smollm2-135m", colour="red")
    with pytest.raises(SymoeError, match="generative only"):
        ExpertLM(pool="tiny-cpu", expert="smollm2-135m").loglikelihood([])


def test_reasoning_experts_keep_their_larger_budget(engines):
    lm = ExpertLM(pool="paper16", expert="deepseek-r1-distill-qwen-7b", engine="hf")
    (out,) = lm.generate_until([instance(0, gen_kwargs={"max_gen_toks": 4096})])
    assert "max_tokens=32768" in out
