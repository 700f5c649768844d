"""Symbolic-MoE on tasks it was not written for: a user's task from --include_path (local JSON)
and lm-eval's own gsm8k config over a local file. Profiled, then evaluated (fake engines)."""

import json
import re
from pathlib import Path

import lm_eval
import numpy as np
import pytest
from lm_eval.tasks import TaskManager

from fakes import use_fake_engines
from symoe_eval.harness.lm import lm_class
from symoe_eval.harness import plugin
from symoe_eval.harness import profiling
from symoe_eval.methods.symoe import SymbolicMoE
from symoe_eval.symbolic.profiles import load_profile

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Peru": "Lima", "Kenya": "Nairobi", "Chile": "Santiago"}
USER_TASK = """task: my_capitals
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {folder}/val.jsonl
    test: {folder}/test.jsonl
validation_split: validation
test_split: test
output_type: generate_until
doc_to_text: "What is the capital of {{{{country}}}}?"
doc_to_target: "{{{{capital}}}}"
generation_kwargs: {{until: [], max_gen_toks: 32, temperature: 0.7, do_sample: true}}
filter_list:
  - name: strict
    filter:
      - function: regex
        regex_pattern: "Capital: (\\\\w+)"
      - function: take_first
metric_list:
  - metric: exact_match
"""


def respond(name, request):
    """The keyword model says geography; qwen knows capitals, smollm always says Oslo; the
    aggregator repeats the last capital it was shown."""
    prompt = request.messages[-1][1]
    if "core knowledge" in prompt:
        return "Keywords: geography, capitals"
    if prompt.startswith("You have been provided"):
        quoted = prompt.rsplit("### Model", 1)[-1]  # the last response shown
        found = re.search(r"Capital: (\w+)|#### (\d+)", quoted)
        return f"Capital: {found.group(1)}" if found.group(1) else f"So\n#### {found.group(2)}"
    if "#### " in prompt or prompt.startswith("Question:"):  # gsm8k
        return "6 * 7 = 42\n#### 42" if name.startswith("qwen") else "I think\n#### 41"
    country = re.search(r"capital of (\w+)\?", prompt).group(1)
    return f"Capital: {CAPITALS[country] if name.startswith('qwen') else 'Oslo'}"


@pytest.fixture
def fakes(monkeypatch):
    plugin.activate()
    use_fake_engines(monkeypatch, respond, batch_size=8)
    monkeypatch.setattr(SymbolicMoE, "embed", lambda self, texts: np.eye(len(texts), 8))


def write_jsonl(path: Path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def profile_then_evaluate(tmp_path, task, folder):
    root = tmp_path / "profiles"
    profiling.profile_task("tiny-cpu", task, include_path=str(folder), profiles_root=str(root), cache_dir="none",
                            progress=False)
    profile = load_profile(root, "tiny-cpu", task)
    lm = lm_class("symoe")(pool="tiny-cpu", profiles=str(root), cache_dir="none", log_dir=str(tmp_path / "logs"))
    results = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=TaskManager(include_path=str(folder)))
    return profile, results["results"][task]


def test_a_users_task_from_include_path(tmp_path, fakes):
    folder = tmp_path / "tasks"
    folder.mkdir()
    items = [{"country": c, "capital": k} for c, k in CAPITALS.items()]
    write_jsonl(folder / "val.jsonl", items[:4])
    write_jsonl(folder / "test.jsonl", items[4:])
    (folder / "my_capitals.yaml").write_text(USER_TASK.format(folder=folder))
    profile, scores = profile_then_evaluate(tmp_path, "my_capitals", folder)
    assert profile.experts["qwen2.5-coder-0.5b"].accuracy == 1.0 and profile.experts["smollm2-135m"].accuracy == 0.0
    assert profile.keywords == ["capitals", "geography"] and profile.aggregator == "qwen2.5-coder-0.5b"
    assert scores["exact_match,strict"] == 1.0  # graded by the task's own filter and metric


def test_lm_evals_own_gsm8k_config_over_a_local_file(tmp_path, fakes):
    import lm_eval.tasks

    folder = tmp_path / "tasks"
    folder.mkdir()
    rows = [{"question": f"What is 6 times 7? ({i})", "answer": "6 * 7 = 42\n#### 42"} for i in range(3)]
    write_jsonl(folder / "train.jsonl", rows)
    write_jsonl(folder / "test.jsonl", rows)
    gsm8k = Path(lm_eval.tasks.__file__).parent / "gsm8k" / "gsm8k.yaml"
    (folder / "local_gsm8k.yaml").write_text(
        f"include: {gsm8k}\ntask: local_gsm8k\ntag: []\ndataset_path: json\ndataset_name: null\nnum_fewshot: 0\n"
        f"dataset_kwargs:\n  data_files:\n    train: {folder}/train.jsonl\n    test: {folder}/test.jsonl\n")
    profile, scores = profile_then_evaluate(tmp_path, "local_gsm8k", folder)
    assert profile.experts["qwen2.5-coder-0.5b"].accuracy == 1.0 and profile.experts["smollm2-135m"].accuracy == 0.0
    assert scores["exact_match,strict-match"] == 1.0
    # the routing log's answers are what the task's filter reads ("#### 42" -> 42), not our
    # extractor's (it found no "the answer is" and logged [invalid])
    (log,) = (tmp_path / "logs").glob("routing_symoe_*.jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["final_answer"] for r in rows} == {"42"}
    assert {(e["expert"], e["answer"]) for r in rows for e in r["responses"]} == {("qwen2.5-coder-0.5b", "42")}
    (annotations,) = (tmp_path / "profiles").rglob("annotations.jsonl")
    first = json.loads(annotations.read_text().splitlines()[0])
    assert first["answers"] == {"qwen2.5-coder-0.5b": ["42"], "smollm2-135m": ["41"]}
