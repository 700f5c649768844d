"""Publishing files and folders that several processes may build at once (an assembled GGUF file,
a de-quantized model copy): each builds in a scratch path of its own and renames it into place,
the first to finish wins, and scratch paths of processes that died are cleared. Output files
replace what is at their path, a symlink included, without writing through it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MARK = ".partial-"


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def scratch_path(target: Path) -> Path:
    """A path beside ``target`` that only this process writes; leftovers of dead processes (and of
    older versions' shared ``.partial``) are removed first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in target.parent.glob(f"{target.name}.partial*"):
        pid = old.name.rsplit(MARK, 1)[-1]
        if not pid.isdigit() or not _alive(int(pid)):
            _remove(old)
    return target.with_name(f"{target.name}{MARK}{os.getpid()}")


def publish(scratch: Path, target: Path) -> None:
    """Move ``scratch`` into place atomically; if another process got there first, keep theirs."""
    try:
        os.rename(scratch, target)
    except OSError:
        if not target.exists():
            raise
        _remove(scratch)


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file beside ``path`` and rename it over ``path``: a symlink or hard
    link at ``path`` is replaced, never written through, and a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(scratch, 0o644)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
