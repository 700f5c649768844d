"""Hand-made lm-eval output folders in the exact layout ``--output_path ... --log_samples`` writes."""

import hashlib
import json
from pathlib import Path


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_run(root: Path, name: str, model_args: dict, tasks: dict[str, list[float]], stamp="2026-11-25T10-00-00.000001",
              prompt_suffix: str = "", model: str = "symoe_expert", wall: float = 12.0) -> Path:
    folder = root / name / "model_dir"
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
                }) + "\n")
    return path


def discordant(both: int, only_a: int, only_b: int, neither: int) -> tuple[list[float], list[float]]:
    a = [1.0] * both + [1.0] * only_a + [0.0] * only_b + [0.0] * neither
    b = [1.0] * both + [0.0] * only_a + [1.0] * only_b + [0.0] * neither
    return a, b
