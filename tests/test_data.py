"""The one dataset loader: the authors' local files, hub conversions, and one-line errors."""

import os
import subprocess
import sys

import pytest

from symoe_eval.harness import task_functions as data
from symoe_eval.errors import SymoeError

PAPER_SIZES = {"mmlu_pro": (350, 2100), "gpqa": (249, 198), "aime24": (354, 30), "medmcqa": (504, 4183)}


@pytest.mark.parametrize("key", sorted(PAPER_SIZES))
def test_local_splits_have_the_paper_sizes(data_dir, key):
    splits = data.load_splits(key, str(data_dir))
    assert (len(splits["train"]), len(splits["test"])) == PAPER_SIZES[key]
    first = splits["test"][0]
    assert set(first) == {"question", "gold_answer", "category"}
    assert first["question"] and first["gold_answer"]


def test_env_var_names_the_folder(data_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_dir))
    dataset = data.load_dataset("gpqa", unrelated_metadata_key=1)
    assert dataset["test"].num_rows == 198
    assert "The options are:" in dataset["test"][0]["question"]


def test_explicit_data_dir_wins_over_env(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))  # empty folder
    assert len(data.load_splits("aime24", str(data_dir))["test"]) == 30


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(SymoeError) as err:
        data.load_splits("gpqa", str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "GPQA_test.json" in message or "GPQA_train.json" in message


def test_malformed_file_is_one_line(tmp_path):
    (tmp_path / "GPQA_train.json").write_text('[{"q": 1}]')
    (tmp_path / "GPQA_test.json").write_text("[]")
    with pytest.raises(SymoeError, match="not a JSON list") as err:
        data.load_splits("gpqa", str(tmp_path))
    assert "\n" not in str(err.value)


def test_offline_hub_failure_names_the_env_var(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Idavidrein/gpqa' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(data, "_hub_rows", offline)
    with pytest.raises(SymoeError) as err:
        data.load_splits("gpqa")
    message = str(err.value)
    assert "\n" not in message
    assert data.DATA_DIR_ENV in message and "Hugging Face hub" in message


def test_real_offline_hub_is_one_line(tmp_path):
    """The real datasets library with the hub unreachable, in a fresh process as a user has it."""
    code = (
        "from symoe_eval.harness import task_functions as data\n"
        "try:\n    data.load_splits('aime24')\n"
        "except data.SymoeError as err:\n    print(err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    env.pop(data.DATA_DIR_ENV, None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout + done.stderr
    assert data.DATA_DIR_ENV in lines[0] and "AIME24" in lines[0]


def test_unknown_benchmark():
    with pytest.raises(SymoeError, match="unknown benchmark"):
        data.load_splits("mmlu")


def test_convert_mmlu_pro_samples_per_category_with_a_fixed_seed():
    rows = [
        {"question": f"q{c}{i}", "options": ["x", "y", "z"], "answer": "B", "category": c}
        for c in ("law", "math")
        for i in range(200)
    ]
    splits = data.convert_mmlu_pro(rows)
    assert len(splits["test"]) == 300 and len(splits["train"]) == 50
    assert {r["category"] for r in splits["test"]} == {"law", "math"}
    assert splits == data.convert_mmlu_pro(rows)  # same seed, same split
    test_qs = {r["question"] for r in splits["test"]}
    assert not test_qs & {r["question"] for r in splits["train"]}  # disjoint
    assert splits["test"][0]["question"].endswith("The options are: (A) x (B) y (C) z")


def test_convert_gpqa_shuffles_reproducibly_and_tracks_the_gold():
    rows = [
        {
            "Question": f"Q{i}?",
            "Correct Answer": f"right{i}",
            "Incorrect Answer 1": "w1",
            "Incorrect Answer 2": "w2",
            "Incorrect Answer 3": "w3",
        }
        for i in range(40)
    ]
    items = data.convert_gpqa(rows)
    assert items == data.convert_gpqa(rows)
    assert len({r["gold_answer"] for r in items}) > 1  # the correct answer moves around
    for i, item in enumerate(items):
        assert f"({item['gold_answer']}) right{i}" in item["question"]
        assert "\n\nThe options are: (A)" in item["question"]


def test_convert_aime_and_medmcqa():
    assert data.convert_aime([{"Problem": "p", "Answer": 204}]) == [
        {"question": "p", "gold_answer": "204", "category": ""}
    ]
    older = data.convert_aime([{"Question": "a", "Answer": "7", "Year": 2023}, {"Question": "b", "Answer": 1, "Year": 2024}],
                              before_year=2024)
    assert [r["question"] for r in older] == ["a"]
    med = data.convert_medmcqa([{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 2}])
    assert med[0]["gold_answer"] == "C"
    assert med[0]["question"] == "q The options are: (A) a (B) b (C) c (D) d"
