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
    from symoe_eval.runoutput import answers_digest

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


SUBJECTS = ("arithmetic", "chemistry", "geography", "programming", "medicine")


def symoe_question(doc: int) -> dict:
    """A synthetic routed question: its document, its three experts' responses and the final text."""
    gold = "ABCD"[doc % 4]
    experts = ["expert-a", "expert-b", "expert-c"] if doc % 3 else ["expert-a", "expert-a", "expert-b"]
    answers = [gold if (doc + i) % 3 else "ABCD"[(doc + 1) % 4] for i in range(3)]
    final = gold if doc % 5 else "[invalid]"
    return {
        "doc": {"question": f"Synthetic question {doc} about {SUBJECTS[doc % 5]}? The options are: (A) a (B) b (C) c (D) d",
                "gold_answer": gold, "category": SUBJECTS[doc % 5]},
        "routing": {
            "kind": "symoe", "task": "symoe_demo", "doc_id": doc, "repeat": 0, "experts": experts, "final_answer": final,
            "keywords": [] if doc % 7 == 0 else [SUBJECTS[doc % 5], "noise"],
            "mapped_keywords": [] if doc % 7 == 0 else [SUBJECTS[doc % 5]],
            "fallback": "no usable keyword" if doc % 7 == 0 else None, "weights": {},
            "responses": [{"expert": e, "answer": a, "text": f"{e} reasons about doc {doc}. The answer is ({a})."}
                          for e, a in zip(experts, answers)],
            "aggregator": "expert-a", "consensus": False, "prompts_cut": 2 if doc % 4 == 3 else 0,
        },
        "final_text": f"Synthesis for doc {doc}. " + (f"The answer is ({final})." if final != "[invalid]" else "I am not sure"),
    }


def write_symoe_run(root: Path, questions: int, stamp="2026-12-02T10-00-00.000001") -> Path:
    """A symoe run as lm-eval and our run log write it: results, samples (with docs, targets and
    filtered answers), the routing log and the run summary that points at it."""
    from symoe_eval.runoutput import answers_digest

    folder = root / "symoe" / "model_dir"
    folder.mkdir(parents=True, exist_ok=True)
    made = [symoe_question(doc) for doc in range(questions)]
    scores = [float(q["routing"]["final_answer"] == q["doc"]["gold_answer"]) for q in made]
    (folder / f"results_{stamp}.json").write_text(json.dumps({
        "results": {"symoe_demo": {"alias": "symoe_demo", "exact_match,answer": sum(scores) / questions}},
        "config": {"model": "symoe", "model_args": {"pool": "synthetic"}}, "total_evaluation_time_seconds": "60.0",
    }))
    with open(folder / f"samples_symoe_demo_{stamp}.jsonl", "w") as fh:
        for doc, (q, score) in enumerate(zip(made, scores)):
            fh.write(json.dumps({
                "doc_id": doc, "doc": q["doc"], "target": q["doc"]["gold_answer"], "filter": "answer",
                "resps": [[q["final_text"]]], "filtered_resps": [q["routing"]["final_answer"]],
                "exact_match": score, "doc_hash": sha(f"s{doc}"), "prompt_hash": sha(f"sp{doc}"),
            }) + "\n")
    log_path = folder / "routing_symoe_synthetic.jsonl"
    log_path.write_text("".join(json.dumps({**q["routing"], "final_text": q["final_text"]}) + "\n" for q in made))
    summary = {"schema_version": 2, "method": "symoe", "routing_log": str(log_path), "aggregators": {"symoe_demo": "expert-a"},
               "models": {"expert-a": {"calls": questions, "generated_tokens": 10 * questions, "loads": 1}},
               "answers_digest": answers_digest(("symoe_demo", d, q["final_text"]) for d, q in enumerate(made))}
    (folder / "routing_summary_symoe_synthetic.json").write_text(json.dumps(summary))
    return folder
