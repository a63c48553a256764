"""Head crops and paste-back: the square window cut from a photo for a training set or for
translation, and a translated crop put back at the photo's full resolution with a feathered
edge (pixels outside the window are never touched)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from munit_cli.errors import MunitError
from munit_cli.heads.boxes import Box, fit_inside, scale, square, to_int
from munit_cli.heads.detector import Detection, Detector
from munit_cli.images import DEFAULT_MAX_PIXELS, load_rgb, make_grid, to_tensor
from munit_cli.inference import Prepared, Skipped, input_tensor

FITS = ("inside", "pad")
# translate --heads: "pad" keeps the head centred with black past the photo's edge, as in the
# training crops of ../shared/data/heads (measured equal to "inside" on held-out photos:
# benchmarks/heads_default.py; visibly better on close-ups whose head overflows the frame)
TRANSLATE_FIT = "pad"
NO_HEAD = ("skip", "whole")
FEATHER = 0.12  # width of the soft edge, as a fraction of the window's side
SHEET_SIDE = 512  # translate --heads --grid: photos on the contact sheet are at most this long


def crop_window(box: Box, width: int, height: int, margin: float = 1.0, fit: str = "inside") -> tuple[int, int, int, int]:
    """The square crop window, in integer photo pixels, for a head window `box`: grown by
    `margin` about its centre; `fit` "inside" moves it into the photo (shrinking it to the
    photo's shorter side if needed), "pad" keeps it where it is (the part past the photo's
    edge is cut black, like the crops of heads/)."""
    if fit not in FITS:
        raise MunitError(f"unknown --fit {fit!r}: use {' or '.join(FITS)}", exit_code=2)
    if margin <= 0:
        raise MunitError(f"--margin must be > 0, got {margin}", exit_code=2)
    w = scale(square(box), margin)
    if fit == "inside":
        w = fit_inside(w, width, height)
        left, top, right, _ = to_int(w)
        side = min(right - left, width, height)
        left, top = min(max(left, 0), width - side), min(max(top, 0), height - side)
        return (left, top, left + side, top + side)
    l, t, r, b = to_int(w)
    return (l, t, max(r, l + 1), max(b, t + 1))


def cut(img: Image.Image, window: tuple[int, int, int, int], size: int | None) -> Image.Image:
    """The window's pixels (black past the photo's edge), resized to size x size (None: as is)."""
    crop = img.crop(window)
    if size is not None and crop.size != (size, size):
        crop = crop.resize((size, size), Image.BICUBIC, reducing_gap=3.0)
    return crop


def _ramp(n: int, feather: float, soft_start: bool, soft_end: bool) -> Tensor:
    """(n,) weights along one side of the window: 0 at a soft edge, rising as a cosine to 1
    over `feather` pixels; 1 up to an edge that is not soft."""
    pos = torch.arange(n, dtype=torch.float64) + 0.5  # pixel centres
    w = torch.ones(n, dtype=torch.float64)
    if feather <= 0:
        return w
    for soft, dist in ((soft_start, pos), (soft_end, n - pos)):
        if soft:
            t = (dist / feather).clamp(0, 1)
            w = w * (0.5 - 0.5 * torch.cos(math.pi * t))
    return w


def feather_mask(h: int, w: int, feather: float, soft: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> Tensor:
    """(h, w) alpha in [0, 1]: 1 in the middle, easing to 0 at each soft edge (left, top,
    right, bottom) over `feather` pixels, so a pasted crop has no step at its border."""
    col = _ramp(w, feather, soft[0], soft[2])
    row = _ramp(h, feather, soft[1], soft[3])
    return (row[:, None] * col[None, :]).float()


def paste(photo: Image.Image, crop: Image.Image, window: tuple[int, int, int, int], feather: float = FEATHER) -> Image.Image:
    """`crop` (any size; a translation of the window) resized to the window and blended into a
    copy of `photo`: alpha 1 inside, easing to 0 over `feather` x side at the window's edges
    that lie inside the photo (edges on the photo's border stay hard: there is no seam there).
    Pixels outside the window are the photo's, bit for bit."""
    l, t, r, b = window
    pw, ph = photo.size
    side_w, side_h = r - l, b - t
    big = crop.convert("RGB").resize((side_w, side_h), Image.BICUBIC, reducing_gap=3.0)
    # the part of the window inside the photo
    cl, ct, cr, cb = max(l, 0), max(t, 0), min(r, pw), min(b, ph)
    if cr <= cl or cb <= ct:
        return photo.copy()
    soft = (l > 0, t > 0, r < pw, b < ph)
    alpha = feather_mask(side_h, side_w, feather * (side_w + side_h) / 2, soft)[ct - t:cb - t, cl - l:cr - l]
    src = _u8(photo.crop((cl, ct, cr, cb))).float()
    new = _u8(big.crop((cl - l, ct - t, cr - l, cb - t))).float()
    mixed = (new * alpha[..., None] + src * (1 - alpha[..., None])).round().clamp(0, 255).to(torch.uint8)
    out = photo.copy()
    out.paste(Image.fromarray(mixed.numpy(), "RGB"), (cl, ct))
    return out


def _u8(img: Image.Image) -> Tensor:
    """RGB image -> uint8 (H, W, 3)."""
    return torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8).view(img.size[1], img.size[0], 3)


# --- translate --heads ---------------------------------------------------------------------------

def _fit_sheet(img: Image.Image) -> Tensor:
    if max(img.size) > SHEET_SIDE:
        img = img.copy()
        img.thumbnail((SHEET_SIDE, SHEET_SIDE), Image.BICUBIC)
    return to_tensor(img)


@dataclass
class PastedHead(Prepared):
    """A photo's head crop (x_a); each translation of it is pasted back into the photo."""

    photo: Image.Image = None  # the whole photo, full resolution
    window: tuple[int, int, int, int] = (0, 0, 0, 0)  # the crop window (with fit "pad" it may reach past the photo)

    def render(self, x_ab: Tensor) -> Image.Image:
        return paste(self.photo, Image.fromarray(x_ab.numpy(), "RGB"), self.window)

    def sheet(self, x_ab: Tensor) -> Image.Image:
        return make_grid([[_fit_sheet(self.photo), *(_fit_sheet(self.render(u8)) for u8 in x_ab)]])

    def scaled(self, max_side: int) -> "PastedHead":
        """The same head on a copy of the photo whose longer side is at most `max_side`, the
        window scaled with it (a preview: pasting and encoding cost with the photo's pixels);
        itself when the photo is no larger."""
        w, h = self.photo.size
        f = max_side / max(w, h)
        if f >= 1:
            return self
        small = self.photo.resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR, reducing_gap=2.0)
        l, t, r, b = self.window
        l, t = round(l * f), round(t * f)
        side_w, side_h = max(1, round((r - self.window[0]) * f)), max(1, round((b - self.window[1]) * f))
        return replace(self, photo=small, window=(l, t, l + side_w, t + side_h))


class HeadFraming:
    """translate --heads: each input photo's head is cut out at the model's size, translated,
    and pasted back; a photo without a head is skipped, or translated whole (`no_head`)."""

    def __init__(self, detector: Detector, size: int | None, margin: float = 1.0, no_head: str = "skip",
                 max_pixels: int = DEFAULT_MAX_PIXELS, fit: str = TRANSLATE_FIT):
        if no_head not in NO_HEAD:
            raise MunitError(f"unknown --no-head {no_head!r}: use {' or '.join(NO_HEAD)}", exit_code=2)
        crop_window((0, 0, 1, 1), 1, 1, margin, fit)  # checks the margin and the fit
        self.detector, self.size, self.margin, self.no_head, self.max_pixels = detector, size, margin, no_head, max_pixels
        self.fit = fit
        self.notes: list[str] = []  # one line per reference photo used whole

    def _whole(self, img: Image.Image) -> Tensor:
        return input_tensor(img, self.size)  # what translate without --heads sees

    def why(self, name: Path | str, confidence: float) -> str:
        """The no-head line of a photo named `name`."""
        return (f"no head found in {str(name)!r} (confidence {confidence:.2f} < {self.detector.threshold:.2f})")

    def window(self, img: Image.Image, d: Detection) -> tuple[int, int, int, int]:
        return crop_window(d.box, img.size[0], img.size[1], self.margin, self.fit)

    def find(self, img: Image.Image) -> tuple[Detection, PastedHead | None]:
        """A decoded photo's detection and, when it has a head, the head crop ready to translate
        and paste back (None: no head). `munit ui` caches this per photo."""
        d = self.detector.detect(img)
        if not d.found:
            return d, None
        window = self.window(img, d)
        return d, PastedHead(to_tensor(cut(img, window, self.size)), img, window)

    def prepare(self, path: Path) -> Prepared | Skipped:
        img = load_rgb(path, max_pixels=self.max_pixels)
        d, head = self.find(img)
        if head is not None:
            return head
        if self.no_head == "whole":
            return Prepared(self._whole(img))
        return Skipped(self.why(path, d.confidence) + ": skipped (--no-head whole translates it whole)")

    def reference_image(self, img: Image.Image, name: Path | str) -> tuple[Tensor, str | None]:
        """A decoded reference photo -> (its head crop, None), or (the whole photo, the line
        saying it has no head)."""
        d = self.detector.detect(img)
        if not d.found:
            return self._whole(img), self.why(name, d.confidence) + ": its whole photo gives the style"
        return to_tensor(cut(img, self.window(img, d), self.size)), None

    def reference(self, path: Path) -> Tensor:
        """A --style-from reference: its head crop, or the whole photo when it has none."""
        x, note = self.reference_image(load_rgb(path, max_pixels=self.max_pixels), path)
        if note:
            self.notes.append(note)
        return x
