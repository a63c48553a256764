"""The domain classifier that judges translations (`munit train-classifier`, `munit eval`):
a small CNN trained from scratch on the two domain folders, stored as safetensors with its
recipe, its held-out accuracy and its split (so eval can tell which images it has seen).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from munit_cli import __version__
from munit_cli.checkpoint import FORMAT_VERSION, load_module, load_tensors, read_header, save_tensors
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS, ImageError, find_images, load_rgb, to_tensor
from munit_cli.optim import adamw_warmup_cosine
from munit_cli.runtime import autocast
from munit_cli.seeds import stable_seed

KIND = "classifier"
HASH_BYTES = 8  # truncated sha1 of a file's bytes: enough to tell which images were trained on
Callback = Callable[[str, dict], None]


@dataclass
class Recipe:
    """Every setting of a classifier's training (stored in its metadata)."""

    image_size: int = 80  # side of the square the network sees
    store_size: int = 92  # images are kept in memory as squares of this side; crops come from it
    widths: tuple[int, ...] = (32, 64, 128, 256, 256)  # channels of the conv blocks (each halves the size)
    convs: tuple[int, ...] = (1, 2, 2, 2, 1)  # 3x3 conv + BatchNorm + ReLU layers per block
    dropout: float = 0.2  # before the linear head
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3  # AdamW peak learning rate (linear warm-up, then cosine to 0)
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    min_scale: float = 0.35  # random-resized crops cover this much of the stored area or more
    jitter: float = 0.3  # brightness, contrast and saturation drawn from [1 - jitter, 1 + jitter]
    holdout: float = 0.1  # fraction held out, chosen by a hash of the file name
    seed: int = 0

    def validate(self) -> None:
        for name in ("image_size", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise MunitError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}", exit_code=2)
        if self.image_size < 16:
            raise MunitError(f"--image-size must be >= 16, got {self.image_size}", exit_code=2)
        if not 0 < self.holdout < 1:
            raise MunitError(f"--holdout must be between 0 and 1, got {self.holdout}", exit_code=2)
        if self.lr <= 0:
            raise MunitError(f"--lr must be > 0, got {self.lr}", exit_code=2)
        if len(self.widths) != len(self.convs):
            raise MunitError("the classifier recipe needs one conv count per width", exit_code=2)


def default_store_size(image_size: int) -> int:
    return round(image_size * 1.15)


# --- the network --------------------------------------------------------------------------

class DomainClassifier(nn.Module):
    """Conv blocks (3x3 conv, BatchNorm, ReLU; max-pool) -> global average pool -> linear."""

    def __init__(self, widths: tuple[int, ...], convs: tuple[int, ...], classes: int = 2, dropout: float = 0.0):
        super().__init__()
        blocks, c_in = [], 3
        for width, n in zip(widths, convs):
            layers: list[nn.Module] = []
            for k in range(n):
                layers += [nn.Conv2d(c_in if k == 0 else width, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, classes)
        self.feature_dim = c_in

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) in [-1, 1] -> pooled features (B, feature_dim)."""
        return self.blocks(x).mean((2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


def square(x: Tensor, side: int) -> Tensor:
    """(B, 3, H, W) float -> (B, 3, side, side): shorter side resized to `side` (antialiased
    bilinear), centre crop. The one resize used for training, held-out and eval images."""
    h, w = x.shape[-2:]
    scale = side / min(h, w)
    nh, nw = max(side, round(h * scale)), max(side, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - side) // 2, (nw - side) // 2
    return x[..., top:top + side, left:left + side]


def _centre(x: Tensor, side: int) -> Tensor:
    h, w = x.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    return x[..., top:top + side, left:left + side]


# --- files, split, hashes -----------------------------------------------------------------

def content_hash(path: Path) -> bytes:
    """The first HASH_BYTES bytes of the sha1 of a file's contents."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()[:HASH_BYTES]


def is_held_out(name: str, fraction: float) -> bool:
    """Deterministic split by the file name (not its folder): the same photo is held out
    wherever it is copied."""
    h = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big")
    return h / 2**64 < fraction


def select_files(folder: Path, exclude: list[str] = (), limit: int | None = None) -> list[Path]:
    """Images under `folder`, sorted, minus those whose name or relative path matches an
    `exclude` pattern (fnmatch), at most `limit`."""
    files = [p for p in find_images(folder)
             if not any(fnmatch.fnmatch(p.name, pat) or fnmatch.fnmatch(str(p.relative_to(folder)), pat)
                        for pat in exclude)]
    return files[:limit] if limit else files


@dataclass
class ClassData:
    """One class's images, decoded to (N, 3, store, store) uint8, and where they came from."""

    name: str
    train: Tensor
    holdout: Tensor
    train_files: list[Path]
    holdout_files: list[Path]
    train_hashes: list[bytes]
    unreadable: list[Path] = field(default_factory=list)


def _decode(path: Path, store: int, max_pixels: int) -> tuple[Tensor, bytes] | None:
    try:
        img = load_rgb(path, max_pixels=max_pixels, draft=2 * store)
        digest = content_hash(path)
    except (ImageError, OSError):
        return None
    x = square(to_tensor(img).unsqueeze(0), store)[0]
    return x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8), digest


def load_class(name: str, files: list[Path], recipe: Recipe, max_pixels: int = DEFAULT_MAX_PIXELS,
               workers: int = 4, callback: Callback | None = None) -> ClassData:
    """Decode every file once (threads), split into train / held-out by file name."""
    callback = callback or (lambda kind, info: None)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="munit-decode") as pool:
        results = []
        for r in pool.map(lambda p: _decode(p, recipe.store_size, max_pixels), files):
            results.append(r)
            callback("decoded", {"n": 1})
    parts: dict[bool, list[tuple[Path, Tensor, bytes]]] = {True: [], False: []}
    bad = []
    for p, r in zip(files, results):
        if r is None:
            bad.append(p)
        else:
            parts[is_held_out(p.name, recipe.holdout)].append((p, *r))
    if not parts[False] or not parts[True]:
        raise MunitError(f"class {name!r} has {len(parts[False])} training and {len(parts[True])} held-out images "
                         f"({len(bad)} unreadable): it needs more readable images (or a larger --holdout)")
    empty = torch.zeros(0, 3, recipe.store_size, recipe.store_size, dtype=torch.uint8)
    stack = lambda items: torch.stack([x for _, x, _ in items]) if items else empty  # noqa: E731
    return ClassData(name, stack(parts[False]), stack(parts[True]), [p for p, _, _ in parts[False]],
                     [p for p, _, _ in parts[True]], [h for _, _, h in parts[False]], bad)


# --- training -----------------------------------------------------------------------------

def augment(u8: Tensor, recipe: Recipe, gen: torch.Generator) -> Tensor:
    """(B, 3, S, S) uint8 -> (B, 3, size, size) in [-1, 1]: random-resized crop, flip, colour."""
    b, _, s, _ = u8.shape
    size = recipe.image_size
    area = torch.empty(b).uniform_(recipe.min_scale, 1.0, generator=gen) * s * s
    ratio = torch.exp(torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen))
    pos = torch.rand(b, 2, generator=gen)
    crops = []
    for i in range(b):
        w = int(min(s, round(math.sqrt(area[i] * ratio[i]))))
        h = int(min(s, round(math.sqrt(area[i] / ratio[i]))))
        top, left = int(pos[i, 0] * (s - h)), int(pos[i, 1] * (s - w))
        crop = u8[i:i + 1, :, top:top + h, left:left + w].float()
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    x = torch.cat(crops).div_(255)  # (B, 3, size, size) in [0, 1]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    j = recipe.jitter
    factors = torch.empty(3, b, 1, 1, 1).uniform_(1 - j, 1 + j, generator=gen)
    x = x * factors[0]  # brightness
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * factors[1] + mean  # contrast
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * factors[2] + gray  # saturation
    return x.clamp_(0, 1).mul_(2).sub_(1)


def _eval_input(u8: Tensor, image_size: int) -> Tensor:
    return _centre(u8, image_size).float().div(127.5).sub(1)


@torch.no_grad()
def accuracy(net: DomainClassifier, u8: Tensor, label: int, recipe: Recipe, device: torch.device,
             precision: str = "fp32", batch: int = 256) -> float:
    """Fraction of stored (N, 3, S, S) uint8 images classified as `label` (centre crops)."""
    net.eval()
    hits = 0
    for i in range(0, u8.shape[0], batch):
        x = _eval_input(u8[i:i + batch], recipe.image_size).to(device)
        with autocast(device, precision):
            hits += int((net(x).argmax(1) == label).sum())
    return hits / max(1, u8.shape[0])


def train_classifier(classes: list[ClassData], recipe: Recipe, device: torch.device, precision: str = "fp32",
                     callback: Callback | None = None) -> tuple[DomainClassifier, dict]:
    """Train from scratch; returns the network (eval mode, on CPU) and its figures:
    held-out accuracy per class, per-epoch history and the time taken."""
    callback = callback or (lambda kind, info: None)
    t0 = time.perf_counter()
    torch.manual_seed(recipe.seed)
    net = DomainClassifier(recipe.widths, recipe.convs, len(classes), recipe.dropout).to(device)
    x_all = torch.cat([c.train for c in classes])
    y_all = torch.cat([torch.full((c.train.shape[0],), k, dtype=torch.long) for k, c in enumerate(classes)])
    n = x_all.shape[0]
    counts = torch.tensor([c.train.shape[0] for c in classes], dtype=torch.float)
    weight = (n / (len(classes) * counts)).to(device)  # balanced loss for unbalanced folders
    per_epoch = max(1, n // recipe.batch_size)
    opt, sched = adamw_warmup_cosine(net.parameters(), recipe.lr, recipe.weight_decay, per_epoch, recipe.epochs,
                                     recipe.warmup_epochs)
    callback("start", {"train": [c.train.shape[0] for c in classes], "holdout": [c.holdout.shape[0] for c in classes],
                       "epochs": recipe.epochs, "batches": per_epoch})
    history = []
    for epoch in range(recipe.epochs):
        net.train()
        gen = torch.Generator().manual_seed(stable_seed(recipe.seed, "classifier", epoch))
        order = torch.randperm(n, generator=gen)
        loss_sum, hits = 0.0, 0
        for b in range(per_epoch):
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            x, y = augment(x_all[idx], recipe, gen).to(device), y_all[idx].to(device)
            with autocast(device, precision):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
            hits += int((logits.argmax(1) == y).sum())
            callback("batch", {"epoch": epoch + 1, "batch": b + 1, "loss": loss_sum / (b + 1)})
        acc = {c.name: accuracy(net, c.holdout, k, recipe, device, precision) for k, c in enumerate(classes)}
        row = {"epoch": epoch + 1, "loss": loss_sum / per_epoch, "train_acc": hits / (per_epoch * recipe.batch_size),
               "holdout_acc": acc, "elapsed_s": time.perf_counter() - t0}
        history.append(row)
        callback("epoch", row)
    net = net.cpu().eval()
    return net, {"holdout_accuracy": history[-1]["holdout_acc"], "history": history,
                 "time_s": time.perf_counter() - t0}


# --- the file -----------------------------------------------------------------------------

def save_classifier(path: Path | str, net: DomainClassifier, recipe: Recipe, classes: list[ClassData],
                    figures: dict, folders: list[Path], device: str = "cpu") -> None:
    """Weights (`clf.*`) and the training images' hashes (`train_hashes`, uint8 (N, 8)) plus
    metadata: domains, held-out accuracy, recipe, split, time."""
    hashes = [h for c in classes for h in c.train_hashes]
    tensors = {f"clf.{k}": v for k, v in net.state_dict().items()}
    tensors["train_hashes"] = torch.frombuffer(bytearray(b"".join(hashes)), dtype=torch.uint8).view(-1, HASH_BYTES)
    split = {"rule": f"held out when sha1(file name) < {recipe.holdout} (as a fraction of 2**64)",
             "train_counts": {c.name: len(c.train_files) for c in classes},
             "holdout_files": {c.name: [p.name for p in c.holdout_files] for c in classes},
             "unreadable": {c.name: [str(p) for p in c.unreadable] for c in classes}}
    meta = {"format_version": str(FORMAT_VERSION), "kind": KIND, "domain_a": classes[0].name,
            "domain_b": classes[1].name, "classes": json.dumps([c.name for c in classes]),
            "holdout_accuracy": json.dumps(figures["holdout_accuracy"]), "recipe": json.dumps(asdict(recipe)),
            "split": json.dumps(split), "history": json.dumps(figures["history"]),
            "data": json.dumps({c.name: str(f) for c, f in zip(classes, folders)}),
            "time_s": f"{figures['time_s']:.1f}", "device": device, "munit_version": __version__}
    save_tensors(path, tensors, meta)


@dataclass
class Classifier:
    """A loaded classifier: `judge` gives class probabilities and features for images."""

    path: Path
    net: DomainClassifier
    recipe: Recipe
    classes: list[str]
    holdout_accuracy: dict[str, float]
    train_hashes: set[bytes]
    meta: dict[str, str]

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim

    def to(self, device: torch.device) -> "Classifier":
        self.net = self.net.to(device).eval()
        return self

    @torch.inference_mode()
    def judge(self, x: Tensor, precision: str = "fp32") -> tuple[Tensor, Tensor]:
        """Images (B, 3, H, W) in [-1, 1] (any size) -> (probabilities (B, classes),
        features (B, feature_dim)), float32 on CPU."""
        dev = next(self.net.parameters()).device
        x = _centre(square(x.float().to(dev), self.recipe.store_size), self.recipe.image_size)
        with autocast(dev, precision):
            f = self.net.features(x)
            logits = self.net.head(f)
        return logits.float().softmax(1).cpu(), f.float().cpu()

    def seen(self, paths: list[Path]) -> list[Path]:
        """The files among `paths` whose contents this classifier was trained on."""
        out = []
        for p in paths:
            try:
                if content_hash(p) in self.train_hashes:
                    out.append(p)
            except OSError:
                continue
        return out


def load_classifier(path: Path | str) -> Classifier:
    """Read a classifier file written by save_classifier; one clear line for anything else."""
    path = Path(path)
    meta, _ = read_header(path)
    if meta.get("kind") != KIND:
        what = f"a {meta['kind']} file" if "kind" in meta else "not a munit file"
        raise MunitError(f"{str(path)!r} is {what}, not a domain classifier: train one with `munit train-classifier`")
    try:
        fields = json.loads(meta["recipe"])
        recipe = Recipe(**{**fields, "widths": tuple(fields["widths"]), "convs": tuple(fields["convs"])})
        classes = json.loads(meta["classes"])
        acc = {k: float(v) for k, v in json.loads(meta.get("holdout_accuracy", "{}")).items()}
    except (KeyError, TypeError, ValueError) as e:
        raise MunitError(f"classifier {str(path)!r} has corrupt metadata ({e}): train it again")
    tensors = load_tensors(path)
    net = DomainClassifier(recipe.widths, recipe.convs, len(classes), recipe.dropout)
    load_module(net, tensors, "clf", path)
    raw = tensors.get("train_hashes", torch.zeros(0, HASH_BYTES, dtype=torch.uint8))
    hashes = {bytes(row.tolist()) for row in raw}
    return Classifier(path, net.eval(), recipe, classes, acc, hashes, meta)
