"""benchmarks/routing_sim.py: its reference rows estimate what they say, and one run prints every row."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "routing_sim.py"
spec = importlib.util.spec_from_file_location("routing_sim", SCRIPT)
sim = sys.modules["routing_sim"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
spec.loader.exec_module(sim)


def test_james_stein_drops_deviations_that_are_noise_and_keeps_a_clear_specialist():
    overall = np.full(4, 0.5)
    answers = np.array([400.0, 400.0])
    # subject 0: every expert within a hair of its overall accuracy; subject 1: one expert far above
    hits = np.array([[201, 360], [199, 200], [200, 200], [200, 200]], dtype=float)
    skills = sim.james_stein_skills(hits, answers, overall)
    assert np.allclose(skills[:, 0], 0.5)  # spread below the binomial noise: no deviation kept
    assert skills[0, 1] > 0.85 and np.argmax(skills[:, 1]) == 0


def test_known_subjects_read_only_the_validation_questions_naming_each_subject():
    world = sim.make_world(sim.SHAPES[0], np.random.default_rng(0))
    q = lambda keywords: sim.SimQuestion([0], keywords, 0.0, np.zeros(len(world.names)))  # noqa: E731
    questions = [q(["subject0-v1", "generic3"]), q(["subject0-v2", "subject4-v0"]), q(["generic1"])]
    right = np.zeros((3, len(world.names)), dtype=bool)
    right[:, 0] = [True, False, True]
    hits, answers = sim.subject_answers(world, questions, right)
    assert answers[0] == 2 and answers[4] == 1 and answers.sum() == 3
    assert hits[0, 0] == 1 and hits[0, 4] == 0


def test_one_run_prints_every_router_and_reference_row_per_shape(tmp_path):
    out = tmp_path / "sim.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--replications", "2", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == out.read_text().strip()
    for shape in sim.SHAPES:
        assert f"### {shape.name}:" in done.stdout
    for row in ("instance", "task", "random", "calibrated", "records", *sim.CHEATS):
        assert done.stdout.count(f"| {row} |") == len(sim.SHAPES)


def test_leave_one_task_out_prints_every_arm(tmp_path):
    script = SCRIPT.with_name("unseen_task_sim.py")
    out = tmp_path / "unseen.md"
    done = subprocess.run([sys.executable, str(script), "--replications", "2", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == out.read_text().strip()
    for row in ("| instance | own |", "| instance | pooled |", "| records | own |", "| records | pooled |",
                "| task | pooled |", "| random | none |"):
        assert done.stdout.count(row) == 1
