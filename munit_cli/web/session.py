"""What `munit ui` computes: one loaded model, the photos the page sent with their content codes
cached per direction, and style codes turned into pixels. No HTTP here (app.py serves it).

Every pixel goes through munit_cli.inference (translate's loader, Translator, random_styles,
interpolate_styles, save_style_bank) and, with heads on, munit_cli.heads.compose (HeadFraming
finds the head once per photo, PastedHead pastes each translated crop back), so the page shows
what `munit translate [--heads]` writes for the same model, detector, photo, style codes and
precision. Names as in inference.py: x_a a photo, c_a its content code, s_b style codes
(N, style_dim, 1, 1), x_ab the outputs.
"""

from __future__ import annotations

import collections
import json
import math
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from torch import Tensor

from munit_cli.checkpoint import GeneratorBundle
from munit_cli.errors import MunitError
from munit_cli.heads.compose import HeadFraming, PastedHead
from munit_cli.heads.detector import Detection, Detector
from munit_cli.images import DEFAULT_MAX_PIXELS, ImageError, load_rgb
from munit_cli.inference import (Prepared, Translator, input_tensor, require_style_encoder, resolve_direction,
                                 supported_directions)
from munit_cli.models import random_styles
from munit_cli.styles import interpolate_styles, save_style_bank

MAX_CODES = 64  # style codes in one request (a grid, a strip, a bank)
MAX_STEPS = 32  # codes of one interpolation strip
MAX_PHOTOS = 32  # photos kept with their content codes; the least recently used goes first
# With heads possible, each photo is also kept whole at full resolution (the paste-back's
# canvas); past this many pixels in all, the least recently used photos go first too.
MAX_WHOLE_PIXELS = 150_000_000
MAX_SEED = 2**63 - 1
# With heads on, a photo longer than this is shown scaled down (the translated crop pasted into a
# copy at this size: far less to paste and encode per style); `full` renders give translate's pixels.
PREVIEW_SIDE = 1024
CODE_LIMIT = 1000.0  # |entry| of a style code; random codes are N(0, 1), so this only stops garbage


class WebError(MunitError):
    """A request the page is told about with a message; `status` is its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Superseded(WebError):
    """A newer request of the same client and channel came in: nobody wants this one's result."""

    def __init__(self) -> None:
        super().__init__("superseded by a newer request", 409)


def _nothing() -> None:
    pass


def _pixels(img: Image.Image) -> Tensor:
    """RGB image -> uint8 (H, W, 3)."""
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.size[1], img.size[0], 3)


class Latest:
    """The newest request number per (client, channel). A slider sends a request per move; a
    newer one supersedes the older ones, which are dropped before (or right after) their compute
    instead of queueing up behind it."""

    def __init__(self, max_keys: int = 1024):
        self._newest: collections.OrderedDict[tuple[str, str], int] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.max_keys = max_keys

    def claim(self, client: str, channel: str, seq: int) -> Callable[[], None]:
        """Register request `seq` (refused at once when a newer one is known); returns a check()
        that raises Superseded as soon as a newer request of the same client and channel came."""
        key = (client, channel)
        with self._lock:
            if seq <= self._newest.get(key, -1):
                raise Superseded()
            self._newest[key] = seq
            self._newest.move_to_end(key)
            while len(self._newest) > self.max_keys:
                self._newest.popitem(last=False)

        def check() -> None:
            if self._newest.get(key) != seq:
                raise Superseded()
        return check


@dataclass
class Head:
    """A photo's head, looked for once: the detection, and the head crop to translate and paste
    back into the whole photo (None: no head, so the whole photo is translated)."""

    detection: Detection
    pasted: PastedHead | None
    message: str  # what the page says about it
    preview: PastedHead | None = None  # `pasted` on the photo scaled to PREVIEW_SIDE (itself when no larger)


@dataclass
class Photo:
    """An uploaded photo at the size translate would use, its content codes, and (where heads
    can be on) the whole photo at full resolution with its head, found on first use."""

    id: str
    name: str
    x: Tensor  # x_a (3, H, W) in [-1, 1], shorter side resized like `translate --size`
    image: Image.Image | None = None  # the decoded photo at full resolution (kept when heads are possible)
    head: Head | None = None  # found on the first request with heads on, then reused
    # ("a2b", "whole" | "heads") -> c_a (1, C, h / m, w / m) of x, or of the head crop
    contents: dict[tuple[str, str], Tensor] = field(default_factory=dict)

    @property
    def hw(self) -> tuple[int, int]:
        return (self.x.shape[-2], self.x.shape[-1])

    @property
    def whole_pixels(self) -> int:
        return self.image.size[0] * self.image.size[1] if self.image is not None else 0


# --- request values ---------------------------------------------------------------------

def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise WebError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    return value


def parse_flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise WebError(f"{name} must be true or false, got {value!r}")
    return value


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and lo <= value <= hi):
        raise WebError(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def parse_code(value: Any, style_dim: int, name: str = "code") -> list[float]:
    """One style code as the page sends it: `style_dim` finite numbers."""
    if not isinstance(value, list) or len(value) != style_dim:
        raise WebError(f"{name} must be a list of {style_dim} numbers (this model's style_dim)")
    return [_number(v, name, -CODE_LIMIT, CODE_LIMIT) for v in value]


def parse_codes(value: Any, style_dim: int) -> Tensor:
    """A list of codes -> s_b (N, style_dim, 1, 1) float32, rounded as a styles file stores them."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CODES:
        raise WebError(f"codes must be a list of 1 to {MAX_CODES} style codes")
    rows = [parse_code(v, style_dim, "each code") for v in value]
    return torch.tensor(rows, dtype=torch.float32).view(-1, style_dim, 1, 1)


def display_name(name: Any, default: str = "photo") -> str:
    """A file name fit to show and to build download names from (no folders, no control chars)."""
    text = Path(str(name or "")).name if isinstance(name, str) else ""
    text = "".join(ch for ch in text if ch.isprintable())[:100].strip()
    return text or default


# --- the studio -------------------------------------------------------------------------

class Studio:
    """A loaded model on a device, serving the page. Thread-safe; one computation runs at a time
    (parallel ones would only share the same cores and all finish late)."""

    def __init__(self, bundle: GeneratorBundle, device: torch.device, precision: str, workdir: Path, *,
                 size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, model_name: str = "",
                 max_photos: int = MAX_PHOTOS, detector: Detector | None = None, no_detector: str = "",
                 max_whole_pixels: int = MAX_WHOLE_PIXELS, preview_side: int | None = None):
        """`detector` (on `device` at `precision`, like translate's) makes the heads switch work;
        without one, `no_detector` says why it is off. `preview_side`: with heads on, longer
        photos are shown scaled to this (default PREVIEW_SIDE; 0: always full size)."""
        self.bundle, self.device, self.precision, self.workdir = bundle, device, precision, Path(workdir)
        self.size = size or bundle.info.image_size
        self.max_pixels, self.max_photos = max_pixels, max_photos
        self.model_name = model_name or bundle.info.path.name
        self.style_dim = bundle.info.model.gen.style_dim
        self.directions = supported_directions(bundle)
        if not self.directions:
            raise MunitError(f"{str(bundle.info.path)!r} holds no complete translation direction: re-export it")
        self.translators = {d: Translator(bundle, d[0], d[-1], device, precision) for d in self.directions}
        self.lock = threading.Lock()  # the compute
        self.latest = Latest()
        self.encodes = 0  # content codes computed: one per photo, direction and framing
        self.detections = 0  # photos the detector looked at (once each)
        self.framing = HeadFraming(detector, self.size, max_pixels=max_pixels) if detector is not None else None
        self.detector_name = detector.path.name if detector is not None and detector.path else ""
        self.no_detector = no_detector or "no head detector is loaded"
        self.max_whole_pixels = max_whole_pixels
        self.preview_side = PREVIEW_SIDE if preview_side is None else preview_side
        self._photos: collections.OrderedDict[str, Photo] = collections.OrderedDict()
        self._photos_lock = threading.Lock()

    def domain(self, key: str) -> str:
        return self.bundle.info.domains["ab".index(key)]

    def describe(self) -> dict:
        """What the page needs to draw its controls."""
        return {"model": self.model_name, "domains": {"a": self.domain("a"), "b": self.domain("b")},
                "directions": [{"key": d, "source": self.domain(d[0]), "target": self.domain(d[-1]),
                                "style_from_photo": "enc_style" in self.bundle.parts.get(d[-1], ())}
                               for d in self.directions],
                "style_dim": self.style_dim, "size": self.size, "device": str(self.device),
                "precision": self.precision, "ema": self.bundle.ema, "max_codes": MAX_CODES, "max_steps": MAX_STEPS,
                "heads": {"available": self.framing is not None, "default": self.heads_default,
                          "detector": self.detector_name, "why": "" if self.framing else self.no_detector}}

    @property
    def heads_default(self) -> bool:
        """The switch starts on for a model trained on head crops, as translate's --heads does."""
        return self.framing is not None and self.bundle.info.meta.get("framing") == "heads"

    def heads(self, value: Any) -> bool:
        """A request's heads switch (absent: off); on needs a detector."""
        on = parse_flag(value, "heads")
        if on and self.framing is None:
            raise WebError(f"heads cannot be on: {self.no_detector}")
        return on

    def direction(self, name: Any) -> str:
        """'a2b' / 'b2a' from a direction name the model can translate (a2b, or cat2dog)."""
        if not isinstance(name, str):
            raise WebError(f"direction must be one of {', '.join(self.directions)}, got {name!r}")
        src, tgt = resolve_direction(self.bundle, None, name)
        key = f"{src}2{tgt}"
        if key not in self.directions:
            raise WebError(f"this model cannot translate {name}: it holds {', '.join(self.directions)} only")
        return key

    # --- photos ---

    def _load(self, data: bytes, name: str) -> Image.Image:
        """Uploaded bytes -> the RGB photo at full resolution, decoded by translate's robust,
        size-limited loader (load_rgb) from a file in the temporary folder (removed at once)."""
        tmp = self.workdir / f"upload-{secrets.token_hex(8)}"
        try:
            tmp.write_bytes(data)
            return load_rgb(tmp, max_pixels=self.max_pixels)
        except ImageError as e:
            raise WebError(str(e).replace(repr(str(tmp)), repr(name))) from None
        finally:
            tmp.unlink(missing_ok=True)

    def add_photo(self, data: bytes, name: str) -> Photo:
        img = self._load(data, name)
        photo = Photo(secrets.token_hex(8), name, input_tensor(img, self.size),  # = translate's load_input
                      image=img if self.framing is not None else None)
        with self._photos_lock:
            self._photos[photo.id] = photo
            whole = sum(p.whole_pixels for p in self._photos.values())
            while len(self._photos) > self.max_photos or (whole > self.max_whole_pixels and len(self._photos) > 1):
                whole -= self._photos.popitem(last=False)[1].whole_pixels
        return photo

    def photo(self, photo_id: Any) -> Photo:
        with self._photos_lock:
            photo = self._photos.get(photo_id) if isinstance(photo_id, str) else None
            if photo is None:
                raise WebError("this photo is no longer on the server (it restarted, or many photos came since): "
                               "pick it again", 404)
            self._photos.move_to_end(photo_id)
        return photo

    # --- style codes ---

    def codes(self, req: dict) -> Tensor:
        """s_b (N, style_dim, 1, 1) float32 from exactly one of: "codes": [[...], ...];
        "random": {"n", "seed", "truncation"} (translate -n N --seed S --truncation T);
        "interpolate": {"from", "to", "steps"} (sample-styles --interpolate)."""
        given = [k for k in ("codes", "random", "interpolate") if k in req]
        if len(given) != 1:
            raise WebError("send exactly one of codes, random or interpolate")
        if "codes" in given:
            return parse_codes(req["codes"], self.style_dim)
        spec = req[given[0]]
        if not isinstance(spec, dict):
            raise WebError(f"{given[0]} must be an object")
        if "random" in given:
            n = _int(spec.get("n", 8), "n", 1, MAX_CODES)
            seed = _int(spec.get("seed", 0), "seed", 0, MAX_SEED)
            truncation = _number(spec.get("truncation", 1.0), "truncation", 0.0, 10.0)
            return random_styles(n, self.style_dim, seed, truncation)
        s0, s1 = (torch.tensor(parse_code(spec.get(k), self.style_dim, k), dtype=torch.float32) for k in ("from", "to"))
        steps = _int(spec.get("steps", 8), "steps", 2, MAX_STEPS)
        return interpolate_styles(s0, s1, steps)

    # --- heads ---

    def _head(self, photo: Photo) -> Head:
        """The photo's head, found on first use (under the compute lock) and cached: a slider
        move never runs the detector."""
        if photo.head is None:
            if photo.image is None:
                raise WebError(f"heads cannot be on: {self.no_detector}")
            d, pasted = self.framing.find(photo.image)
            self.detections += 1
            if pasted is not None:
                message = (f"head found in {photo.name!r} (confidence {d.confidence:.2f}): its crop is translated "
                           "and pasted back into the whole photo")
            else:
                message = self.framing.why(photo.name, d.confidence) + ": the whole photo is translated instead"
            preview = pasted.scaled(self.preview_side) if pasted is not None and self.preview_side else pasted
            photo.head = Head(d, pasted, message, preview)
        return photo.head

    def head_info(self, photo: Photo) -> dict | None:
        """What the page shows about a photo's head (None before it was looked for)."""
        head = photo.head
        if head is None:
            return None
        w, h = photo.image.size
        return {"found": head.pasted is not None, "confidence": round(head.detection.confidence, 4),
                "window": list(head.pasted.window) if head.pasted is not None else None,
                "width": w, "height": h, "message": head.message}

    def _framed(self, photo: Photo, heads: bool) -> tuple[str, Prepared]:
        """(content cache key, what the model sees and how its outputs become pictures): the
        head crop pasted back (translate --heads), or the photo as it is (also a photo without
        a head: translate --heads --no-head whole)."""
        if heads:
            head = self._head(photo)
            if head.pasted is not None:
                return "heads", head.pasted
        return "whole", Prepared(photo.x)

    # --- compute ---

    def _decode(self, photo: Photo, direction: str, s_b: Tensor, check: Callable[[], None],
                heads: bool) -> tuple[Prepared, Tensor]:
        """(the framing, the model's raw outputs uint8 (N, h, w, 3)). c_a comes from the cache
        (encoded on the photo's first use in a direction and framing); the N codes decode in
        translate's batches. `check` runs once the compute is ours."""
        tr = self.translators[direction]
        with self.lock:
            check()
            key, prep = self._framed(photo, heads)
            c_a = photo.contents.get((direction, key))
            if c_a is None:
                c_a = photo.contents[(direction, key)] = tr.content(prep.x_a)
                self.encodes += 1
            return prep, torch.cat([u8 for _, u8 in tr.decode(c_a, s_b, tuple(prep.x_a.shape[-2:]))])

    def render(self, photo: Photo, direction: str, s_b: Tensor, check: Callable[[], None] = _nothing, *,
               heads: bool = False, full: bool = False) -> tuple[Tensor, bool]:
        """(x_ab uint8 (N, H, W, 3) for codes s_b (N, style_dim, 1, 1), whether it is a preview).
        x_ab is what translate writes; with `heads`, the whole photo with each translated head
        crop pasted back (outside the compute lock: the next computation need not wait for it),
        at full resolution when `full` or when the photo is no longer than PREVIEW_SIDE, else
        scaled to it (a preview). `check` runs once the compute is ours and again before the
        paste-back, to drop a request superseded meanwhile."""
        prep, x_ab = self._decode(photo, direction, s_b, check, heads)
        if not isinstance(prep, PastedHead):
            return x_ab, False
        check()
        canvas = prep if full else photo.head.preview
        return torch.stack([_pixels(canvas.render(u8)) for u8 in x_ab]), canvas is not prep

    def style_of(self, data: bytes, name: str, direction: str, heads: bool = False) -> tuple[Tensor, str | None]:
        """(the style code (1, style_dim, 1, 1) of a reference photo of `direction`'s target
        domain, as `translate [--heads] --style-from` encodes it: with heads its head crop;
        the line saying it has no head, when its whole photo gave the style)."""
        tr = self.translators[direction]
        require_style_encoder(self.bundle, tr.tgt)
        img = self._load(data, name)
        with self.lock:
            if heads:
                x_b, note = self.framing.reference_image(img, name)
            else:
                x_b, note = input_tensor(img, self.size), None
            return tr.style(x_b), note

    def grid(self, photo: Photo, direction: str, s_b: Tensor, heads: bool = False) -> Image.Image:
        """The contact sheet `translate [--heads] --grid` writes: the photo, then its outputs."""
        prep, x_ab = self._decode(photo, direction, s_b, _nothing, heads)
        return prep.sheet(x_ab)

    def bank(self, direction: str, s_b: Tensor, sources: list[str]) -> bytes:
        """The bytes of a styles file for `direction`'s target domain that `translate --style-file`
        reads; written in the temporary folder, read back and removed."""
        info = self.bundle.info
        path = self.workdir / f"bank-{secrets.token_hex(8)}.safetensors"
        try:
            save_style_bank(path, s_b, self.domain(direction[-1]), "ui", None, domain_a=info.domains[0],
                            domain_b=info.domains[1], model=self.model_name, sources=json.dumps(sources))
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
