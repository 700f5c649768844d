"""Hand-made lm-eval output folders in the exact layout ``--output_path ... --log_samples`` writes."""

import hashlib
import json
from pathlib import Path


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_run(root: Path, name: str, model_args: dict, tasks: dict[str, list[float]], stamp="2026-11-25T10-00-00.000001",
              prompt_suffix: str = "", model: str = "symoe_expert", wall: float = 12.0, folder: Path | None = None) -> Path:
    folder = folder or root / name / "model_dir"
    folder.mkdir(parents=True, exist_ok=True)
    results = {
        "results": {t: {"alias": t, "exact_match,answer": sum(s) / len(s)} for t, s in tasks.items()},
        "config": {"model": model, "model_args": model_args},
        "total_evaluation_time_seconds": str(wall),
    }
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps(results))
    for task, scores in tasks.items():
        with open(folder / f"samples_{task}_{stamp}.jsonl", "w") as fh:
            for doc, score in enumerate(scores):
                fh.write(json.dumps({
                    "doc_id": doc, "filter": "answer", "exact_match": score, "metrics": ["exact_match"],
                    "doc_hash": sha(f"{task}-{doc}"), "prompt_hash": sha(f"{task}-{doc}{prompt_suffix}"),
                    "resps": [[answer_text(name, task, doc)]],
                }) + "\n")
    return path


def answer_text(name: str, task: str, doc: int) -> str:
    return f"{name} on {task} doc {doc}: The answer is (A)"


def run_summary(name: str, tasks: dict[str, list[float]], **fields) -> dict:
    """The run summary our models write for the run ``write_run(name, tasks)`` stands for."""
    from symoe_eval.analysis.runlog import answers_digest

    digest = answers_digest((t, d, answer_text(name, t, d)) for t, scores in tasks.items() for d in range(len(scores)))
    return {"answers_digest": digest, **fields}


def discordant(both: int, only_a: int, only_b: int, neither: int) -> tuple[list[float], list[float]]:
    a = [1.0] * both + [1.0] * only_a + [0.0] * only_b + [0.0] * neither
    b = [1.0] * both + [0.0] * only_a + [1.0] * only_b + [0.0] * neither
    return a, b


def write_builtin_run(root: Path, name: str, gsm8k: dict[str, list[float]], mmlu_math: list[float],
                      stamp="2026-11-25T11-00-00.000001") -> Path:
    """A run shaped like lm-eval's built-in tasks: gsm8k scored under two filters (strict-match,
    flexible-extract), and a member of the mmlu_pro group scored under custom-extract, with the
    group's own aggregate row (which has no samples file)."""
    folder = root / name / "model_dir"
    folder.mkdir(parents=True, exist_ok=True)
    gsm = {"alias": "gsm8k"}
    for filter_name, scores in gsm8k.items():
        gsm[f"exact_match,{filter_name}"] = sum(scores) / len(scores)
        gsm[f"exact_match_stderr,{filter_name}"] = 0.1
    math = {"alias": " - math", "exact_match,custom-extract": sum(mmlu_math) / len(mmlu_math),
            "exact_match_stderr,custom-extract": 0.1}
    results = {"results": {"gsm8k": gsm, "mmlu_pro": {"alias": "mmlu_pro", "exact_match,custom-extract": 0.5},
                           "mmlu_pro_math": math},
               "groups": {"mmlu_pro": {"alias": "mmlu_pro", "exact_match,custom-extract": 0.5}},
               "config": {"model": "hf", "model_args": {"pretrained": f"org/{name}"}}}
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps(results))
    with open(folder / f"samples_gsm8k_{stamp}.jsonl", "w") as fh:
        for doc in range(len(next(iter(gsm8k.values())))):
            for filter_name, scores in gsm8k.items():
                fh.write(json.dumps({"doc_id": doc, "filter": filter_name, "exact_match": scores[doc], "metrics": ["exact_match"],
                                     "doc_hash": sha(f"g{doc}"), "prompt_hash": sha(f"gp{doc}")}) + "\n")
    with open(folder / f"samples_mmlu_pro_math_{stamp}.jsonl", "w") as fh:
        for doc, score in enumerate(mmlu_math):
            fh.write(json.dumps({"doc_id": doc, "filter": "custom-extract", "exact_match": score, "metrics": ["exact_match"],
                                 "doc_hash": sha(f"m{doc}"), "prompt_hash": sha(f"mp{doc}")}) + "\n")
    return path
