"""Style codes of a run: the options that choose them (checked once for translate and
sample-styles), the StyleBank they make, and the `styles` file format that saves them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from munit_cli import __version__
from munit_cli.checkpoint import FORMAT_VERSION, load_tensors, parse_info, save_tensors
from munit_cli.errors import MunitError
from munit_cli.models import random_styles
from munit_cli.seeds import stable_seed

DEFAULT_NUM_STYLES = 8  # -n when not given: random codes per input (translate) or per file (sample-styles)


@dataclass(frozen=True, kw_only=True)
class StyleOptions:
    """The style options as the user gave them; `check()` is the one place they are validated."""

    num_styles: int | None = None  # -n/--num-styles; None: DEFAULT_NUM_STYLES
    seed: int = 0  # --seed of the random codes
    truncation: float = 1.0  # --truncation: random codes scaled toward 0
    per_image: bool = False  # --per-image (translate): fresh random codes per input
    refs: tuple[str, ...] = ()  # reference images whose styles to encode (--style-from / --from)
    refs_flag: str = "--style-from"  # how this command spells `refs` in messages
    mean: bool = False  # --mean-style (translate): one averaged reference style
    style_file: Path | None = None  # --style-file (translate): codes saved by sample-styles
    style: str = "random"  # --style (translate): the only named generator so far
    interpolate: bool = False  # --interpolate (sample-styles): codes on the line between two sources

    @property
    def n(self) -> int:
        return DEFAULT_NUM_STYLES if self.num_styles is None else self.num_styles

    def source_flag(self) -> str | None:
        """The option the codes come from when they are not random."""
        return self.refs_flag if self.refs else ("--style-file" if self.style_file else None)

    def check(self) -> list[str]:
        """Refuse bad values and combinations (MunitError, exit 2); return one warning line for
        each option that will be ignored."""
        if self.style != "random":
            raise MunitError(f"unknown --style {self.style!r}: it only accepts 'random'; use --style-from REF "
                             "or --style-file FILE", exit_code=2)
        if self.refs and self.style_file:
            raise MunitError("--style-from and --style-file are alternatives: pass only one", exit_code=2)
        if self.num_styles is not None and self.num_styles < 1:
            raise MunitError(f"--num-styles must be >= 1, got {self.num_styles}", exit_code=2)
        if self.truncation < 0:
            raise MunitError(f"--truncation must be >= 0, got {self.truncation}", exit_code=2)
        notes = []
        source = self.source_flag()
        if source:
            given = (("-n/--num-styles", self.num_styles is not None), ("--seed", self.seed != 0),
                     ("--per-image", self.per_image), ("--truncation", self.truncation != 1.0))
            ignored = [name for name, used in given if used]
            if ignored:
                notes.append(f"{', '.join(ignored)} ignored: styles come from {source}")
        if self.mean and not self.refs:
            notes.append("--mean-style ignored: it applies to --style-from references")
        if self.interpolate and not self.refs and self.num_styles not in (None, 2):
            notes.append("-n ignored with --interpolate: it draws the two end codes from --seed")
        return notes


def per_image_seed(seed: int, index: int) -> int:
    """A stable 63-bit seed for input `index` of a --per-image run (independent of PYTHONHASHSEED)."""
    return stable_seed("style", seed, index)


@dataclass
class StyleBank:
    """The style codes of a run and where they came from."""

    codes: Tensor  # (N, style_dim, 1, 1) float32 on CPU
    sources: list[str]  # per code, the JSON `style_source`: "random", "reference:PATH", "file:PATH" ...
    seed: int | None = None  # random codes: the seed they were drawn from
    truncation: float = 1.0  # random codes: scale toward 0
    per_image: bool = False  # random codes: fresh codes per input, seeded from (seed, index)
    domain: str | None = None  # styles file: the domain it was made for

    def __len__(self) -> int:
        return self.codes.shape[0]

    def grid_source(self) -> str:
        """`style_source` of a contact sheet: the common source, or "mixed"."""
        return self.sources[0] if len(set(self.sources)) == 1 else "mixed"

    def for_input(self, index: int) -> tuple[Tensor, int | None]:
        """(codes (N, style_dim, 1, 1), seed) used for input number `index`."""
        if not self.per_image:
            return self.codes, self.seed
        seed = per_image_seed(self.seed, index)
        return random_styles(len(self), self.codes.shape[1], seed, self.truncation), seed


def random_bank(n: int, style_dim: int, seed: int, truncation: float = 1.0, per_image: bool = False) -> StyleBank:
    """`n` codes drawn from N(0, I) on the CPU (n and truncation checked by StyleOptions.check)."""
    return StyleBank(random_styles(n, style_dim, seed, truncation), ["random"] * n, seed, truncation, per_image)


def interpolate_styles(s0: Tensor, s1: Tensor, steps: int) -> Tensor:
    """`steps` codes on the line from s0 to s1, both ends included: (steps, style_dim, 1, 1)."""
    if steps < 2:
        raise MunitError(f"--steps must be >= 2, got {steps}", exit_code=2)
    t = torch.linspace(0, 1, steps).view(-1, 1, 1, 1)
    return (1 - t) * s0.view(1, -1, 1, 1) + t * s1.view(1, -1, 1, 1)


def save_style_bank(path: Path | str, codes: Tensor, domain: str, source: str, seed: int | None, **extra: str) -> None:
    """Write a `styles` file: tensor `styles` (N, style_dim) float32 plus metadata."""
    codes = codes.detach().float().flatten(1)  # (N, style_dim)
    meta = {"format_version": str(FORMAT_VERSION), "kind": "styles", "domain": domain,
            "style_dim": str(codes.shape[1]), "source": source, "seed": "" if seed is None else str(seed),
            "munit_version": __version__, **extra}
    save_tensors(path, {"styles": codes}, meta)


def load_style_bank(path: Path | str, style_dim: int) -> StyleBank:
    """Read a `styles` file written by sample-styles and check it fits a model's style_dim."""
    info = parse_info(path)
    if info.kind != "styles":
        raise MunitError(f"{str(path)!r} is a {info.kind} checkpoint, not a styles file: make one with `munit sample-styles --out`")
    codes = load_tensors(path).get("styles")
    if codes is None or codes.dim() != 2 or codes.shape[0] < 1:
        raise MunitError(f"styles file {str(path)!r} has no (N, style_dim) tensor 'styles': re-create it with `munit sample-styles`")
    if codes.shape[1] != style_dim:
        raise MunitError(f"styles file {str(path)!r} has style_dim {codes.shape[1]} but the model expects {style_dim}: "
                         "use a styles file made for this model")
    seed = info.meta.get("seed", "")
    return StyleBank(codes.float().view(-1, style_dim, 1, 1), [f"file:{path}"] * codes.shape[0],
                     int(seed) if seed.lstrip("-").isdigit() else None, domain=info.meta.get("domain") or None)
