"""Atomic file writes: temporary file in the target folder, fsync, rename over the target.

A write that fails or is killed half-way leaves the previous file intact and no partial
file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from munit_cli.errors import MunitError


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path | str, write: Callable[[object], None]) -> None:
    """Call `write(fileobj)` on a temporary file next to `path`, then rename it into place."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise MunitError(f"cannot write to {str(folder)!r} ({e.strerror or e}): choose a writable output location")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise MunitError(f"could not write {str(path)!r} ({e.strerror or e}); the previous file, if any, is unchanged") from e
        raise
    _fsync_dir(folder)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def refuse_overwrite(path: Path | str, overwrite: bool) -> None:
    """Raise MunitError if `path` exists and the user did not pass --overwrite."""
    if Path(path).exists() and not overwrite:
        raise MunitError(f"{str(path)!r} already exists: pass --overwrite to replace it, or choose another --out")
