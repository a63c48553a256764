"""The `detector` file (safetensors: `det.*` weights, metadata with the recipe, the threshold,
the split and the held-out figures) and the loaded Detector that finds one head per photo."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from munit_cli import __version__
from munit_cli.checkpoint import FORMAT_VERSION, load_module, load_tensors, read_header, save_tensors
from munit_cli.errors import MunitError
from munit_cli.heads.boxes import Box, Letterbox, centre_side, from_centre
from munit_cli.heads.network import HeadNet, decode, predict
from munit_cli.runtime import autocast
from munit_cli.weights import resolve_detector

KIND = "detector"
PREFIX = "det"
TERMS = ("trained on PetImages photos (Microsoft, Kaggle 'Dogs vs. Cats'; Petfinder): "
         "non-commercial research use only")


@dataclass
class Recipe:
    """Every setting of a detector: network and training (stored in its metadata)."""

    input_size: int = 128  # side of the letterboxed square the network sees (a multiple of 32)
    widths: tuple[int, ...] = (16, 32, 64, 128, 192)  # channels of the stages at strides 2, 4, 8, 16, 32
    neck: int = 64  # channels of the merged stride-8 map the head reads
    store_size: int = 144  # photos are kept letterboxed at this side in memory; crops come from it
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3  # AdamW peak learning rate (linear warm-up, then cosine to 0)
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    negatives: float = 0.25  # fraction of each batch replaced by synthesised head-free images
    whole: float = 0.3  # fraction of positives shown as the whole photo (the rest: random crops)
    min_crop: float = 0.5  # random crops keep at least this fraction of the photo's longer side
    max_aspect: float = 2.0  # crops (hence letterboxes) of aspect ratio up to this, either way
    jitter: float = 0.3  # brightness, contrast and saturation drawn from [1 - jitter, 1 + jitter]
    gray: float = 0.05  # fraction of images turned grayscale
    size_w: float = 1.0  # weight of the L1 loss on log(side)
    offset_w: float = 1.0  # weight of the L1 loss on the centre offsets
    probe: float = 0.1  # fraction of the training photos kept out to pick the threshold (hash of the name)
    seed: int = 0

    def validate(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise MunitError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}", exit_code=2)
        if self.input_size < 32 or self.input_size % 32:
            raise MunitError(f"--input-size must be a multiple of 32, at least 32, got {self.input_size}", exit_code=2)
        if not 0 < self.probe < 1:
            raise MunitError(f"--probe must be between 0 and 1, got {self.probe}", exit_code=2)
        if not 0 <= self.negatives < 1:
            raise MunitError(f"--negatives must be in [0, 1), got {self.negatives}", exit_code=2)
        if self.lr <= 0:
            raise MunitError(f"--lr must be > 0, got {self.lr}", exit_code=2)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        fields = json.loads(text)
        known = {k: v for k, v in fields.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "widths": tuple(known.get("widths", cls.widths))})


@dataclass
class Detection:
    """One photo's answer: the best head window (square, photo pixels, heads/ framing; may reach
    past the photo) and its confidence; `found` when the confidence reaches the threshold."""

    box: Box
    confidence: float
    found: bool

    @property
    def head(self) -> Box | None:
        return self.box if self.found else None


def letterbox(img: Image.Image, side: int) -> tuple[Tensor, Letterbox]:
    """RGB photo -> ((3, side, side) in [-1, 1], mid-grey padding, the geometry)."""
    lb = Letterbox.fit(img.size[0], img.size[1], side)
    small = img.resize((lb.new_w, lb.new_h), Image.BILINEAR, reducing_gap=2.0)
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    canvas.paste(small, (lb.left, lb.top))
    x = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(side, side, 3)
    return x.permute(2, 0, 1).float().div(127.5).sub(1), lb


@dataclass
class Detector:
    """A loaded detector: `detect` finds the most prominent head in photos."""

    net: HeadNet
    recipe: Recipe
    threshold: float
    path: Path | None = None
    meta: dict[str, str] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"

    def meta_json(self, key: str):
        """A JSON metadata value (None when absent or unreadable)."""
        try:
            return json.loads(self.meta[key])
        except (KeyError, ValueError):
            return None

    def to(self, device: torch.device, precision: str = "fp32") -> "Detector":
        self.net = self.net.float().to(device).eval().requires_grad_(False)
        self.device, self.precision = device, precision
        return self

    @torch.inference_mode()
    def run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Letterboxed canvases (B, 3, S, S) -> (boxes (B, 4) in canvas pixels, confidence (B,)) on CPU."""
        with autocast(self.device, self.precision):
            out = predict(self.net, x.to(self.device))
        boxes, conf = decode(out, self.recipe.input_size)
        return boxes.cpu(), conf.cpu()

    def detect_many(self, images: list[Image.Image]) -> list[Detection]:
        if not images:
            return []
        pairs = [letterbox(img, self.recipe.input_size) for img in images]
        boxes, conf = self.run(torch.stack([x for x, _ in pairs]))
        out = []
        for (_, lb), b, c in zip(pairs, boxes.tolist(), conf.tolist()):
            cx, cy, side = centre_side(lb.to_photo(tuple(b)))
            out.append(Detection(from_centre(cx, cy, side), float(c), c >= self.threshold))
        return out

    def detect(self, img: Image.Image) -> Detection:
        return self.detect_many([img])[0]


def save_detector(path: Path | str, net: HeadNet, recipe: Recipe, threshold: float, **meta: str) -> None:
    """Weights (`det.*`, float32) plus metadata: kind, recipe, threshold and whatever the trainer
    adds (split, probe and held-out figures, history, time, device), all strings."""
    tensors = {f"{PREFIX}.{k}": v.float() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    base = {"format_version": str(FORMAT_VERSION), "kind": KIND, "recipe": json.dumps(asdict(recipe)),
            "threshold": f"{threshold:.4f}", "input_size": str(recipe.input_size), "terms": TERMS,
            "munit_version": __version__}
    save_tensors(path, tensors, {**base, **{k: str(v) for k, v in meta.items()}})


def load_detector(path: Path | str) -> Detector:
    """Read a detector file written by save_detector; one clear line for anything else."""
    path = Path(path)
    meta, _ = read_header(path)
    if meta.get("kind") != KIND:
        what = f"a {meta['kind']} file" if "kind" in meta else "not a munit file"
        raise MunitError(f"{str(path)!r} is {what}, not a head detector: pass a file written by "
                         "`munit train-detector` (or leave --detector out for the shipped one)")
    try:
        recipe = Recipe.from_json(meta["recipe"])
        threshold = float(meta["threshold"])
    except (KeyError, TypeError, ValueError) as e:
        raise MunitError(f"head detector {str(path)!r} has corrupt metadata ({e}): train it again")
    net = HeadNet(recipe.widths, recipe.neck)
    load_module(net, load_tensors(path), PREFIX, path)
    return Detector(net.eval(), recipe, threshold, path, meta)


def open_detector(spec: str | Path | None, device: torch.device | str, precision: str,
                  threshold: float | None = None) -> Detector:
    """The detector `spec` names (a file, a name in the weights folders; None: the shipped
    one) on `device` at `precision`, with its confidence threshold replaced when given."""
    if threshold is not None and not 0 <= threshold <= 1:
        raise MunitError(f"--threshold must be between 0 and 1, got {threshold}", exit_code=2)
    det = load_detector(resolve_detector(spec)).to(device, precision)
    if threshold is not None:
        det.threshold = threshold
    return det
