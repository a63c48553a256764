"""Where models come from: `--model PATH|RUN_DIR|NAME` resolved to a .safetensors file.

Names are looked up in the weights directories: $MUNIT_WEIGHTS_DIR, the source checkout's
`weights/`, then `<prefix>/share/munit/weights` (where `pip install .` puts shipped models).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from munit_cli.errors import MunitError

DEFAULT_MODEL = "heads-cat-dog-small.safetensors"
DEFAULT_DETECTOR = "pets-heads-detector.safetensors"  # munit heads, translate --heads
SUFFIX = ".safetensors"
ENV_VAR = "MUNIT_WEIGHTS_DIR"


def weights_dirs() -> list[Path]:
    """Folders searched for model names, in order (existing or not)."""
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(Path(__file__).resolve().parents[1] / "weights")  # source checkout
    dirs.append(Path(sys.prefix) / "share" / "munit" / "weights")  # pip install . (data-files)
    return dirs


def available_models() -> list[str]:
    """Names of the .safetensors files in the weights directories (first occurrence wins)."""
    names: list[str] = []
    for d in weights_dirs():
        if d.is_dir():
            names += [p.name for p in sorted(d.glob(f"*{SUFFIX}")) if p.name not in names]
    return names


def _find_named(name: str) -> Path | None:
    candidates = [name] if name.endswith(SUFFIX) else [name + SUFFIX, name]
    for d in weights_dirs():
        for c in candidates:
            if (d / c).is_file():
                return d / c
    return None


def _listing() -> str:
    names = available_models()
    return f"installed models: {', '.join(names)}" if names else "no models are installed"


def resolve_model(spec: str | Path | None) -> Path:
    """A checkpoint path from a file path, a run directory (its checkpoints/latest.safetensors)
    or a model name; None means the shipped default model."""
    if spec is None:
        found = _find_named(DEFAULT_MODEL)
        if found is None:
            raise MunitError("no default model is installed: pass --model PATH (a .safetensors checkpoint or run directory)")
        return found
    path = Path(spec).expanduser()
    if path.is_dir():
        for cand in (path / "checkpoints" / "latest.safetensors", path / "latest.safetensors"):
            if cand.is_file():
                return cand
        raise MunitError(f"folder {str(spec)!r} is not a run directory (no checkpoints/latest.safetensors): "
                         "pass a run directory or a .safetensors file")
    if path.is_file():
        return path
    if len(path.parts) == 1:  # a bare name: look it up in the weights directories
        found = _find_named(str(spec))
        if found is not None:
            return found
        raise MunitError(f"model {str(spec)!r} not found: it is not a file and not a name in the weights "
                         f"directories ({_listing()}); pass a .safetensors path or a run directory")
    raise MunitError(f"model {str(spec)!r} does not exist: pass a .safetensors checkpoint, a run directory, "
                     f"or a model name ({_listing()})")


def resolve_detector(spec: str | Path | None) -> Path:
    """A head detector file from a path or a name in the weights directories; None means the
    shipped detector."""
    if spec is None:
        found = _find_named(DEFAULT_DETECTOR)
        if found is None:
            raise MunitError(f"no head detector is installed ({DEFAULT_DETECTOR} is in no weights directory): "
                             "pass --detector FILE, or train one with `munit train-detector`")
        return found
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    found = _find_named(str(spec)) if len(path.parts) == 1 else None
    if found is None:
        raise MunitError(f"head detector {str(spec)!r} does not exist: pass a .safetensors file written by "
                         "`munit train-detector` (or leave --detector out for the shipped one)")
    return found
