"""Training data of the head detector: photos with a head window from `boxes.json`, decoded
once and letterboxed in memory; the probe split; random crops, flips and colour; and
synthesised head-free images (photos without a box are not negatives: the finders that
made boxes.json missed many heads, so the negatives are parts of photos away from the box).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from munit_cli.classifier import is_held_out
from munit_cli.errors import MunitError
from munit_cli.heads.boxes import Box, Letterbox, area, clip
from munit_cli.images import DEFAULT_MAX_PIXELS, ImageError, find_images, load_rgb

Callback = Callable[[str, dict], None]
MIN_STRIP = 0.2  # a negative comes from a part of the photo beside the box at least this wide (of the longer side)


# --- boxes.json and the photos it describes --------------------------------------------------

def read_boxes(path: Path | str) -> dict[str, dict[str, Box]]:
    """`{"cat": {"N.jpg": [l, t, r, b], ...}, ...}` -> {domain: {file name: box}}."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        boxes = {str(d): {str(n): tuple(float(v) for v in b) for n, b in items.items()} for d, items in raw.items()}
        if any(len(b) != 4 or b[2] <= b[0] or b[3] <= b[1] for items in boxes.values() for b in items.values()):
            raise ValueError("a box is not [left, top, right, bottom] with right > left and bottom > top")
    except FileNotFoundError:
        raise MunitError(f"boxes file {str(path)!r} does not exist: pass the boxes.json of a heads folder")
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as e:
        raise MunitError(f"boxes file {str(path)!r} is not {{domain: {{file name: [left, top, right, bottom]}}}} ({e})")
    return boxes


@dataclass
class Photo:
    domain: str
    path: Path
    box: Box | None  # the reference head window, None where boxes.json has none


def list_photos(root: Path, boxes: dict[str, dict[str, Box]], domains: list[str] | None = None) -> list[Photo]:
    """Every image under root/DOMAIN for the domains of `boxes` (or `domains`) that have a
    folder there, with its box (by file name) or None."""
    names = domains or sorted(boxes)
    out = []
    for d in names:
        folder = Path(root) / d
        if not folder.is_dir():
            continue
        out += [Photo(d, p, boxes.get(d, {}).get(p.name)) for p in find_images(folder)]
    if not out:
        raise MunitError(f"no photos of {', '.join(names)} under {str(root)!r}: pass a folder holding "
                         f"{'/'.join(names)} sub-folders")
    return out


def first_per_domain(photos: list[Photo], limit: int | None) -> list[Photo]:
    """At most `limit` photos of each domain, the first in the given (sorted) order; all without a limit."""
    seen: dict[str, int] = {}
    kept = []
    for p in photos:
        seen[p.domain] = seen.get(p.domain, 0) + 1
        if not limit or seen[p.domain] <= limit:
            kept.append(p)
    return kept


@dataclass
class Selection:
    """The training photos with a box, and per domain (photos kept, photos found)."""
    positives: list[Photo]
    counts: dict[str, tuple[int, int]]


def select_training(root: Path, boxes: dict[str, dict[str, Box]], domains: list[str] | None = None,
                    exclude: list[str] | None = None, limit: int | None = None) -> Selection:
    """The photos under root/DOMAIN whose name matches no `exclude` glob and that have a box,
    at most `limit` per domain (the first, sorted). Photos without a box are not used: a
    missing box is not a missing head."""
    found = [p for p in list_photos(root, boxes, domains) if not any(fnmatch.fnmatch(p.path.name, g) for g in exclude or [])]
    positives, counts = [], {}
    for d in sorted({p.domain for p in found}):
        mine = [p for p in found if p.domain == d]
        kept = first_per_domain([p for p in mine if p.box is not None], limit)
        positives += kept
        counts[d] = (len(kept), len(mine))
    return Selection(positives, counts)


def check_disjoint(train: list[Photo], held: list) -> None:
    """Refuse to train on a held-out photo (same domain and file name, or the same file)."""
    names = {(p.domain, p.path.name) for p in held}
    files = {os.path.realpath(p.path) for p in held}
    for p in train:
        if (p.domain, p.path.name) in names or os.path.realpath(p.path) in files:
            raise MunitError(f"{str(p.path)!r} is both a training photo and a held-out photo ({p.domain}/{p.path.name} in "
                             "--eval-photos): the held-out split must never be trained on; pass other folders or --exclude it",
                             exit_code=2)


def split_probe(photos: list[Photo], fraction: float) -> tuple[list[Photo], list[Photo]]:
    """(train, probe) by a hash of the file name (the classifier's rule)."""
    probe = [p for p in photos if is_held_out(p.path.name, fraction)]
    return [p for p in photos if not is_held_out(p.path.name, fraction)], probe


# --- decoded photos ----------------------------------------------------------------------------

@dataclass
class PhotoSet:
    """Photos letterboxed on store x store canvases (mid-grey padding), kept as uint8."""

    images: Tensor  # (N, 3, S, S) uint8
    valid: Tensor  # (N, 4) the photo's area on the canvas
    boxes: Tensor  # (N, 4) head windows on the canvas
    photos: list[Photo]
    unreadable: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]


def _decode(photo: Photo, store: int, max_pixels: int) -> tuple[Tensor, Box, Box] | None:
    try:
        img = load_rgb(photo.path, max_pixels=max_pixels)  # full size: boxes are in its pixels
    except (ImageError, OSError):
        return None
    lb = Letterbox.fit(img.size[0], img.size[1], store)
    small = img.resize((lb.new_w, lb.new_h), Image.BILINEAR, reducing_gap=2.0)
    canvas = Image.new("RGB", (store, store), (128, 128, 128))
    canvas.paste(small, (lb.left, lb.top))
    x = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(store, store, 3).permute(2, 0, 1)
    box = lb.to_canvas(photo.box or (0.0, 0.0, 1.0, 1.0))
    valid = (lb.left, lb.top, lb.left + lb.new_w, lb.top + lb.new_h)
    return x.clone(), valid, box


def load_photos(photos: list[Photo], store: int, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 2,
                callback: Callback | None = None) -> PhotoSet:
    """Decode every photo once (threads); unreadable ones are listed, not fatal."""
    callback = callback or (lambda kind, info: None)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="munit-decode") as pool:
        results = []
        for r in pool.map(lambda p: _decode(p, store, max_pixels), photos):
            results.append(r)
            callback("decoded", {"n": 1})
    good = [(p, r) for p, r in zip(photos, results) if r is not None]
    bad = [p.path for p, r in zip(photos, results) if r is None]
    if not good:
        return PhotoSet(torch.zeros(0, 3, store, store, dtype=torch.uint8), torch.zeros(0, 4), torch.zeros(0, 4), [], bad)
    return PhotoSet(torch.stack([r[0] for _, r in good]), torch.tensor([r[1] for _, r in good], dtype=torch.float),
                    torch.tensor([r[2] for _, r in good], dtype=torch.float), [p for p, _ in good], bad)


# --- where crops come from -------------------------------------------------------------------

def median_box(ps: PhotoSet) -> list[float]:
    """The median head window as fractions of the photo (a fixed-box baseline)."""
    v = ps.valid
    rel = (ps.boxes - v[:, [0, 1, 0, 1]]) / (v[:, [2, 3, 2, 3]] - v[:, [0, 1, 0, 1]])
    return [round(statistics.median(rel[:, k].tolist()), 4) for k in range(4)]


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _rect_within(region: Box, max_aspect: float, gen: torch.Generator, min_fill: float = 0.7) -> Box:
    """A random rectangle inside `region`: about its aspect ratio, kept within [1/max_aspect,
    max_aspect], and at least `min_fill` of the largest such rectangle."""
    rw, rh = region[2] - region[0], region[3] - region[1]
    aspect = rw / rh * math.exp(_uniform(gen, -0.3, 0.3))  # width / height
    aspect = min(max(aspect, 1 / max_aspect), max_aspect)
    h = min(rh, rw / aspect) * _uniform(gen, min_fill, 1.0)
    w = h * aspect
    x0 = region[0] + _uniform(gen, 0.0, rw - w)
    y0 = region[1] + _uniform(gen, 0.0, rh - h)
    return (x0, y0, x0 + w, y0 + h)


def positive_rect(valid: Box, box: Box, min_crop: float, max_aspect: float, gen: torch.Generator,
                  tries: int = 10) -> Box:
    """A random crop of the photo that keeps the head window's centre and at least 70 % of its
    visible part; the whole photo when none is found in `tries`."""
    vw, vh = valid[2] - valid[0], valid[3] - valid[1]
    seen = clip((box[0] - valid[0], box[1] - valid[1], box[2] - valid[0], box[3] - valid[1]), vw, vh)
    seen = (seen[0] + valid[0], seen[1] + valid[1], seen[2] + valid[0], seen[3] + valid[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for _ in range(tries):
        long = _uniform(gen, min_crop, 1.0) * max(vw, vh)
        aspect = math.exp(_uniform(gen, -math.log(max_aspect), math.log(max_aspect)))
        w, h = (long, long / aspect) if aspect >= 1 else (long * aspect, long)
        w, h = min(w, vw), min(h, vh)
        x0 = valid[0] + _uniform(gen, 0.0, vw - w)
        y0 = valid[1] + _uniform(gen, 0.0, vh - h)
        rect = (x0, y0, x0 + w, y0 + h)
        inside = area((max(rect[0], seen[0]), max(rect[1], seen[1]), min(rect[2], seen[2]), min(rect[3], seen[3])))
        if x0 <= cx <= x0 + w and y0 <= cy <= y0 + h and inside >= 0.7 * area(seen):
            return rect
    return valid


def negative_rect(valid: Box, box: Box, max_aspect: float, gen: torch.Generator) -> Box | None:
    """A random crop of the part of the photo beside the head window (left, right, above or
    below it, picked by area), or None when no such part is wide enough."""
    vx0, vy0, vx1, vy1 = valid
    long = max(vx1 - vx0, vy1 - vy0)
    strips = [(vx0, vy0, min(box[0], vx1), vy1), (max(box[2], vx0), vy0, vx1, vy1),
              (vx0, vy0, vx1, min(box[1], vy1)), (vx0, max(box[3], vy0), vx1, vy1)]
    strips = [s for s in strips if min(s[2] - s[0], s[3] - s[1]) >= MIN_STRIP * long]
    if not strips:
        return None
    weights = torch.tensor([area(s) for s in strips])
    pick = int(torch.multinomial(weights, 1, generator=gen))
    return _rect_within(strips[pick], max_aspect, gen)


# --- batches -----------------------------------------------------------------------------------

def warp(images: Tensor, rects: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Letterbox each rectangle (N, 4) of uint8 canvases (N, 3, S, S) onto a size x size canvas,
    as inference letterboxes a whole photo. Returns (images (N, 3, size, size) in [-1, 1],
    scale k (N,) and offset (N, 2): canvas = (store - rect corner) * k + offset)."""
    n, _, s, _ = images.shape
    w, h = rects[:, 2] - rects[:, 0], rects[:, 3] - rects[:, 1]
    k = size / torch.maximum(w, h)  # (N,)
    off = torch.stack([(size - w * k) / 2, (size - h * k) / 2], 1)  # (N, 2)
    theta = torch.zeros(n, 2, 3)
    # output x in [-1, 1] (align_corners=False) -> source x in [-1, 1]
    theta[:, 0, 0] = size / (k * s)
    theta[:, 0, 2] = 2 / s * (rects[:, 0] - off[:, 0] / k) + size / (k * s) - 1
    theta[:, 1, 1] = size / (k * s)
    theta[:, 1, 2] = 2 / s * (rects[:, 1] - off[:, 1] / k) + size / (k * s) - 1
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    x = F.grid_sample(images.float().div(127.5).sub(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    centres = torch.arange(size).float() + 0.5
    inside_x = (centres >= off[:, :1]) & (centres <= off[:, :1] + (w * k)[:, None])  # (N, size)
    inside_y = (centres >= off[:, 1:]) & (centres <= off[:, 1:] + (h * k)[:, None])
    mask = (inside_y[:, :, None] & inside_x[:, None, :]).unsqueeze(1)  # (N, 1, size, size)
    return x * mask, k, off  # outside the letterboxed rectangle: 0 = mid grey, as in inference


def colour(x: Tensor, jitter: float, gray: float, gen: torch.Generator) -> Tensor:
    """Random brightness, contrast, saturation and some grayscale on (B, 3, H, W) in [-1, 1]."""
    b = x.shape[0]
    x = x.add(1).div(2)
    f = 1 + (torch.rand(3, b, 1, 1, 1, generator=gen) * 2 - 1) * jitter
    x = x * f[0]
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * f[1] + mean
    lum = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    sat = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < gray, torch.zeros_like(f[2]), f[2])
    x = (x - lum) * sat + lum
    return x.clamp(0, 1).mul(2).sub(1)


def shuffle_patches(x: Tensor, grid: int, gen: torch.Generator) -> Tensor:
    """(3, S, S) cut into grid x grid patches put back in a random order: fur without a head."""
    c, s, _ = x.shape
    p = s // grid
    patches = x[:, :p * grid, :p * grid].reshape(c, grid, p, grid, p).permute(1, 3, 0, 2, 4).reshape(grid * grid, c, p, p)
    patches = patches[torch.randperm(grid * grid, generator=gen)]
    out = x.clone()
    out[:, :p * grid, :p * grid] = patches.reshape(grid, grid, c, p, p).permute(2, 0, 3, 1, 4).reshape(c, p * grid, p * grid)
    return out


def make_batch(ps: PhotoSet, idx: Tensor, recipe, gen: torch.Generator,
               augment: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Images (B, 3, size, size) in [-1, 1], head windows (B, 4) in their pixels, and which
    hold a head (B,) bool. With `augment`: random crops, synthesised negatives, flips and
    colour; without: each whole photo as inference sees it."""
    size = recipe.input_size
    rects, positive, shuffled = [], [], []
    for i in idx.tolist():
        valid, box = tuple(ps.valid[i].tolist()), tuple(ps.boxes[i].tolist())
        if not augment:
            rects.append(valid)
            positive.append(True)
            shuffled.append(False)
            continue
        neg = None
        if float(torch.rand((), generator=gen)) < recipe.negatives:
            if float(torch.rand((), generator=gen)) < 0.25:
                neg, shuffle = valid, True
            else:
                neg, shuffle = negative_rect(valid, box, recipe.max_aspect, gen), False
        if neg is not None:
            rects.append(neg)
            positive.append(False)
            shuffled.append(shuffle)
        else:
            whole = float(torch.rand((), generator=gen)) < recipe.whole
            rects.append(valid if whole else positive_rect(valid, box, recipe.min_crop, recipe.max_aspect, gen))
            positive.append(True)
            shuffled.append(False)
    r = torch.tensor(rects, dtype=torch.float)
    x, k, off = warp(ps.images[idx], r, size)
    boxes = (ps.boxes[idx] - r[:, [0, 1, 0, 1]]) * k[:, None] + off[:, [0, 1, 0, 1]]
    pos = torch.tensor(positive)
    if augment:
        for j, s in enumerate(shuffled):
            if s:
                x[j] = shuffle_patches(x[j], 8, gen)
        flip = torch.rand(x.shape[0], generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        mirrored = torch.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], 1)
        boxes = torch.where(flip.view(-1, 1), mirrored, boxes)
        x = colour(x, recipe.jitter, recipe.gray, gen)
    return x, boxes, pos
