"""Routing that must find skills: Symbolic-MoE on the specialists pool (real models, slow).

Each symoe_skills question needs one skill, and one LoRA adapter of the pool has it (the others
and the base answer almost none of them). With the committed profile, instance routing must
recruit a question's specialist for most of its slots and score above ``routing=random`` on the
same questions; a router that ignores skills recruits a given specialist for 1 slot in 6.
"""

import json

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow

SKILLS = ("addition", "reversal", "sorting", "comparison")
# Three test questions of each skill (the split holds 25 of each, in that order).
DOCS = [25 * skill + i for skill in range(len(SKILLS)) for i in range(3)]
# Shares and margins chance does not give: random routing recruits a given expert with p = 1/6 a
# slot, so 36 slots reach a half of specialists with p < 1e-5; see the README's specialists table
# for the full-split figures.
MIN_SPECIALIST_SHARE = 0.5
MIN_ACCURACY_MARGIN = 3  # questions out of 12


def run_symoe(workdir, routing: str):
    out = workdir / routing
    args = f"pool=specialists,routing={routing},cache_dir={workdir / 'gen'}"
    done = run_cli(["lm_eval", "--model", "symoe", "--model_args", args, "--tasks", "symoe_skills",
                    "--samples", json.dumps({"symoe_skills": DOCS}), "--batch_size", "8",
                    "--output_path", str(out), "--log_samples"], cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    (samples_file,) = out.rglob("samples_symoe_skills_*.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    (log_file,) = out.glob("routing_symoe_specialists_*.jsonl")
    routes = {row["doc_id"]: row for row in map(json.loads, log_file.read_text().splitlines())}
    return samples, routes


def specialist_share(samples, routes) -> float:
    """The share of recruited slots that went to the question's own specialist."""
    slots = [(f"smollm2-{s['doc']['category']}", e) for s in samples for e in routes[s["doc_id"]]["experts"]]
    return sum(want == got for want, got in slots) / len(slots)


def correct(samples) -> int:
    return sum(s["exact_match"] > 0 for s in samples)


def test_instance_routing_recruits_the_specialists_and_beats_random(tmp_path, tiny_cpu_weights):
    skilled, skilled_routes = run_symoe(tmp_path, "instance")
    chance, chance_routes = run_symoe(tmp_path, "random")
    assert len(skilled) == len(chance) == len(DOCS)
    share, random_share = specialist_share(skilled, skilled_routes), specialist_share(chance, chance_routes)
    assert share >= MIN_SPECIALIST_SHARE, (share, random_share)
    assert correct(skilled) >= correct(chance) + MIN_ACCURACY_MARGIN, (correct(skilled), correct(chance), share)
