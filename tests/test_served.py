"""The served engine (``served:`` pool entries, engine ``openai``) against a small OpenAI-compatible
server on 127.0.0.1 (tests/openai_stub.py): requests, retries, errors, concurrency, the cache and
the scheduler. The real vLLM server is in the real-vLLM tier (tests/test_real_vllm.py)."""

import socket
import time

import pytest

from openai_stub import StubBehaviour, StubServer
from symoe_eval.engines import EngineFactory, GenerationRequest, SamplingParams, engine_class
from symoe_eval.engines.cache import request_key
from symoe_eval.engines.served import ServedEngine, ServerTokenizer
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec, ServedModel, parse_pool
from symoe_eval.runtime.scheduling import Call, Scheduler


def expert(base_url: str, name: str = "served-a", **served) -> ExpertSpec:
    return ExpertSpec(name, "stub/model", served=ServedModel(base_url, served.pop("model", "stub"), **served))


def requests_for(n: int, seed: int | None = 3, **params) -> list[GenerationRequest]:
    sampling = SamplingParams(**{"temperature": 0.7, "max_tokens": 64, "seed": seed, **params})
    return [GenerationRequest.user(f"question {i}", sampling) for i in range(n)]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_a_pool_entry_names_its_endpoint_and_never_holds_a_key(tmp_path):
    text = ("name: p\nexperts:\n  - name: a\n    model: m\n    served: {base_url: 'http://127.0.0.1:8001/v1', model: a,"
            " api_key_env: MY_KEY, concurrency: 2}\n")
    spec = parse_pool(text, tmp_path / "p.yaml").expert("a")
    assert spec.source is None and spec.served == ServedModel("http://127.0.0.1:8001/v1", "a", "MY_KEY", 2)
    bad = [("api_key_env: MY_KEY", "api_key: sk-123", "never write a key into a pool file"),
           ("base_url: 'http://127.0.0.1:8001/v1'", "base_url: localhost:8000", "base_url must be an http"),
           ("concurrency: 2", "concurrency: 0", "concurrency must be a number >= 1")]
    for good, entry, message in bad:
        with pytest.raises(SymoeError, match=message):
            parse_pool(text.replace(good, entry), tmp_path / "p.yaml")
    with pytest.raises(SymoeError, match="set source .* or served"):
        parse_pool("name: p\nexperts:\n  - name: a\n    model: m\n", tmp_path / "p.yaml")


def test_sampling_passes_through_and_usage_counts_the_tokens():
    with StubServer() as server:
        engine = ServedEngine(expert(server.base_url))
        reqs = requests_for(3, stop=("step",)) + requests_for(1, seed=None, temperature=0.0, max_tokens=4)
        completions = engine.generate(reqs)
        sent = {body["messages"][0]["content"] + str(body.get("seed")): body for body in server.behaviour.seen}
    first = next(b for b in sent.values() if b["messages"][0]["content"] == "question 0" and "stop" in b)
    assert first["seed"] == reqs[0].seed and first["temperature"] == 0.7 and first["stop"] == ["step"]
    assert first["max_tokens"] == 64 and first["model"] == "stub"
    greedy = next(b for b in sent.values() if "seed" not in b)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["max_tokens"] == 4
    assert completions[0].text == "Thinking about 1 message(s) " and completions[0].finish_reason == "stop"
    assert completions[3].finish_reason == "length" and completions[3].num_tokens == 4
    assert engine.stats.calls == 4 and engine.stats.prompt_tokens == 8 and engine.stats.loads == 0
    assert engine.stats.generated_tokens == sum(c.num_tokens for c in completions)


def test_at_most_concurrency_requests_are_in_flight():
    with StubServer(StubBehaviour(delay=0.15)) as server:
        engine = ServedEngine(expert(server.base_url, concurrency=3))
        started = time.perf_counter()
        engine.generate(requests_for(9))
        seconds = time.perf_counter() - started
    assert server.behaviour.most_in_flight == 3
    assert seconds < 9 * 0.15  # not one at a time


def test_429s_are_retried_after_the_servers_retry_after():
    with StubServer(StubBehaviour(fail_first=2, retry_after="0")) as server:
        engine = ServedEngine(expert(server.base_url, concurrency=1, max_retries=2))
        (completion,) = engine.generate(requests_for(1))
    assert completion.text.startswith("Thinking") and len(server.behaviour.seen) == 3
    with StubServer(StubBehaviour(fail_first=5, retry_after="0")) as server:
        engine = ServedEngine(expert(server.base_url, concurrency=1, max_retries=1))
        with pytest.raises(SymoeError, match=r"expert 'served-a' at http://127.0.0.1:\d+/v1 \(stub\): HTTP 429: rate limited \(after 2 tries\)"):
            engine.generate(requests_for(1))


@pytest.mark.parametrize("case, match", [
    ("down", r"at http://127.0.0.1:\d+/v1 \(stub\): cannot reach the server \(\[Errno 111\] Connection refused\) \(after 1 tries\)"),
    ("wrong model", r"\(nope\): the server serves stub, not 'nope'"),
    ("401", r"HTTP 401 with the key in \$SYMOE_TEST_KEY: Unauthorized"),
    ("no choices", r"\(stub\): a reply without choices"),
    ("timeout", r"\(stub\): no reply within 0.2 s \(after 1 tries\)"),
    ("unset key", r"api_key_env names \$SYMOE_UNSET_KEY, which is not set"),
])
def test_each_failure_is_one_line_naming_the_expert_and_the_endpoint(case, match, monkeypatch):
    monkeypatch.setenv("SYMOE_TEST_KEY", "wrong-secret")
    behaviour = StubBehaviour(api_key="right-secret" if case == "401" else None, choices_until=0 if case == "no choices" else None,
                              delay=1.0 if case == "timeout" else 0.0)
    served = {"max_retries": 0, "timeout": 0.2 if case == "timeout" else 30,
              "model": "nope" if case == "wrong model" else "stub",
              "api_key_env": {"401": "SYMOE_TEST_KEY", "unset key": "SYMOE_UNSET_KEY"}.get(case)}
    with StubServer(behaviour) as server:
        url = closed_port_url() if case == "down" else server.base_url
        with pytest.raises(SymoeError, match=match) as err:
            ServedEngine(expert(url, **served)).generate(requests_for(2))
    assert "\n" not in str(err.value) and "secret" not in str(err.value)


def test_the_key_goes_in_the_header_from_its_environment_variable(monkeypatch):
    monkeypatch.setenv("SYMOE_TEST_KEY", "right-secret")
    with StubServer(StubBehaviour(api_key="right-secret")) as server:
        (completion,) = ServedEngine(expert(server.base_url, api_key_env="SYMOE_TEST_KEY")).generate(requests_for(1))
    assert completion.text


def test_the_context_comes_from_the_server_else_the_pool_and_fitting_says_which_tokenizer():
    with StubServer(StubBehaviour(models={"stub": 1234, "bare": None})) as server:
        assert ServedEngine(expert(server.base_url, max_model_len=999)).context_limit() == 1234
        bare = ServedEngine(expert(server.base_url, model="bare", max_model_len=999))
        assert bare.context_limit() == 999
        tokenizer = bare.load_tokenizer()
        assert isinstance(tokenizer, ServerTokenizer) and bare.fitting.startswith("the server's own tokenizer at http://127.0.0.1:")
        assert tokenizer.encode("three words here") and len(tokenizer.encode("three words here")) == 3
        assert bare.describe_setup()["server_model"] == "/models/bare"


def test_the_cache_key_names_the_endpoint_and_the_served_model():
    request = requests_for(1)[0]
    keys = {request_key(expert(url, model=m), request) for url in ("http://a:1/v1", "http://b:1/v1") for m in ("x", "y")}
    assert len(keys) == 4
    assert request_key(expert("http://a:1/v1/", model="x"), request) == request_key(expert("http://a:1/v1", model="x"), request)


def test_a_failing_server_keeps_what_finished_and_a_rerun_sends_only_the_rest(tmp_path):
    factory = EngineFactory(engine_class("hf"), tmp_path / "cache")
    behaviour = StubBehaviour(choices_until=4)  # the server fails from its 5th request on
    reqs = requests_for(6)
    with StubServer(behaviour) as server:
        spec = expert(server.base_url, concurrency=1, max_retries=0)
        done = []
        with pytest.raises(SymoeError, match="a reply without choices"):
            for i, _ in factory.build(spec).iter_generate(reqs):
                done.append(i)
        assert len(done) == 4
        behaviour.choices_until, behaviour.seen[:] = None, []
        again = factory.build(spec).generate(reqs)
    assert len(behaviour.seen) == 2 and sum(c.cached for c in again) == 4


def test_served_groups_run_beside_each_other_and_take_no_room(tmp_path):
    shared = StubBehaviour(delay=0.2)
    with StubServer(shared) as one, StubServer(shared) as two:
        experts = {"a": expert(one.base_url, "a", concurrency=1), "b": expert(two.base_url, "b", concurrency=1)}
        factory = EngineFactory(engine_class("hf"), tmp_path / "cache")
        with Scheduler(lambda name: factory.build(experts[name]), max_loaded=1, progress=False) as scheduler:
            calls = [Call((m, i), m, r) for m in "ab" for i, r in enumerate(requests_for(3))]
            results = scheduler.run("experts", calls)
            summary = scheduler.summary()
    assert len(results) == 6 and shared.most_in_flight == 2  # one per endpoint, both at once
    assert summary["total_loads"] == 0 and summary["models"]["a"]["calls"] == 3
