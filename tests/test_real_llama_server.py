"""Served experts against a real peer server: llama.cpp through ``llama-cpp-python``'s OpenAI
server (``python -m llama_cpp.server``), one per tiny-cpu GGUF file on 127.0.0.1, reached with a
pool that has no local weights (the case of a remote server), and a context small enough that
the quoting prompts must be fitted with the server's own tokenizer (``/extras/tokenize``).

The server runs from the interpreter that ``$SYMOE_LLAMA_PYTHON`` names (``.ci/run`` builds
``llama-cpp-python[server]`` in a venv of its own, as it does vLLM's); without it these tests skip,
unless ``SYMOE_REQUIRE_LLAMA=1``."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import run_cli
from vllm_servers import free_port

pytestmark = pytest.mark.slow
LM_EVAL = str(Path(sys.executable).with_name("lm_eval"))
SERVER_CONTEXT = 2048
FITTED_CONTEXT = 280  # the pool's max_model_len: the aggregator's prompt must be cut to fit it


@pytest.fixture(scope="module")
def llama_python():
    python = os.environ.get("SYMOE_LLAMA_PYTHON")
    if not python or not Path(python).is_file():
        if os.environ.get("SYMOE_REQUIRE_LLAMA"):
            pytest.fail(f"SYMOE_REQUIRE_LLAMA is set but SYMOE_LLAMA_PYTHON ({python!r}) is not an interpreter")
        pytest.skip("no llama-cpp-python server (set SYMOE_LLAMA_PYTHON to the python of a venv that has it)")
    return python


def gguf_file(expert: str) -> str:
    from symoe_eval.pools.schema import load_pool
    from symoe_eval.pools.weights import resolve_weights

    folder, name = resolve_weights(load_pool("tiny-cpu").expert(expert))
    return str(Path(folder) / name)


def start(python: str, expert: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [python, "-m", "llama_cpp.server", "--model", gguf_file(expert), "--model_alias", expert,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(SERVER_CONTEXT), "--n_threads", "1"]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}/v1"


def wait_ready(process: subprocess.Popen, base_url: str, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if requests.get(base_url + "/models", timeout=5).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    pytest.fail(f"llama_cpp.server not ready in {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def llama_servers(llama_python, tmp_path_factory):
    logs = tmp_path_factory.mktemp("llama")
    started = {name: start(llama_python, name, logs / f"{name}.log") for name in ("smollm2-135m", "qwen2.5-coder-0.5b")}
    try:
        for name, (process, url) in started.items():
            wait_ready(process, url, logs / f"{name}.log")
        yield {name: url for name, (_, url) in started.items()}
    finally:
        for process, _ in started.values():
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def served_only_pool(path: Path, urls: dict) -> Path:
    """tiny-cpu's names (so its committed profiles apply) with no local weights: only served."""
    from symoe_eval.paths import registry_dir

    pool = yaml.safe_load((registry_dir() / "tiny-cpu.yaml").read_text())
    for expert in pool["experts"]:
        expert.pop("source")
        expert["served"] = {"base_url": urls[expert["name"]], "model": expert["name"], "concurrency": 1,
                            "max_model_len": FITTED_CONTEXT}
    path.write_text(yaml.safe_dump(pool))
    return path


def test_symoe_over_llama_cpp_servers_without_local_weights_fits_prompts_by_the_servers_tokenizer(llama_servers, tmp_path):
    pool = served_only_pool(tmp_path / "served.yaml", llama_servers)
    out = tmp_path / "out"
    done = run_cli([LM_EVAL, "--model", "symoe", "--model_args", f"pool={pool},cache_dir={tmp_path / 'gen'}",
                    "--tasks", "symoe_demo", "--limit", "2", "--gen_kwargs", "max_gen_toks=48", "--output_path", str(out),
                    "--log_samples"], cwd=tmp_path, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "counts no tokens for us" not in done.stderr  # the server counted them: /extras/tokenize
    summary = json.loads(next(out.rglob("routing_summary_*.json")).read_text())
    assert summary["backend"] == "openai" and summary["total_loads"] == 0
    assert summary["truncated_responses"] > 0, summary  # the aggregator's prompt was cut to fit the context
    assert [(s["name"], s["calls"]) for s in summary["stages"]] == [("keywords", 10), ("experts", 6), ("aggregation", 2)]
    setup = summary["reproducibility"]["models"]["smollm2-135m"]
    assert setup["endpoint"] == llama_servers["smollm2-135m"] and setup["max_model_len"] == FITTED_CONTEXT
