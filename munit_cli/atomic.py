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


def _unwritable(folder: Path, e: OSError, what: str) -> MunitError:
    """The error for a folder that cannot be created or written, naming a file in the way."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    why = ("it is a file, not a folder" if blocker == folder else f"{str(blocker)!r} is a file, not a folder") \
        if blocker else (e.strerror or str(e))
    return MunitError(f"cannot write to {what}{str(folder)!r} ({why}): choose a writable output location")


def ensure_writable_dir(folder: Path | str, what: str = "") -> None:
    """Create `folder` if needed and prove a file can be written in it (before long work starts).
    `what` names the option in the error, e.g. "--outdir "."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise _unwritable(folder, e, what) from e


def remove_stale_temps(folder: Path | str, names: set[str] | None = None) -> int:
    """Delete temporary files that a killed atomic_write left in `folder` (only those for
    targets in `names`, when given). Returns how many were removed."""
    removed = 0
    for tmp in Path(folder).glob(".*.tmp"):
        target = tmp.name[1:-len(".tmp")].rsplit(".", 1)[0]
        if (names is None or target in names) and tmp.is_file():
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def atomic_write(path: Path | str, write: Callable[[object], None]) -> None:
    """Call `write(fileobj)` on a temporary file next to `path`, then rename it into place."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise _unwritable(folder, e, "") from e
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
