"""Two runs on one generation cache: the second reads what the first generates instead of
generating it again, and a run killed while generating never holds the other up."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RUN = """
import json, sys, time
sys.path.insert(0, {tests!r})
from fakes import FakeEngine, expert
from symoe_eval.engines import CachedEngine, GenerationCache, GenerationRequest, SamplingParams

def slow(name, request):
    time.sleep({seconds})  # a model working
    return "answer to " + request.messages[-1][1]

engine = CachedEngine(FakeEngine(expert("alpha"), respond=slow, batch_size=2), GenerationCache({cache!r}))
requests = [GenerationRequest.user(f"question {{i}}", SamplingParams(seed=0)) for i in range({n})]
print("started", flush=True)
texts = [c.text for c in engine.generate(requests)]
print(json.dumps({{"generated": engine.stats.calls, "cached": engine.stats.cached_calls,
                  "texts": texts}}), flush=True)
"""


def start(cache: Path, n: int = 8, seconds: float = 0.2) -> subprocess.Popen:
    code = RUN.format(tests=str(Path(__file__).parent), cache=str(cache), n=n, seconds=seconds)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_a_batch(cache: Path, process: subprocess.Popen) -> None:
    assert process.stdout.readline().strip() == "started"
    deadline = time.time() + 60
    while not (cache / "alpha.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)


def result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.splitlines()[-1])


def test_the_second_of_two_overlapping_runs_reads_the_first_ones_work(tmp_path):
    """Both runs ask for the same 8 generations at once: 8 are generated, not 16 (22 of 49 cache
    lines were duplicates in the drill before); both return the same texts."""
    first = start(tmp_path, seconds=0.5)
    wait_for_a_batch(tmp_path, first)
    second = start(tmp_path)  # while the first has 3 of its 4 micro-batches to go
    a, b = result(first), result(second)
    assert a["generated"] + b["generated"] == 8 and a["texts"] == b["texts"]
    lines = (tmp_path / "alpha.jsonl").read_text().splitlines()
    assert len(lines) == 8 and len({json.loads(line)["key"] for line in lines}) == 8


def test_a_run_killed_while_generating_does_not_hold_the_next_one_up(tmp_path):
    """The lock is the OS's: a SIGKILLed holder's is released at once, and the next run generates
    what the dead one left (whole micro-batches it finished are read, not redone)."""
    doomed = start(tmp_path, seconds=1.0)
    wait_for_a_batch(tmp_path, doomed)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    began = time.time()
    done = result(start(tmp_path, seconds=0.0))
    assert time.time() - began < 30
    assert done["cached"] >= 2 and done["generated"] + done["cached"] == 8


def test_a_thread_already_holding_a_models_lock_is_not_made_to_wait_for_itself(tmp_path):
    from symoe_eval.engines import GenerationCache

    cache = GenerationCache(tmp_path)
    with cache.generating("alpha"):
        with GenerationCache(tmp_path).generating("alpha"):  # flock alone would block here for ever
            pass
    assert (tmp_path / ".alpha.lock").read_text().startswith("pid ")
