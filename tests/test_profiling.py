"""``symoe profile`` with fake engines on the packaged demo task (no weights run, no data folder)."""

import json

import symoe_eval.harness.profiling as profiling
from fakes import draw, use_fake_engines
from symoe_eval.symbolic.profiles import load_profile


def respond(name, request):
    """A sampling engine's reply: keywords name the question's subject; answers are drawn."""
    prompt = request.messages[-1][1]
    rng = draw(request)
    if "core knowledge, subjects or skills" in prompt:
        subject = "arithmetic" if "What is" in prompt else "general knowledge"
        return f"Keywords: {subject}, guess{rng.randrange(10**6)}"
    return f"Thinking ({rng.randrange(10**6)}). The answer is ({rng.choice('ABCD')})"


def test_profile_samples_are_distinct_draws(tmp_path, monkeypatch):
    use_fake_engines(monkeypatch, respond, batch_size=8)
    folder = profiling.profile_task("tiny-cpu", "symoe_demo", samples=3, profiles_root=str(tmp_path),
                                     cache_dir=str(tmp_path / "cache"), progress=False)
    rows = [json.loads(line) for line in open(folder / "annotations.jsonl")]
    assert len(rows) == 20
    per_question = [answers for row in rows for answers in row["answers"].values()]
    # three samples of one expert on one question are three draws, not one answer three times
    assert sum(len(set(a)) > 1 for a in per_question) > len(per_question) / 2
    profile = load_profile(str(tmp_path), "tiny-cpu", "symoe_demo")
    assert "arithmetic" in profile.keywords and not any(k.startswith("guess") for k in profile.keywords)
