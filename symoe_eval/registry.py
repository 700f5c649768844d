"""Named extension points (engines, routers, methods, benchmarks), as lm-eval's ``Registry``: a
name is registered once (a second, different entry under it is refused), an entry must be of the
registry's kind, and an unknown name is one line with the names there are and the closest one.

An entry may be lazy, ``"module:Attr"``: it is imported the first time its name is looked up, so
listing the names costs no imports.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from symoe_eval.errors import SymoeError

T = TypeVar("T")


def _import(target: str):
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise SymoeError(f"cannot import '{target}': {err}") from err


class Registry(Generic[T]):
    """``kind`` names the registry in errors (``engine``, ``routing``); ``base`` is the class every
    entry subclasses (``instances=True``: is an instance of), given as a class or lazily as
    ``"module:Class"``."""

    def __init__(self, kind: str, base: type | str, instances: bool = False):
        self.kind, self._base, self.instances = kind, base, instances
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, entry: T | str) -> T | str:
        """Adds ``name``; the same entry again is a no-op, another one under a taken name an error."""
        if not isinstance(name, str) or not name:
            raise SymoeError(f"a {self.kind} name must be a non-empty string, not {name!r}")
        if name in self._entries and not self._same(name, entry):
            raise SymoeError(f"{self.kind} '{name}' is already registered ({self._describe(name)}); "
                             f"unregister it first or choose another name")
        if not isinstance(entry, str):
            self._check(name, entry)
        self._entries[name] = entry
        return entry

    def _same(self, name: str, entry) -> bool:
        if self._entries[name] == entry:
            return True
        return self.get(name) is (_import(entry) if isinstance(entry, str) else entry)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry named ``name``, imported on first use."""
        if name not in self._entries:
            raise SymoeError(self.unknown(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._check(name, _import(entry))
            self._entries[name] = entry
        return entry

    def unknown(self, name: str, also: tuple[str, ...] = ()) -> str:
        """The one line for a name not registered (``also``: names accepted beside the entries)."""
        names = [*also, *self._entries]
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown {self.kind} '{name}'{hint}; choose one of {', '.join(names)}"

    def _check(self, name: str, entry):
        base = self.base
        fits = isinstance(entry, base) if self.instances else isinstance(entry, type) and issubclass(entry, base)
        if not fits:
            what = "an instance" if self.instances else "a subclass"
            raise SymoeError(f"{self.kind} '{name}' must be {what} of {base.__module__}.{base.__qualname__}, "
                             f"not {entry!r}")
        return entry

    @property
    def base(self) -> type:
        if isinstance(self._base, str):
            self._base = _import(self._base)
        return self._base

    def _describe(self, name: str) -> str:
        entry = self._entries[name]
        return entry if isinstance(entry, str) else f"{getattr(entry, '__module__', '?')}:{getattr(entry, '__qualname__', entry)}"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)
