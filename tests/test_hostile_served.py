"""Served experts against a hostile server on 127.0.0.1 (tests/hostile_server.py): every reply
that is slow, endless, huge, redirected, malformed or lying ends as one line naming the expert
and the endpoint, within the request's deadline, and the key never shows in what we print."""

import logging
import time

import pytest

from hostile_server import HostileServer, Reply, chat, models
from symoe_eval.engines import GenerationRequest, SamplingParams
from symoe_eval.engines.served import ServedEngine
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec, ServedModel, parse_pool

KEY = "sk-secret-0123456789"


def engine_for(server, **served) -> ServedEngine:
    served = {"max_retries": 0, **served}
    return ServedEngine(ExpertSpec("hostile", "m", served=ServedModel(server.base_url, "stub", **served)))


def ask(engine):
    (completion,) = engine.generate([GenerationRequest.user("question", SamplingParams(max_tokens=16))])
    return completion


NOT_FOUND = Reply(404, {"error": {"message": "File Not Found"}})


def chat_server(reply, listing: dict | None = None):
    """A server whose chat completions answer ``reply`` (a Reply, or a callable giving the next);
    every other route but /v1/models is not found."""
    def script(handler, path, body):
        if path == "/v1/models":
            return Reply(body=listing or models())
        if path == "/v1/chat/completions":
            return reply() if callable(reply) else reply
        return NOT_FOUND
    return HostileServer(script)


def failure(engine) -> str:
    with pytest.raises(SymoeError) as err:
        ask(engine)
    line = str(err.value)
    assert "\n" not in line and "expert 'hostile' at http://127.0.0.1:" in line
    return line


def test_retry_after_is_capped_by_the_request_deadline():
    answers = iter([Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "100000000"}), Reply(body=chat())]
                   + [Reply(429, {}, {"Retry-After": "9" * 401}), Reply(body=chat())])
    with chat_server(lambda: next(answers)) as server:
        engine = engine_for(server, timeout=1.0, max_retries=1)
        started = time.monotonic()
        assert ask(engine).text == "The answer is (A)."  # waited at most the 1 s deadline
        assert ask(engine).text == "The answer is (A)."  # 401 digits: no OverflowError, the usual backoff
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("reply", [Reply(body=chat(), drip_s=0.02), Reply(endless=True)], ids=["dripped", "endless"])
def test_one_deadline_covers_the_whole_reply(reply):
    with chat_server(reply) as server:
        engine = engine_for(server, timeout=1.0)
        engine.load()
        started = time.monotonic()
        line = failure(engine)
    assert "no whole reply within 1 s" in line and time.monotonic() - started < 3


def test_a_reply_over_the_size_cap_is_refused_unread():
    with chat_server(Reply(body=chat("x" * 5000))) as server:
        assert "over max_reply_bytes (4096" in failure(engine_for(server, max_reply_bytes=4096))
    with chat_server(Reply(endless=True)) as server:
        assert "over max_reply_bytes (4096 bytes)" in failure(engine_for(server, max_reply_bytes=4096, timeout=20))


def test_redirects_stay_within_the_servers_origin():
    with chat_server(Reply(body=chat("from elsewhere"))) as other:
        with chat_server(Reply(307, {}, {"Location": other.base_url + "/chat/completions"})) as server:
            line = failure(engine_for(server))
        assert "redirect to http://127.0.0.1:" in line and "another origin; refused" in line
        assert other.posts("/v1/chat/completions") == 0  # the prompt never reached the other host
    with chat_server(Reply(307, {}, {"Location": "/v1/chat/completions"})) as server:
        assert "more than 5 redirects" in failure(engine_for(server))
        assert server.posts("/v1/chat/completions") == 6

    def moved(handler, path, body):
        if path == "/v1/models":
            return Reply(body=models())
        return Reply(body=chat("moved")) if path == "/v2/chat" else Reply(308, {}, {"Location": "/v2/chat"})
    with HostileServer(moved) as server:
        assert ask(engine_for(server)).text == "moved"  # same origin: followed, body kept


def test_a_reply_that_breaks_off_is_retried_then_one_line():
    with chat_server(Reply(body=chat(), broken=True)) as server:
        line = failure(engine_for(server, max_retries=1))
    assert "the reply broke off" in line and "(after 2 tries)" in line


@pytest.mark.parametrize("usage", ["many", [1, 2], {"prompt_tokens": float("inf"), "completion_tokens": 3},
                                   {"prompt_tokens": 5, "completion_tokens": -5}, {"prompt_tokens": 5, "completion_tokens": 1e30},
                                   {"prompt_tokens": 5, "completion_tokens": True}])
def test_usage_that_makes_no_sense_counts_as_unknown_and_is_said_once(usage, caplog):
    with chat_server(Reply(body=chat(usage=usage))) as server:
        engine = engine_for(server)
        with caplog.at_level(logging.WARNING):
            completions = engine.generate([GenerationRequest.user(f"q{i}", SamplingParams(max_tokens=16)) for i in range(3)])
    assert all(c.num_tokens >= 0 for c in completions) and engine.stats.generated_tokens >= 0
    assert engine.stats.generated_tokens <= 3 * 3 and engine.stats.prompt_tokens <= 3 * 5
    said = [r for r in caplog.records if "readable usage" in r.getMessage()]
    assert len(said) == 1


@pytest.mark.parametrize("body, message", [
    ({"id": "x", "choices": {"0": {}}}, "a reply without choices"),
    (chat(content=42), "content is a JSON number, not text"),
    (chat(content=["a"]), "content is a JSON list, not text"),
    (chat(content={"a": 1}), "content is a JSON object, not text"),
    ({"error": {"message": "the model is overloaded today", "type": "x"}}, "the server's error: the model is overloaded today"),
    ([1, 2, 3], "a reply that is a JSON list, not an object"),
    (b"[" * 100000, "a reply that is not JSON"),
])
def test_a_malformed_reply_is_one_line_with_the_servers_message(body, message):
    with chat_server(Reply(body=body)) as server:
        assert message in failure(engine_for(server))


@pytest.mark.parametrize("listing, message", [([{"id": "stub"}], "a /v1/models reply without a 'data' list (a JSON list)"),
                                              ({"data": "stub"}, "without a 'data' list")])
def test_a_malformed_model_listing_is_one_line(listing, message):
    with chat_server(Reply(body=chat()), listing) as server:
        assert message in failure(engine_for(server))


@pytest.mark.parametrize("said", ["abc", -5, 0, 1e30, [8192]])
def test_a_context_that_is_not_a_positive_integer_is_ignored_and_said(said, caplog):
    with chat_server(Reply(body=chat()), models(max_model_len=said)) as server:
        engine = ServedEngine(ExpertSpec("hostile", "m", served=ServedModel(server.base_url, "stub", max_model_len=4096)))
        with caplog.at_level(logging.WARNING):
            assert engine.context_limit() == 4096
    assert any("not a positive integer; ignored" in r.getMessage() for r in caplog.records)


def test_the_key_never_shows_in_errors_warnings_or_texts(monkeypatch, caplog):
    monkeypatch.setenv("HOSTILE_KEY", KEY)

    def echo(status):
        def script(handler, path, body):
            if path == "/v1/models":
                return Reply(body=models())
            said = f"you sent {handler.headers.get('Authorization')}"
            return Reply(200, chat(said)) if status == 200 else Reply(status, {"error": {"message": said}})
        return script
    for status in (401, 400, 500):
        with HostileServer(echo(status)) as server, caplog.at_level(logging.WARNING):
            line = failure(engine_for(server, api_key_env="HOSTILE_KEY", max_retries=1, timeout=2))
        assert KEY not in line and "Bearer ***" in line
    with HostileServer(echo(200)) as server:
        assert ask(engine_for(server, api_key_env="HOSTILE_KEY")).text == "you sent Bearer ***"
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert any("Bearer ***" in r.getMessage() for r in caplog.records)  # the 500's retry warning


def test_credentials_in_base_url_are_refused_like_a_key(tmp_path):
    text = "name: p\nexperts:\n  - name: a\n    model: m\n    served: {base_url: 'http://user:sk-abc@127.0.0.1:8001/v1', model: a}\n"
    with pytest.raises(SymoeError) as err:
        parse_pool(text, tmp_path / "p.yaml")
    assert "holds credentials" in str(err.value) and "sk-abc" not in str(err.value)


def llama_cpp_script(extras: bool):
    """llama.cpp's llama-server (``/tokenize`` with ``content``, ``/apply-template``, ``/props``)
    or llama-cpp-python's server (``/extras/tokenize``); tokens are words."""
    def script(handler, path, body):
        if path == "/v1/models":
            return Reply(body=models(owned_by="llamacpp"))
        if path == "/props" and not extras:
            return Reply(body={"default_generation_settings": {"n_ctx": 700}})
        if path == ("/extras/tokenize" if extras else "/tokenize"):
            text = body["input"] if extras else body["content"]
            return Reply(body={"tokens": [len(w) for w in text.split()]})
        if path == "/detokenize" and not extras:
            return Reply(body={"content": " ".join("w" * n for n in body["tokens"])})
        if path == "/extras/detokenize" and extras:
            return Reply(body={"text": " ".join("w" * n for n in body["tokens"])})
        if path == "/apply-template" and not extras:
            return Reply(body={"prompt": "".join(f"<{m['role']}> {m['content']} " for m in body["messages"]) + "<assistant>"})
        return Reply(404, {"error": {"code": 404, "message": "File Not Found"}})
    return script


@pytest.mark.parametrize("extras", [False, True], ids=["llama-server", "llama-cpp-python"])
def test_llama_cpp_servers_count_tokens_in_their_own_dialect(extras):
    with HostileServer(llama_cpp_script(extras)) as server:
        engine = ServedEngine(ExpertSpec("llama", "m", served=ServedModel(server.base_url, "stub", max_model_len=32768)))
        tokenizer = engine.load_tokenizer()
        assert tokenizer.encode("three word text") == [5, 4, 4]
        assert tokenizer.decode([2, 3]) == "ww www"
        templated = tokenizer.apply_chat_template([{"role": "user", "content": "hi there"}])
        assert engine.context_limit() == (32768 if extras else 700)  # llama.cpp's n_ctx, not the YAML's
    assert tokenizer.dialect == ("extras" if extras else "tokenize")
    assert templated == ("<|start|>user\nhi there<|end|>\n<|start|>assistant\n" if extras else "<user> hi there <assistant>")


def test_a_server_without_a_tokenizer_is_fitted_by_an_estimate_said_once(caplog):
    from symoe_eval.engines.served import EstimatedTokenizer

    with chat_server(Reply(404, {"error": {"message": "no"}})) as server:
        engine = engine_for(server)
        with caplog.at_level(logging.WARNING):
            tokenizer = engine.load_tokenizer()
            ids = tokenizer.encode("héllo wörld")
            tokenizer.encode("again")
    assert tokenizer.dialect == "estimate" and len(ids) == 6 and tokenizer.decode(ids) == "héllo wörld"
    assert sum("estimate of 2 characters a token" in r.getMessage() for r in caplog.records) == 1
    assert EstimatedTokenizer().decode(EstimatedTokenizer().encode("odd")) == "odd"
