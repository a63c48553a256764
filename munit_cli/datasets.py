"""Training data: domain folder resolution, augmentation, and endless unpaired streams.

Every sample is addressed by (domain, position in its stream), so the order, crops and
flips are a pure function of the seed: resuming at a position continues the same stream,
with or without DataLoader workers, and each DDP rank reads its own shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS, ImageError, find_images, load_rgb, resize_shorter, to_tensor
from munit_cli.seeds import stable_seed


def resolve_domain(root: Path | None, name: str) -> Path:
    """`--src dog` -> the first existing of ROOT/dog, ROOT/train/dog; an existing folder
    path works as is. The error lists every place tried."""
    if not name:  # Path("") would silently mean the current folder
        raise MunitError("no domain given: pass --src and --tgt (folders, or names under --data)", exit_code=2)
    tried: list[Path] = []
    direct = Path(name)
    if root is None or direct.is_absolute() or direct.is_dir():
        tried.append(direct)
        if direct.is_dir():
            return direct
    if root is not None:
        for cand in (Path(root) / name, Path(root) / "train" / name):
            tried.append(cand)
            if cand.is_dir():
                return cand
    raise MunitError(f"domain {name!r} not found: tried {', '.join(str(t) for t in tried)}; "
                     "pass --data ROOT or an existing folder")


def display_folder(root: Path | None, name: str, train_dir: Path) -> Path | None:
    """A val/test folder for display images (AFHQ layout), if one exists."""
    bases = [train_dir.parent.parent] if train_dir.parent.name == "train" else []
    if root is not None:
        bases.insert(0, Path(root))
    for base in bases:
        for split in ("val", "test"):
            cand = base / split / Path(name).name
            if cand.is_dir() and cand.resolve() != train_dir.resolve():
                return cand
    return None


def _header_pixels(path: Path) -> int | None:
    """Cheap header check (no decode): the pixel count, or None for non-images named like images."""
    try:
        with Image.open(path) as im:
            return im.size[0] * im.size[1]
    except Exception:
        return None


def _decodable(paths: list[Path], n: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Path]:
    """The first n paths that fully decode (display images must never fail mid-run)."""
    out = []
    for p in paths:
        if len(out) == n:
            break
        try:
            load_rgb(p, max_pixels=max_pixels)
            out.append(p)
        except ImageError:
            continue
    return out


@dataclass
class Domain:
    """One domain's training files and display files, after a header scan."""

    name: str
    folder: Path
    files: list[Path]
    display: list[Path]
    unreadable: list[Path]
    too_large: list[Path] = field(default_factory=list)  # over --max-pixels, skipped


def scan_domain(root: Path | None, name: str, display_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Domain:
    folder = resolve_domain(root, name)
    found = find_images(folder)
    pixels = {p: _header_pixels(p) for p in found}
    bad = [p for p in found if pixels[p] is None]
    large = [p for p in found if pixels[p] is not None and max_pixels and pixels[p] > max_pixels]
    files = [p for p in found if pixels[p] is not None and not (max_pixels and pixels[p] > max_pixels)]
    if not files:
        hint = (f", {len(large)} over the limit of {max_pixels:,} pixels (pass --max-pixels to raise it)"
                if large else "")
        raise MunitError(f"domain {name!r} ({folder}) has no readable images "
                         f"({len(found)} files found, {len(bad)} unreadable{hint}): add jpg/png/webp/bmp photos")
    dfolder = display_folder(root, name, folder)
    display = _decodable(find_images(dfolder), display_size, max_pixels) if dfolder else []
    if not display:
        display = _decodable(files, display_size, max_pixels)
        if len(files) > 2 * display_size:  # hold them aside so samples show unseen images
            held = set(display)
            files = [p for p in files if p not in held]
    return Domain(Path(name).name, folder, files, display, bad, large)


def center_fraction(img: Image.Image, fraction: float) -> Image.Image:
    """The central `fraction` of each side (1 = the whole image)."""
    if fraction >= 1:
        return img
    w, h = img.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def load_training_image(path: Path, size: int, gen: torch.Generator, resize: int | None = None,
                        max_pixels: int = DEFAULT_MAX_PIXELS, center_crop: float = 1.0) -> Tensor:
    """SPEC section 3: resize the shorter side, random crop, random horizontal flip, [-1, 1].
    `center_crop` < 1 first keeps that central fraction of each side (whole-animal photos)."""
    img = center_fraction(load_rgb(path, max_pixels=max_pixels), center_crop)
    img = resize_shorter(img, max(size, resize or size))
    nw, nh = img.size
    top = int(torch.randint(0, nh - size + 1, (1,), generator=gen))
    left = int(torch.randint(0, nw - size + 1, (1,), generator=gen))
    img = img.crop((left, top, left + size, top + size))
    if torch.rand((), generator=gen) < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return to_tensor(img)


class TrainImages(Dataset):
    """Indexed by (file index, augmentation seed); an unreadable file is replaced by the next
    readable one and counted, never raised."""

    def __init__(self, files: list[Path], size: int, max_pixels: int = DEFAULT_MAX_PIXELS, center_crop: float = 1.0):
        self.files = files
        self.size = size
        self.max_pixels = max_pixels
        self.center_crop = center_crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, int]:
        idx, aug_seed = key
        gen = torch.Generator().manual_seed(aug_seed)
        for skipped in range(len(self.files)):
            path = self.files[(idx + skipped) % len(self.files)]
            try:
                return load_training_image(path, self.size, gen, max_pixels=self.max_pixels,
                                           center_crop=self.center_crop), skipped
            except ImageError:
                continue
        raise MunitError("no image of this domain could be decoded: check the data with `munit data check`")


class StreamSampler(Sampler):
    """Endless shuffled stream of (index, aug_seed) for one domain and rank, starting at
    `start` (positions already consumed by this rank). Epoch e is a fresh permutation."""

    def __init__(self, n: int, seed: int, domain: str, start: int = 0, rank: int = 0, world: int = 1):
        if n < world:
            raise MunitError(f"domain {domain!r} has {n} images, fewer than the {world} processes: add images")
        self.n, self.seed, self.domain, self.start, self.rank, self.world = n, seed, domain, start, rank, world
        self.per_rank = n // world  # equal shard sizes keep ranks in lock-step

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start
        while True:
            epoch, off = divmod(pos, self.per_rank)
            g = torch.Generator().manual_seed(stable_seed(self.seed, self.domain, "perm", epoch))
            perm = torch.randperm(self.n, generator=g)[self.rank: self.per_rank * self.world: self.world].tolist()
            for i in range(off, self.per_rank):
                yield perm[i], stable_seed(self.seed, self.domain, "aug", self.rank, pos)
                pos += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a large number
        return 2**62


def make_stream(files: list[Path], size: int, batch_size: int, seed: int, domain: str, start: int,
                workers: int, pin_memory: bool, rank: int = 0, world: int = 1,
                max_pixels: int = DEFAULT_MAX_PIXELS, center_crop: float = 1.0) -> Iterator[tuple[Tensor, Tensor]]:
    """An endless iterator of (images (B, 3, size, size), skipped-file counts (B,))."""
    sampler = StreamSampler(len(files), seed, domain, start, rank, world)
    loader = DataLoader(
        TrainImages(files, size, max_pixels, center_crop), batch_size=batch_size, sampler=sampler, num_workers=workers,
        pin_memory=pin_memory, drop_last=True, persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    return iter(loader)
