"""The four named extension points (engines, routers, methods, benchmarks) share one ``Registry``:
a taken name is refused, an entry of the wrong kind is refused, an unknown name suggests the
closest one, and lazy ``module:Class`` entries import only when looked up."""

import sys

import pytest

from symoe_eval.engines import ENGINES, Engine, engine_class, register_engine
from symoe_eval.errors import SymoeError
from symoe_eval.harness.task_functions import BENCHMARKS, Benchmark
from symoe_eval.methods import METHODS
from symoe_eval.symbolic.routing import ROUTERS, InstanceRouter, Router, register_router, router_class
from symoe_eval.registry import Registry


class Echo(Engine):
    name = "echo"


def test_a_taken_name_is_refused_in_every_registry():
    with pytest.raises(SymoeError, match="engine 'hf' is already registered .*symoe_eval.engines.hf:HFEngine"):
        register_engine("hf", Echo)

    class Instance2(InstanceRouter):
        name = "instance"

    with pytest.raises(SymoeError, match="routing 'instance' is already registered"):
        register_router(Instance2)
    with pytest.raises(SymoeError, match="method 'moa' is already registered"):
        METHODS.register("moa", "symoe_eval.methods.symoe:SymbolicMoE")
    with pytest.raises(SymoeError, match="benchmark 'gpqa' is already registered"):
        BENCHMARKS.register("gpqa", Benchmark("gpqa", "Mine", dict))
    assert engine_class("hf").__name__ == "HFEngine" and router_class("instance") is InstanceRouter


def test_the_same_entry_again_is_a_no_op(registered):
    registered(ENGINES, "echo", Echo)
    register_engine("echo", Echo)
    register_engine("hf", "symoe_eval.engines.hf:HFEngine")  # the same lazy entry, by its string
    register_engine("hf", engine_class("hf"))  # and by the class it names
    assert engine_class("echo") is Echo


def test_an_entry_of_the_wrong_kind_is_refused(registered):
    with pytest.raises(SymoeError, match="engine 'notengine' must be a subclass of symoe_eval.engines.base.Engine"):
        register_engine("notengine", dict)
    with pytest.raises(SymoeError, match="routing 'echo' must be a subclass of .*Router"):
        ROUTERS.register("echo", Echo)
    with pytest.raises(SymoeError, match="benchmark 'x' must be an instance of .*Benchmark"):
        BENCHMARKS.register("x", Benchmark)
    registered(METHODS, "lazy-wrong", "symoe_eval.engines.hf:HFEngine")  # lazy: checked when looked up
    with pytest.raises(SymoeError, match="method 'lazy-wrong' must be a subclass of symoe_eval.methods.base.Method"):
        METHODS.get("lazy-wrong")
    assert "notengine" not in ENGINES


def test_an_unknown_name_suggests_the_closest():
    with pytest.raises(SymoeError, match=r"unknown engine 'vlm' \(did you mean 'vllm'\?\); choose one of auto, hf, vllm, openai"):
        engine_class("vlm")
    with pytest.raises(SymoeError, match=r"unknown routing 'calibrate' \(did you mean 'calibrated'\?\)"):
        router_class("calibrate")
    with pytest.raises(SymoeError, match=r"unknown method 'symeo' \(did you mean 'symoe'\?\)"):
        METHODS.get("symeo")
    with pytest.raises(SymoeError, match=r"unknown benchmark 'zzz'; choose one of mmlu_pro"):
        BENCHMARKS.get("zzz")


def test_lazy_entries_import_only_when_looked_up():
    registry = Registry("toy", Router)
    registry.register("lazy", "toy_router_module:Lazy")
    assert "lazy" in registry and list(registry) == ["lazy"] and "toy_router_module" not in sys.modules
    with pytest.raises(SymoeError, match="cannot import 'toy_router_module:Lazy': No module named 'toy_router_module'"):
        registry.get("lazy")


@pytest.mark.parametrize("name", ["", None, 3])
def test_a_name_must_be_a_non_empty_string(name):
    with pytest.raises(SymoeError, match="a toy name must be a non-empty string"):
        Registry("toy", Router).register(name, InstanceRouter)
