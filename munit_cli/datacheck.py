"""`munit data check` core: scan domain folders before a long run and say what training will
meet (unreadable files, odd modes, small, near-constant or duplicate images, imbalance)."""

from __future__ import annotations

import hashlib
import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image, ImageChops, ImageStat

from munit_cli.datasets import resolve_domain
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS, ImageError, is_image_path, load_rgb

DEFAULT_IMAGE_SIZE = 256  # the munit preset's training crop
DEFAULT_MAX_RATIO = 10.0  # larger/smaller domain above this is "very unbalanced"
THUMB = 64  # near-constant checks look at a copy about this small (JPEGs decode at that scale)
FLAT_STD = 2.0  # max per-channel std (of 255) of a "uniform" image
WHITE_LEVEL = 245  # a pixel is near white when all channels are at least this
WHITE_FRACTION = 0.95


@dataclass
class ImageCheck:
    """What one image file holds; `error` is set when training would skip it."""

    path: Path
    digest: str = ""  # blake2b of the file bytes
    error: str | None = None
    mode: str | None = None  # Pillow mode before conversion to RGB
    size: tuple[int, int] | None = None  # (w, h) from the header
    flat: str | None = None  # why the image is near-constant


@dataclass
class DomainReport:
    """One domain folder and the checks of its image files."""

    name: str
    folder: Path | None
    problem: str | None = None  # set when the folder cannot be used at all
    images: list[ImageCheck] = field(default_factory=list)
    non_images: list[Path] = field(default_factory=list)

    @property
    def readable(self) -> list[ImageCheck]:
        return [c for c in self.images if c.error is None]

    @property
    def unreadable(self) -> list[ImageCheck]:
        return [c for c in self.images if c.error is not None]

    def converted(self) -> dict[str, list[Path]]:
        """Pillow mode -> readable images in that mode (everything that is not 8-bit RGB)."""
        out: dict[str, list[Path]] = {}
        for c in self.readable:
            if c.mode != "RGB":
                out.setdefault(str(c.mode), []).append(c.path)
        return out

    def smaller_than(self, size: int) -> list[ImageCheck]:
        return [c for c in self.readable if c.size and min(c.size) < size]

    def near_constant(self) -> list[ImageCheck]:
        return [c for c in self.readable if c.flat]


@dataclass
class Report:
    """All domains, plus what only shows across them (duplicates, imbalance)."""

    domains: list[DomainReport]
    image_size: int
    max_pixels: int
    max_ratio: float
    duplicates: list[list[tuple[str, Path]]] = field(default_factory=list)  # groups of (domain, path), same bytes

    def problems(self) -> list[str]:
        """Why training cannot proceed (empty list: it can)."""
        out = []
        for d in self.domains:
            if d.problem:
                out.append(d.problem)
            elif not d.images:
                out.append(f"domain {d.name!r} ({d.folder}) has no image files ({len(d.non_images)} other files): "
                           "add jpg/png/webp/bmp photos")
            elif not d.readable:
                out.append(f"domain {d.name!r} ({d.folder}) has no readable image ({len(d.images)} unreadable, "
                           f"e.g. {d.images[0].error})")
        return out

    def warnings(self) -> list[str]:
        """What training survives but the user should know, one line each."""
        out = []
        for d in self.domains:
            if d.problem:
                continue
            if d.unreadable:
                out.append(f"{d.name}: {len(d.unreadable)} unreadable image(s) will be skipped")
            if d.non_images:
                out.append(f"{d.name}: {len(d.non_images)} non-image file(s) are ignored")
            flat = d.near_constant()
            if flat:
                out.append(f"{d.name}: {len(flat)} near-constant image(s) (a known cause of NaN losses): remove them")
            small = d.smaller_than(self.image_size)
            if small:
                out.append(f"{d.name}: {len(small)} image(s) smaller than {self.image_size} px will be upscaled")
        within = sum(1 for g in self.duplicates if len({dom for dom, _ in g}) == 1)
        if within:
            out.append(f"{within} group(s) of identical files within a domain")
        across = len(self.duplicates) - within
        if across:
            out.append(f"{across} group(s) of identical files appear in more than one domain: keep each in one")
        ratio = self.imbalance()
        if ratio is not None and ratio > self.max_ratio:
            out.append(f"domains are very unbalanced: {ratio:.1f}x more images in the largest than in the smallest")
        return out

    def imbalance(self) -> float | None:
        """Largest / smallest readable count over the usable domains (None: fewer than two)."""
        counts = [len(d.readable) for d in self.domains if not d.problem and d.readable]
        return max(counts) / min(counts) if len(counts) >= 2 else None

    def duplicates_in(self, d: DomainReport) -> int:
        """Files of `d` whose bytes already appeared earlier (in any domain)."""
        n = 0
        for g in self.duplicates:
            n += sum(1 for dom, _ in g[1:] if dom == d.name)
        return n

    def to_dict(self) -> dict:
        def domain(d: DomainReport) -> dict:
            return {
                "name": d.name, "folder": str(d.folder) if d.folder else None, "problem": d.problem,
                "images": len(d.images), "readable": len(d.readable),
                "unreadable": [{"path": str(c.path), "reason": c.error} for c in d.unreadable],
                "non_images": [str(p) for p in d.non_images],
                "converted_modes": {m: [str(p) for p in ps] for m, ps in sorted(d.converted().items())},
                "smaller_than_image_size": [{"path": str(c.path), "size": list(c.size)}
                                            for c in d.smaller_than(self.image_size)],
                "near_constant": [{"path": str(c.path), "reason": c.flat} for c in d.near_constant()],
                "duplicates": self.duplicates_in(d),
            }
        problems = self.problems()
        return {
            "ok": not problems, "problems": problems, "warnings": self.warnings(),
            "image_size": self.image_size, "max_pixels": self.max_pixels, "imbalance": self.imbalance(),
            "domains": [domain(d) for d in self.domains],
            "duplicates": [[{"domain": dom, "path": str(p)} for dom, p in g] for g in self.duplicates],
        }


def flatness(img: Image.Image) -> str | None:
    """Why an RGB image is near-constant (uniform, or almost all white), or None."""
    factor = max(1, min(img.size) // THUMB)
    small = img.reduce(factor) if factor > 1 else img
    std = max(ImageStat.Stat(small).stddev)
    if std < FLAT_STD:
        return f"uniform (channel std {std:.2f} of 255)"
    r, g, b = small.split()
    darkest = ImageChops.darker(ImageChops.darker(r, g), b)
    hist = darkest.histogram()
    white = sum(hist[WHITE_LEVEL:]) / max(1, small.size[0] * small.size[1])
    if white > WHITE_FRACTION:
        return f"{white:.0%} near-white pixels"
    return None


def check_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageCheck:
    """Hash, fully decode (JPEGs at a reduced scale) and inspect one image file."""
    c = ImageCheck(path)
    try:
        with open(path, "rb") as f:
            h = hashlib.blake2b(digest_size=16)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        c.digest = h.hexdigest()
    except OSError as e:
        c.error = f"cannot read {str(path)!r} ({e.strerror or e})"
        return c
    try:
        img = load_rgb(path, max_pixels=max_pixels, draft=THUMB)
        with Image.open(path) as im:
            c.mode, c.size = im.mode, im.size
    except ImageError as e:
        c.error = str(e)
        return c
    except Exception as e:  # load_rgb succeeded, so this is very unlikely; never crash the scan
        c.error = f"cannot read {str(path)!r} ({e or type(e).__name__})"
        return c
    c.flat = flatness(img)
    return c


def split_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(images, other files) below `folder`, recursive, by extension as training sees them."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [p for p in files if is_image_path(p)], [p for p in files if not is_image_path(p)]


@dataclass
class Selection:
    """The domains `data check` scans, and how `munit train` would name them."""

    domains: list[DomainReport]
    root: Path | None = None  # data root the domain names are relative to (--data, or a root given alone)
    names: list[str] = field(default_factory=list)  # per domain, the value train's --src / --tgt would take
    found: bool = False  # the domains were found as sub-folders of one root

    def train_args(self) -> list[str] | None:
        """`munit train` data arguments for the first two domains (None: fewer than two)."""
        if len(self.names) < 2:
            return None
        return [*(["--data", str(self.root)] if self.root is not None else []),
                "--src", self.names[0], "--tgt", self.names[1]]

    def note(self) -> str | None:
        """What a root given alone turned out to hold, when it held domain folders."""
        if not self.found:
            return None
        return (f"{str(self.root)!r} holds {len(self.domains)} domain folders "
                f"({', '.join(d.name for d in self.domains)}): checking each as a domain")

    def verdict(self) -> str:
        """The closing line of a check that found no problem."""
        args = self.train_args()
        if args is None:
            name = shlex.quote(self.names[0]) if self.names else "DOMAIN"
            return f"this domain is usable; training needs a second one: munit train --src {name} --tgt OTHER"
        cmd = "munit train " + " ".join(shlex.quote(a) for a in args)
        if len(self.domains) == 2:
            return f"training can proceed: {cmd}"
        return f"training can proceed with any two of the {len(self.domains)} domains, e.g. {cmd}"


def _holds_images(folder: Path) -> bool:
    return any(p.is_file() and is_image_path(p) for p in folder.rglob("*"))


def find_domains(root: Path) -> list[Path]:
    """The domain folders of a data root, as `train --data ROOT` names them: the sub-folders
    holding images of ROOT/train (AFHQ layout) or else of ROOT. [] when ROOT holds images
    itself or fewer than two such folders: then it is one domain."""
    if any(p.is_file() and is_image_path(p) for p in root.iterdir()):
        return []
    base = root / "train" if (root / "train").is_dir() else root
    found = sorted(d for d in base.iterdir() if d.is_dir() and _holds_images(d))
    return found if len(found) >= 2 else []


def _require_root(root: Path) -> Path:
    if not root.is_dir():
        raise MunitError(f"data root {str(root)!r} does not exist or is not a folder: pass the folder holding "
                         "the domain folders", exit_code=1)
    return root


def _named_domains(root: Path | None, src: str, tgt: str) -> Selection:
    """--src/--tgt resolved like training, under the optional data root."""
    if root is not None:
        _require_root(root)
    out = []
    for name in (src, tgt):
        try:
            out.append(DomainReport(Path(name).name, resolve_domain(root, name)))
        except MunitError as e:
            out.append(DomainReport(Path(name).name, None, problem=str(e)))
    return Selection(out, root, [src, tgt])


def _folder_domains(inputs: list[str]) -> Selection:
    """Each argument is a domain folder; one root holding domain folders is expanded."""
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        root = Path(inputs[0])
        found = find_domains(root)
        if found:
            return Selection([DomainReport(d.name, d) for d in found], root, [d.name for d in found], found=True)
    names = [Path(i).name or i for i in inputs]
    out = []
    for item, name in zip(inputs, names):
        name = name if names.count(name) == 1 else item
        p = Path(item)
        if not p.exists():
            out.append(DomainReport(name, None, problem=f"folder {item!r} does not exist: check the path"))
        elif not p.is_dir():
            out.append(DomainReport(name, None, problem=f"{item!r} is a file, not a folder: pass domain folders"))
        else:
            out.append(DomainReport(name, p))
    return Selection(out, None, list(inputs))


def select_domains(inputs: list[str], src: str | None = None, tgt: str | None = None,
                   data: Path | None = None) -> Selection:
    """What to check, from train's flags (--data ROOT --src A --tgt B; a positional ROOT works
    for --data) or from domain folders. One root given alone is checked per domain folder it
    holds (ROOT/NAME or ROOT/train/NAME). Missing folders become domain problems."""
    if (src is None) != (tgt is None):
        raise MunitError("pass both --src and --tgt, or neither (then every argument is a domain folder)", exit_code=2)
    if data is not None and inputs:
        raise MunitError(f"pass the data root once: --data {data} or a positional ROOT, not both", exit_code=2)
    if src is not None:
        if len(inputs) > 1:
            raise MunitError(f"with --src/--tgt pass one data ROOT, got {len(inputs)} paths: {' '.join(inputs)}",
                             exit_code=2)
        return _named_domains(data if data is not None else (Path(inputs[0]) if inputs else None), src, tgt)
    if data is not None:
        inputs = [str(_require_root(data))]
    if not inputs:
        raise MunitError("pass domain folders (munit data check dogs/ cats/), a data ROOT, or --data ROOT --src A "
                         "--tgt B as for train", exit_code=2)
    return _folder_domains(inputs)


def domains_from_args(inputs: list[str], src: str | None, tgt: str | None, data: Path | None = None) -> list[DomainReport]:
    """The domains of select_domains (for callers that need no training hint)."""
    return select_domains(inputs, src, tgt, data).domains


def default_workers() -> int:
    return min(8, 2 * (os.cpu_count() or 1))


def check_domains(domains: list[DomainReport], image_size: int = DEFAULT_IMAGE_SIZE,
                  max_pixels: int = DEFAULT_MAX_PIXELS, max_ratio: float = DEFAULT_MAX_RATIO,
                  workers: int | None = None, on_start: Callable[[int], None] | None = None,
                  on_file: Callable[[ImageCheck], None] | None = None) -> Report:
    """Scan every domain. `on_start(total images)` then `on_file(check)` per image report progress."""
    files: list[tuple[DomainReport, Path]] = []
    for d in domains:
        if d.folder is not None and not d.problem:
            images, d.non_images = split_files(d.folder)
            files += [(d, p) for p in images]
    if on_start:
        on_start(len(files))
    with ThreadPoolExecutor(max(1, workers or default_workers()), thread_name_prefix="munit-check") as pool:
        for (d, _), c in zip(files, pool.map(lambda f: check_image(f[1], max_pixels), files)):
            d.images.append(c)
            if on_file:
                on_file(c)
    groups: dict[str, list[tuple[str, Path]]] = {}
    for d in domains:
        for c in d.images:
            if c.digest:
                groups.setdefault(c.digest, []).append((d.name, c.path))
    dups = [g for g in groups.values() if len(g) > 1]
    return Report(domains, image_size, max_pixels, max_ratio, dups)
