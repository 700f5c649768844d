"""Golden outputs: ``symoe profile`` and every method through lm-eval by name, on a fake engine
registered like any backend, compared with files recorded before the house-plan reshape
(issue 19); the run-output schema's version 2 added fields to them once (``schema_version``,
each row's ``kind`` and ``prompts_cut``: no value before changed). A refactor must leave the
routing logs, returned texts, scores, run summaries and profile files as they are.
``SYMOE_RECORD_GOLDEN=1`` writes them anew (only on purpose).

Everything goes through public routes that outlive a reshape: ``register_engine`` and
``engine=golden``, ``symoe profile`` via ``symoe_eval.cli.main``, and ``lm_eval.simple_evaluate``
with a model name and a model_args string."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from fakes import FakeEngine, draw

GOLDEN = Path(__file__).parent / "golden"
RECORD = bool(os.environ.get("SYMOE_RECORD_GOLDEN"))
TINY_CPU = Path(__file__).parents[1] / "model_registry" / "tiny-cpu.yaml"  # its embedding model: real, small
EXPERTS = ("alpha", "beta", "gamma", "delta")
SKILLS = ("algebra", "biology", "chemistry", "history", "physics", "law")
VOLATILE = re.compile(r"(^|_)seconds$|^date$|^routing_log$")
DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d[:-]\d\d[:-]\d\d(\.\d+)?(\+00:00)?")


def respond(name: str, request) -> str:
    """Deterministic in the request alone, with experts of different habits: alpha mostly says
    (A), the others draw; the keyword model names two skills."""
    rng, prompt = draw(request), request.messages[-1][1]
    if "core knowledge" in prompt:
        return "Keywords: " + ", ".join(rng.sample(SKILLS, 2))
    letter = "A" if name == "alpha" and rng.random() < 0.7 else rng.choice("ABCD")
    return f"{name} reasons in {rng.randrange(100)} steps. The answer is ({letter})"


class GoldenEngine(FakeEngine):
    name = "golden"

    def __init__(self, spec, **kwargs):
        super().__init__(spec, respond=respond, **kwargs)


def normalized(value, tmp: str):
    """Without what changes from run to run (times, dates, temporary paths) or from one machine's
    arithmetic to another's (floats kept to 6 places: routing weights come from real embeddings)."""
    if isinstance(value, dict):
        return {k: normalized(v, tmp) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [normalized(v, tmp) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str):
        return DATE.sub("<date>", value.replace(tmp, "<tmp>"))
    return value


def check(name: str, produced, tmp: Path) -> None:
    path = GOLDEN / f"{name}.json"
    produced = json.loads(json.dumps(normalized(produced, str(tmp)), sort_keys=True, default=str))
    if RECORD:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(produced, indent=1, sort_keys=True) + "\n")
    assert path.is_file(), f"{path} is missing: record it with SYMOE_RECORD_GOLDEN=1"
    assert produced == json.loads(path.read_text()), f"{name} differs from {path}"


@pytest.fixture(scope="module")
def golden_pool(tmp_path_factory, tiny_cpu_weights):
    from symoe_eval.harness import plugin
    from symoe_eval.engines import register_engine

    plugin.activate()
    register_engine("golden", GoldenEngine)
    root = tmp_path_factory.mktemp("golden")
    experts = [{"name": n, "model": f"org/{n}", "source": {"hf_id": f"org/{n}"},
                "tags": ["expert", "keyword_model"] if n == "alpha" else ["expert"]} for n in EXPERTS]
    embedding = yaml.safe_load(TINY_CPU.read_text())["embedding_model"]
    (root / "golden.yaml").write_text(yaml.safe_dump({"name": "golden", "experts": experts, "embedding_model": embedding}))
    return root


def run_outputs(folder: Path) -> dict:
    """What a method left in its log folder: routing rows and run summary."""
    (summary,) = folder.glob("routing_summary_*.json")
    rows = [json.loads(line) for path in folder.glob("routing_*.jsonl") for line in path.read_text().splitlines()]
    return {"summary": json.loads(summary.read_text()), "rows": rows}


def evaluate(root: Path, name: str, model: str, args: str, task: str, limit: int) -> dict:
    import lm_eval

    logs = root / f"logs-{name}"
    results = lm_eval.simple_evaluate(
        model=model, model_args=f"pool={root / 'golden.yaml'},engine=golden,cache_dir=none,log_dir={logs},{args}",
        tasks=[task], limit=limit, log_samples=True)
    samples = [{"doc_id": s["doc_id"], "resps": s["resps"], "filtered_resps": s["filtered_resps"]}
               for s in sorted(results["samples"][task], key=lambda s: s["doc_id"])]
    return {"results": results["results"][task], "samples": samples, **run_outputs(logs)}


@pytest.fixture(scope="module")
def profiled(golden_pool):
    from symoe_eval.cli import main

    profiles = golden_pool / "profiles"
    assert main(["profile", "--pool", str(golden_pool / "golden.yaml"), "--task", "symoe_demo", "--limit", "10",
                 "--samples", "2", "--engine", "golden", "--profiles", str(profiles), "--cache-dir", "none",
                 "--max-gen-toks", "32"]) == 0
    return profiles


def test_symoe_profile_files(profiled, golden_pool):
    folder = profiled / "golden" / "symoe_demo"
    check("profile", {"profile": json.loads((folder / "profile.json").read_text()),
                      "annotations": [json.loads(line) for line in (folder / "annotations.jsonl").read_text().splitlines()],
                      "report": (folder / "report.md").read_text()}, golden_pool)


@pytest.mark.parametrize("model,args", [
    ("symoe", ""),
    ("symoe", "routing=task,k=2"),
    ("moa", "layers=2"),
    ("discussion", "rounds=1"),
])
def test_methods_through_lm_eval(profiled, golden_pool, model, args):
    name = f"{model}-{args.replace('=', '').replace(',', '-') or 'default'}"
    check(name, evaluate(golden_pool, name, model, f"profiles={profiled},{args}", "symoe_demo", 6), golden_pool)


def test_self_consistency_of_one_expert(golden_pool, data_dir, monkeypatch):
    monkeypatch.setenv("SYMOE_DATA_DIR", str(data_dir))
    name = "self-consistency"
    check(name, evaluate(golden_pool, name, "symoe_expert", "expert=beta", "symoe_gpqa_sc", 3), golden_pool)
