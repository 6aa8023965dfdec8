"""Atomic output files: a failed run must leave no half-written file behind."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (no race with threads)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _default_mode() -> int:
    """Permissions a plain ``open(path, 'w')`` would give (mkstemp's are 0600)."""
    return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: "str | os.PathLike[str]") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, _default_mode())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_files(paths: Sequence["str | os.PathLike[str]"]) -> Iterator[list[Path]]:
    """Like :func:`atomic_path` for a group of files that must appear together or not at all.

    Files are written into a private temporary folder beside the first target and moved into
    place only after the whole block succeeded. A target that the caller does not write is
    left untouched.
    """
    targets = [Path(p) for p in paths]
    if not targets:
        yield []
        return
    parent = targets[0].parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{targets[0].name}.", suffix=".tmp", dir=parent))
    try:
        staged = [staging / t.name for t in targets]
        yield staged
        for src, dst in zip(staged, targets):
            if src.exists():
                os.chmod(src, _default_mode())
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
