"""Translation on tensors and files (SPEC section 1): each input's content code is computed
once and its N style codes are decoded in batches. No printing: callers get a callback.

Glossary: x_a input image of the source domain, c_a = gen_a.enc_content(x_a) its content,
s_b target style codes (N, style_dim, 1, 1), x_ab = gen_b.decode(c_a, s_b) (N, 3, H, W).
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from munit_cli.checkpoint import GeneratorBundle
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS, ImageError, discover_images, load_rgb, make_grid, resize_shorter, to_tensor, to_uint8
from munit_cli.models import Generator, random_styles
from munit_cli.naming import Job, output_path, plan_jobs  # noqa: F401  (re-exported: the file-run API)
from munit_cli.outputs import Event, OrderedWriter, Summary, WorkItem, plan_outputs
from munit_cli.runtime import autocast, channels_last_ok, speed_settings
from munit_cli.styles import (StyleBank, StyleOptions, interpolate_styles, load_style_bank,  # noqa: F401
                              per_image_seed, random_bank, save_style_bank)

AUTO_BATCH_PIXELS = 8 * 256 * 256  # --batch-size auto: 8 styles at 256 px, fewer for larger images


# --- directions -------------------------------------------------------------------------

def _direction_label(bundle: GeneratorBundle, src: str, tgt: str) -> str:
    dom = dict(zip("ab", bundle.info.domains))
    return f"{dom[src]}2{dom[tgt]}"


def supported_directions(bundle: GeneratorBundle) -> list[str]:
    """'a2b' / 'b2a' for which the bundle holds the source content encoder and the target
    MLP + decoder (a direction-only export holds one)."""
    parts = {d: set(bundle.parts.get(d, ())) for d in "ab"}
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
    if "enc_style" not in bundle.parts.get(d, ()):
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


# --- tensors ----------------------------------------------------------------------------

def load_input(path: Path, size: int | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tensor:
    """Decode an image, resize its shorter side to `size` (None: keep), -> (3, H, W) in [-1, 1]."""
    return input_tensor(load_rgb(path, max_pixels=max_pixels), size)


def input_tensor(img: Image.Image, size: int | None) -> Tensor:
    """A decoded RGB image -> x (3, H, W) in [-1, 1], its shorter side resized to `size` (None: keep)."""
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
                   mean: bool = False, load: Callable[[Path], Tensor] | None = None) -> StyleBank:
    """One style per reference image, encoded by the target domain's style encoder
    (or their mean with `mean`). `load` turns a reference file into the (3, H, W) image
    encoded (default: load_input at `size`; translate --heads: its head crop)."""
    require_style_encoder(tr.bundle, tr.tgt)
    load = load or partial(load_input, size=size, max_pixels=max_pixels)
    codes = torch.cat([tr.style(load(p)) for p in refs])  # (R, style_dim, 1, 1)
    if mean:
        return StyleBank(codes.mean(0, keepdim=True), ["mean:" + ",".join(map(str, refs))])
    return StyleBank(codes, [f"reference:{p}" for p in refs])


def u8_to_unit(u8: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1] (exact inverse of to_uint8)."""
    return u8.movedim(-1, -3).float().div(127.5).sub(1)


def preview_grid(tr: Translator, images: list[Tensor], s_b: Tensor) -> Image.Image:
    """Contact sheet: one row per input image, the input then its translations with each style."""
    return make_grid([[x, *u8_to_unit(tr.translate(x, s_b))] for x in images])



# --- style banks --------------------------------------------------------------------------

def make_bank(tr: Translator, opts: StyleOptions, *, size: int | None, max_pixels: int = DEFAULT_MAX_PIXELS,
              load: Callable[[Path], Tensor] | None = None) -> tuple[StyleBank, list[str]]:
    """The StyleBank `opts` choose (checked by opts.check()) for `tr`'s target, plus a warning
    line when a styles file was made for the other domain. `load`: as in reference_bank."""
    if opts.refs:
        return reference_bank(tr, discover_images(list(opts.refs)), size, max_pixels, mean=opts.mean, load=load), []
    if opts.style_file:
        bank = load_style_bank(opts.style_file, tr.style_dim)
        target = tr.bundle.info.domains["ab".index(tr.tgt)]
        if bank.domain and bank.domain not in (target, tr.tgt):
            return bank, [f"styles file {str(opts.style_file)!r} was made for domain {bank.domain!r} "
                          f"but the target is {target!r}"]
        return bank, []
    return random_bank(opts.n, tr.style_dim, opts.seed, opts.truncation, opts.per_image), []


def sample_codes(tr: Translator | None, opts: StyleOptions, style_dim: int, *, steps: int, size: int | None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Tensor, str, int | None]:
    """The codes `munit sample-styles` writes: (codes (N, style_dim, 1, 1), source, seed or None).
    References need `tr` (its target is the styles' domain)."""
    if opts.refs:
        refs = discover_images(list(opts.refs))
        if opts.interpolate and len(refs) != 2:
            raise MunitError(f"--interpolate needs exactly two --from images, got {len(refs)}", exit_code=2)
        codes = reference_bank(tr, refs, size, max_pixels).codes
        source = ("interpolate:" if opts.interpolate else "references:") + ",".join(str(p) for p in refs)
    else:
        codes = random_styles(2 if opts.interpolate else opts.n, style_dim, opts.seed, opts.truncation)
        source = "interpolate:random" if opts.interpolate else "random"
    if opts.interpolate:
        codes = interpolate_styles(codes[0], codes[1], steps)  # (steps, style_dim, 1, 1)
    return codes, source, None if opts.refs else opts.seed


# --- files ------------------------------------------------------------------------------

def prefetch(fn: Callable, items: list, workers: int) -> Iterator[tuple[object, object]]:
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


def _rgb(u8: Tensor) -> Image.Image:
    """uint8 (H, W, 3) -> RGB image (made on a writer thread)."""
    return Image.fromarray(u8.numpy(), "RGB")


@dataclass
class Prepared:
    """An input ready to translate: x_a, what the model sees, and how its outputs become the
    pictures written (here: as they are; translate --heads pastes them back into the photo)."""

    x_a: Tensor  # (3, H, W) in [-1, 1]

    def render(self, x_ab: Tensor) -> Image.Image:
        """One output, uint8 (H, W, 3), -> the picture to save (called on a writer thread)."""
        return _rgb(x_ab)

    def sheet(self, x_ab: Tensor) -> Image.Image:
        """The contact sheet of all outputs (N, H, W, 3): the input, then each output."""
        return make_grid([[self.x_a, *u8_to_unit(x_ab)]])


@dataclass
class Skipped:
    """An input that is left out on purpose (no head found): `message` says why."""

    message: str


def prepare_input(path: Path, size: int | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
    """The plain preparation: the image at `size` (shorter side; None: its own size)."""
    return Prepared(load_input(path, size, max_pixels))


def _ignore(event: Event) -> None:
    pass


def _translate_item(tr: Translator, item: WorkItem, prep: Prepared, bank: StyleBank, writer: OrderedWriter) -> str | None:
    """Decode one input's missing outputs into `writer`; the reason if it ran out of memory."""
    x_a = prep.x_a
    s_b, seed = bank.for_input(item.index)
    ks = item.styles_to_decode(len(bank))
    outs: list[Tensor] = []
    try:
        c_a = tr.content(x_a)
        for start, u8 in tr.decode(c_a, s_b[ks], tuple(x_a.shape[-2:])):
            for j, k in enumerate(ks[start:start + u8.shape[0]]):
                path = item.outputs.get(k)
                if path is not None:
                    writer.write(partial(prep.render, u8[j]), path,
                                 Event("output", item.job.path, path, k, bank.sources[k], seed))
            outs.append(u8)
    except torch.OutOfMemoryError:
        return (f"out of memory translating {str(item.job.path)!r} at {x_a.shape[2]}x{x_a.shape[1]}: "
                "use a smaller --size or --batch-size")
    if item.grid is not None:
        writer.write(partial(prep.sheet, torch.cat(outs)), item.grid,
                     Event("output", item.job.path, item.grid, None, bank.grid_source(), seed))
    return None


def translate_files(tr: Translator, jobs: list[Job], bank: StyleBank, outdir: Path, *, ext: str = "png",
                    grid: bool = False, overwrite: bool = False, size: int | None = None,
                    max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 2,
                    report: Callable[[Event], None] | None = None,
                    prepare: Callable[[Path], Prepared | Skipped] | None = None) -> Summary:
    """Translate every job's image with every style of `bank` and write the outputs atomically.
    Existing outputs are skipped unless `overwrite`; an unusable input is reported and skipped.
    `prepare` turns an input file into a Prepared (default: prepare_input at `size`) or a
    Skipped, reported as such (translate --heads: a photo without a head)."""
    report = report or _ignore
    plan = plan_outputs(jobs, len(bank), outdir, ext, grid=grid, overwrite=overwrite)
    summary = Summary(inputs=len(jobs), skipped=plan.skipped)
    for job in plan.complete:
        report(Event("done", job.path))
    plan.sweep_stale_temps()
    prepare = prepare or partial(prepare_input, size=size, max_pixels=max_pixels)
    with OrderedWriter(workers, report) as writer:
        for item, prep in prefetch(lambda it: prepare(it.job.path), plan.work, workers):
            if isinstance(prep, Skipped):
                summary.passed.append((item.job.path, prep.message))
                writer.note(Event("skipped", item.job.path, message=prep.message))
                continue
            failure = str(prep) if isinstance(prep, ImageError) else _translate_item(tr, item, prep, bank, writer)
            if failure:
                summary.failed.append((item.job.path, failure))
                writer.note(Event("failed", item.job.path, message=failure))
            else:
                writer.note(Event("done", item.job.path))
    summary.written = writer.written
    return summary
