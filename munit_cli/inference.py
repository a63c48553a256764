"""Translation on tensors and files (SPEC section 1): each input's content code is computed
once and its N style codes are decoded in batches. No printing: callers get a callback.

Glossary: x_a input image of the source domain, c_a = gen_a.enc_content(x_a) its content,
s_b target style codes (N, style_dim, 1, 1), x_ab = gen_b.decode(c_a, s_b) (N, 3, H, W).
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from munit_cli import __version__
from munit_cli.atomic import remove_stale_temps
from munit_cli.checkpoint import FORMAT_VERSION, GeneratorBundle, load_tensors, parse_info, save_tensors
from munit_cli.errors import MunitError
from munit_cli.images import (DEFAULT_MAX_PIXELS, ImageError, discover_images, load_rgb, make_grid, resize_shorter,
                              save_image, to_tensor, to_uint8)
from munit_cli.models import Generator, random_styles
from munit_cli.seeds import stable_seed
from munit_cli.runtime import autocast, channels_last_ok, speed_settings

AUTO_BATCH_PIXELS = 8 * 256 * 256  # --batch-size auto: 8 styles at 256 px, fewer for larger images


# --- directions -------------------------------------------------------------------------

def _direction_label(bundle: GeneratorBundle, src: str, tgt: str) -> str:
    dom = dict(zip("ab", bundle.info.domains))
    return f"{dom[src]}2{dom[tgt]}"


def supported_directions(bundle: GeneratorBundle) -> list[str]:
    """'a2b' / 'b2a' for which the bundle holds the source content encoder and the target
    MLP + decoder (a direction-only export holds one)."""
    parts = {d: set(getattr(bundle.gens[d], "parts", ())) for d in "ab"}
    return [f"{s}2{t}" for s, t in (("a", "b"), ("b", "a"))
            if "enc_content" in parts[s] and {"mlp", "dec"} <= parts[t]]


def require_direction(bundle: GeneratorBundle, src: str, tgt: str, style_encoder: bool = False) -> None:
    """Refuse, with one clear line, a direction (or a target style encoder) the model lacks."""
    ok = supported_directions(bundle)
    if f"{src}2{tgt}" not in ok:
        want = _direction_label(bundle, src, tgt)
        if not ok:
            raise MunitError(f"{str(bundle.info.path)!r} holds no complete translation direction: re-export it")
        have = " and ".join(f"{_direction_label(bundle, d[0], d[-1])} ({d})" for d in ok)
        raise MunitError(f"this model was exported for {have} only; it cannot translate {want}: "
                         f"use --direction {ok[0]} or a model with both directions")
    if style_encoder:
        require_style_encoder(bundle, tgt)


def require_style_encoder(bundle: GeneratorBundle, d: str) -> None:
    if "enc_style" not in getattr(bundle.gens[d], "parts", ()):
        raise MunitError(f"this model has no style encoder for {bundle.info.domains['ab'.index(d)]!r}, so it cannot "
                         "encode reference images: use random styles or --style-file")


def resolve_direction(bundle: GeneratorBundle, to: str | None, direction: str | None) -> tuple[str, str]:
    """(src, tgt) keys from --to DOMAIN or --direction a2b|b2a|DOG2CAT; default a2b."""
    info = bundle.info
    names = {"a2b": ("a", "b"), "b2a": ("b", "a"),
             f"{info.domains[0]}2{info.domains[1]}": ("a", "b"), f"{info.domains[1]}2{info.domains[0]}": ("b", "a")}
    pair = None
    if direction is not None:
        if direction not in names:
            raise MunitError(f"unknown direction {direction!r}: use {', '.join(names)} "
                             f"(this model's domains are {info.domains[0]!r} (a) and {info.domains[1]!r} (b))", exit_code=2)
        pair = names[direction]
    if to is not None:
        tgt = info.domain_key(to)
        by_to = ("b", "a") if tgt == "a" else ("a", "b")
        if pair is not None and pair != by_to:
            raise MunitError(f"--to {to} contradicts --direction {direction}: pass only one", exit_code=2)
        pair = by_to
    return pair or ("a", "b")


# --- style codes ------------------------------------------------------------------------

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
    if n < 1:
        raise MunitError(f"--num-styles must be >= 1, got {n}", exit_code=2)
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


# --- tensors ----------------------------------------------------------------------------

def load_input(path: Path, size: int | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tensor:
    """Decode an image, resize its shorter side to `size` (None: keep), -> (3, H, W) in [-1, 1]."""
    img = load_rgb(path, max_pixels=max_pixels)
    return to_tensor(img if size is None else resize_shorter(img, size))


def _ready(gen: Generator, device: torch.device) -> Generator:
    """fp32 master weights on `device` (autocast handles lower precision), eval, no grads."""
    gen = gen.float().to(device).eval().requires_grad_(False)
    return gen.to(memory_format=torch.channels_last) if channels_last_ok(device) else gen


class Translator:
    """One direction of a loaded model on a device: content once, styles in batches."""

    def __init__(self, bundle: GeneratorBundle, src: str, tgt: str, device: torch.device,
                 precision: str = "fp32", batch_size: int | None = None, style_encoder: bool = False):
        require_direction(bundle, src, tgt, style_encoder)
        speed_settings(device)
        self.bundle, self.src, self.tgt = bundle, src, tgt
        self.device, self.precision, self.batch_size = device, precision, batch_size
        self.gen_src, self.gen_tgt = _ready(bundle.gens[src], device), _ready(bundle.gens[tgt], device)
        self.multiple = 2 ** bundle.info.model.gen.n_downsample
        self.style_dim = bundle.info.model.gen.style_dim
        self.direction = f"{src}2{tgt}"

    def _to_device(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True).unsqueeze(0) if x.dim() == 3 else x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if channels_last_ok(self.device) else x

    @torch.inference_mode()
    def content(self, x_a: Tensor) -> Tensor:
        """(3, H, W) -> c_a (1, C, Hp / m, Wp / m), from x_a reflect-padded to multiples of m,
        so decoding returns (Hp, Wp) and cropping gives back (H, W) (never a silent shrink)."""
        x = self._to_device(x_a)
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        with autocast(self.device, self.precision):
            return self.gen_src.enc_content(x)

    @torch.inference_mode()
    def style(self, x_b: Tensor) -> Tensor:
        """Reference image (3, H, W) -> its style code s_b (1, style_dim, 1, 1) float32 on CPU."""
        with autocast(self.device, self.precision):
            s = self.gen_tgt.enc_style(self._to_device(x_b))
        return s.float().cpu()

    def batch_for(self, c_a: Tensor) -> int:
        if self.batch_size:
            return self.batch_size
        pixels = c_a.shape[-2] * c_a.shape[-1] * self.multiple ** 2
        return max(1, AUTO_BATCH_PIXELS // pixels)

    @torch.inference_mode()
    def decode(self, c_a: Tensor, s_b: Tensor, hw: tuple[int, int]) -> Iterator[tuple[int, Tensor]]:
        """Decode c_a (1, C, h, w) with each style of s_b (N, style_dim, 1, 1), a batch at a time;
        yields (index of the first style, x_ab as uint8 (k, H, W, 3) on CPU, cropped to hw)."""
        bs = self.batch_for(c_a)
        s_b = s_b.to(self.device)
        for i in range(0, s_b.shape[0], bs):
            s = s_b[i:i + bs]
            c = c_a.expand(s.shape[0], -1, -1, -1)
            if channels_last_ok(self.device):
                c = c.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.precision):
                x_ab = self.gen_tgt.decode(c, s)  # (k, 3, Hp, Wp)
            yield i, to_uint8(x_ab[..., :hw[0], :hw[1]])  # the one host sync per batch

    def translate(self, x_a: Tensor, s_b: Tensor) -> Tensor:
        """(3, H, W) and (N, style_dim, 1, 1) -> x_ab uint8 (N, H, W, 3) on CPU."""
        c_a = self.content(x_a)
        return torch.cat([u8 for _, u8 in self.decode(c_a, s_b, tuple(x_a.shape[-2:]))])


def reference_bank(tr: Translator, refs: list[Path], size: int | None, max_pixels: int = DEFAULT_MAX_PIXELS,
                   mean: bool = False) -> StyleBank:
    """One style per reference image, encoded by the target domain's style encoder
    (or their mean with `mean`)."""
    require_style_encoder(tr.bundle, tr.tgt)
    codes = torch.cat([tr.style(load_input(p, size, max_pixels)) for p in refs])  # (R, style_dim, 1, 1)
    if mean:
        return StyleBank(codes.mean(0, keepdim=True), ["mean:" + ",".join(map(str, refs))])
    return StyleBank(codes, [f"reference:{p}" for p in refs])


def u8_to_unit(u8: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1] (exact inverse of to_uint8)."""
    return u8.movedim(-1, -3).float().div(127.5).sub(1)


def preview_grid(tr: Translator, images: list[Tensor], s_b: Tensor) -> Image.Image:
    """Contact sheet: one row per input image, the input then its translations with each style."""
    return make_grid([[x, *u8_to_unit(tr.translate(x, s_b))] for x in images])


# --- files ------------------------------------------------------------------------------

@dataclass
class Job:
    path: Path  # input image
    stem: Path  # output name without suffix, relative to the output folder


def plan_jobs(items: Iterable[str], exclude: Path | None = None) -> list[Job]:
    """Discover input images (files, folders, globs); outputs keep the sub-folder layout of a
    folder input. Images found under `exclude` (the output folder) by a folder or glob are
    left out, so a rerun does not translate its own outputs; duplicates count once."""
    jobs: list[Job] = []
    seen: set[Path] = set()
    stems: dict[Path, Path] = {}
    exclude = exclude.resolve() if exclude is not None else None
    for item in items:
        root = Path(item)
        for f in discover_images([item]):
            real = f.resolve()
            if real in seen or (exclude is not None and not root.is_file() and real.is_relative_to(exclude)):
                continue
            seen.add(real)
            stem = f.relative_to(root).with_suffix("") if root.is_dir() else Path(f.stem)
            if stem in stems:
                raise MunitError(f"inputs {str(stems[stem])!r} and {str(f)!r} would write the same outputs "
                                 f"({stem}_00 ...): rename one or translate them into different --outdir folders")
            stems[stem] = f
            jobs.append(Job(f, stem))
    if not jobs:
        raise MunitError("no input images to translate (all inputs are inside the output folder?)")
    return jobs


@dataclass
class Event:
    """One thing translate_files did, reported in input order."""

    kind: str  # "output" (a file was written) | "done" (an input finished) | "failed" (an input was skipped)
    input: Path
    output: Path | None = None
    style_index: int | None = None  # None for a grid
    style_source: str | None = None
    seed: int | None = None
    message: str = ""  # "failed": the one-line reason


@dataclass
class Summary:
    inputs: int
    written: int = 0
    skipped: int = 0  # existing outputs left as they were
    failed: list[tuple[Path, str]] = field(default_factory=list)


def output_path(outdir: Path, stem: Path, k: int | None, ext: str) -> Path:
    """`{stem}_{k:02d}.{ext}` for style k, `{stem}_grid.{ext}` for the contact sheet."""
    return outdir / stem.parent / f"{stem.name}_{'grid' if k is None else f'{k:02d}'}.{ext}"


def _prefetch(fn: Callable, items: list, workers: int) -> Iterator[tuple[object, object]]:
    """Yield (item, fn(item) or the ImageError it raised) in order, computed `workers` threads
    ahead so decoding overlaps the caller's compute."""
    def safe(item):
        try:
            return fn(item)
        except ImageError as e:
            return e
    if workers <= 0:
        yield from ((it, safe(it)) for it in items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="munit-load") as pool:
        window: collections.deque[tuple[object, Future]] = collections.deque()
        todo = iter(items)
        for it in todo:
            window.append((it, pool.submit(safe, it)))
            if len(window) >= 2 * workers:
                break
        while window:
            it, fut = window.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                window.append((nxt, pool.submit(safe, nxt)))
            yield it, fut.result()


def translate_files(tr: Translator, jobs: list[Job], bank: StyleBank, outdir: Path, *, ext: str = "png",
                    grid: bool = False, overwrite: bool = False, size: int | None = None,
                    max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 2,
                    report: Callable[[Event], None] | None = None) -> Summary:
    """Translate every job's image with every style of `bank` and write the outputs atomically.
    Existing outputs are skipped unless `overwrite`; an unusable input is reported and skipped."""
    report = report or (lambda e: None)
    summary = Summary(inputs=len(jobs))
    n = len(bank)
    work: list[tuple[int, Job, list[int], bool]] = []  # (input index, job, style indices to write, grid?)
    planned: dict[Path, set[str]] = {}  # folder -> output names, to sweep temp files of a killed run
    for i, job in enumerate(jobs):
        for k in [*range(n), *([None] if grid else [])]:
            p = output_path(outdir, job.stem, k, ext)
            planned.setdefault(p.parent, set()).add(p.name)
        todo = [k for k in range(n) if overwrite or not output_path(outdir, job.stem, k, ext).exists()]
        need_grid = grid and (overwrite or not output_path(outdir, job.stem, None, ext).exists())
        summary.skipped += n - len(todo) + (grid and not need_grid)
        if todo or need_grid:
            work.append((i, job, todo, need_grid))
        else:
            report(Event("done", job.path))
    for folder, names in planned.items():
        if folder.is_dir():
            remove_stale_temps(folder, names)
    pending: collections.deque[tuple[Future | None, Event]] = collections.deque()

    def drain(block: bool) -> None:
        while pending and (block or len(pending) > 64 or pending[0][0] is None or pending[0][0].done()):
            fut, event = pending.popleft()
            if fut is not None:
                fut.result()  # re-raises a failed write (e.g. disk full)
                summary.written += 1
            report(event)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="munit-write") as writer:
        def write(img_fn: Callable[[], Image.Image], path: Path, event: Event) -> None:
            pending.append((writer.submit(lambda: save_image(img_fn(), path)), event))

        loaded = _prefetch(lambda w: load_input(w[1].path, size, max_pixels), work, workers)
        for (i, job, todo, need_grid), x_a in loaded:
            if isinstance(x_a, ImageError):
                summary.failed.append((job.path, str(x_a)))
                pending.append((None, Event("failed", job.path, message=str(x_a))))
                drain(False)
                continue
            s_b, seed = bank.for_input(i)
            ks = list(range(n)) if need_grid else todo
            outs: list[Tensor] = []
            try:
                c_a = tr.content(x_a)
                for start, u8 in tr.decode(c_a, s_b[ks], tuple(x_a.shape[-2:])):
                    for j, k in enumerate(ks[start:start + u8.shape[0]]):
                        if k in todo:
                            path = output_path(outdir, job.stem, k, ext)
                            write(lambda a=u8[j]: Image.fromarray(a.numpy(), "RGB"), path,
                                  Event("output", job.path, path, k, bank.sources[k], seed))
                    outs.append(u8)
                    drain(False)
            except torch.OutOfMemoryError:
                msg = (f"out of memory translating {str(job.path)!r} at {x_a.shape[2]}x{x_a.shape[1]}: "
                       "use a smaller --size or --batch-size")
                summary.failed.append((job.path, msg))
                pending.append((None, Event("failed", job.path, message=msg)))
                continue
            if need_grid:
                path = output_path(outdir, job.stem, None, ext)
                cells = [x_a, *u8_to_unit(torch.cat(outs))]
                write(lambda c=cells: make_grid([c]), path, Event("output", job.path, path, None, bank.grid_source(), seed))
            pending.append((None, Event("done", job.path)))
            drain(False)
        drain(True)
    return summary
