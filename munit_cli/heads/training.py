"""Training the head detector (`munit train-detector`), choosing its threshold on the probe
split, and measuring it on held-out photos (`munit eval-detector`): IoU with the reference
windows, the rate of "no head", and the time per photo on this machine."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from munit_cli.heads.boxes import Box, iou, iou_tensor
from munit_cli.heads.data import PhotoSet, make_batch, negative_rect, warp
from munit_cli.heads.detector import Detector, Recipe
from munit_cli.heads.network import STRIDE, HeadNet, decode, predict
from munit_cli.images import DEFAULT_MAX_PIXELS, ImageError, load_rgb
from munit_cli.optim import adamw_warmup_cosine
from munit_cli.runtime import cpu_model, autocast
from munit_cli.seeds import stable_seed

Callback = Callable[[str, dict], None]


# --- targets and loss --------------------------------------------------------------------------

def targets(boxes: Tensor, positive: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Head windows (B, 4) on size x size canvases -> heat map (B, G, G) (a Gaussian at the
    centre, exactly 1 in its cell, 0 for head-free images), regression targets (B, 3, G, G)
    (dx, dy from each cell's centre in cells, log(side / size)) and their weights (B, G, G):
    the 3 x 3 cells around the centre, so decoding from a neighbour of the peak is trained too."""
    g = size // STRIDE
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / STRIDE, (boxes[:, 1] + boxes[:, 3]) / 2 / STRIDE  # in cells
    side = ((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) / 2
    cells = torch.arange(g).float() + 0.5
    dx = cx[:, None, None] - cells[None, None, :]  # (B, 1, G): centre minus each column's centre
    dy = cy[:, None, None] - cells[None, :, None]  # (B, G, 1)
    sigma = (side / STRIDE * 0.1).clamp(min=0.6)[:, None, None]
    heat = torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2))  # (B, G, G)
    col = cx.floor().clamp(0, g - 1).long()
    row = cy.floor().clamp(0, g - 1).long()
    peak = torch.zeros_like(heat, dtype=torch.bool)
    peak[torch.arange(len(boxes)), row, col] = True
    heat = torch.where(peak, torch.ones_like(heat), heat) * positive.view(-1, 1, 1)
    near = ((torch.arange(g)[None, None, :] - col[:, None, None]).abs() <= 1) & \
           ((torch.arange(g)[None, :, None] - row[:, None, None]).abs() <= 1)
    weight = near.float() * positive.view(-1, 1, 1).float()
    log_side = torch.log(side.clamp(min=1.0) / size)[:, None, None].expand(-1, g, g)
    reg = torch.stack([dx.expand(-1, g, g), dy.expand(-1, g, g), log_side], 1)  # (B, 3, G, G)
    return heat, reg, weight


def loss_fn(out: Tensor, heat: Tensor, reg: Tensor, weight: Tensor, recipe: Recipe) -> tuple[Tensor, dict]:
    """Penalty-reduced focal loss on the heat map (CenterNet) + L1 on offsets and log side."""
    logit = out[:, 0].float()
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    n_pos = pos.sum().clamp(min=1)
    focal = -(pos * (1 - p) ** 2 * torch.log(p) + (1 - pos) * (1 - heat) ** 4 * p ** 2 * torch.log(1 - p)).sum() / n_pos
    w = weight / weight.sum().clamp(min=1)
    l1 = (out[:, 1:].float() - reg).abs()  # (B, 3, G, G)
    offset = (l1[:, :2].sum(1) * w).sum()
    size = (l1[:, 2] * w).sum()
    total = focal + recipe.offset_w * offset + recipe.size_w * size
    return total, {"focal": float(focal.detach()), "offset": float(offset.detach()), "size": float(size.detach())}


# --- in-memory measures ------------------------------------------------------------------------

@torch.no_grad()
def predict_set(net: HeadNet, ps: PhotoSet, recipe: Recipe, device: torch.device, precision: str = "fp32",
                batch: int = 128) -> tuple[Tensor, Tensor]:
    """Whole photos of a PhotoSet -> (IoU with their windows (N,), confidence (N,))."""
    net.eval()
    ious, confs = [], []
    for i in range(0, len(ps), batch):
        idx = torch.arange(i, min(i + batch, len(ps)))
        x, boxes, _ = make_batch(ps, idx, recipe, torch.Generator(), augment=False)
        with autocast(device, precision):
            out = predict(net, x.to(device))
        pred, conf = decode(out.cpu(), recipe.input_size)
        ious.append(iou_tensor(pred, boxes))
        confs.append(conf)
    return torch.cat(ious), torch.cat(confs)


@torch.no_grad()
def negative_confidences(net: HeadNet, ps: PhotoSet, recipe: Recipe, device: torch.device, precision: str = "fp32",
                         seed: int = 0, batch: int = 128) -> Tensor:
    """Confidence on one synthesised head-free crop per photo where one fits (fixed seed)."""
    net.eval()
    gen = torch.Generator().manual_seed(stable_seed(seed, "negatives"))
    picks = [(i, negative_rect(tuple(ps.valid[i].tolist()), tuple(ps.boxes[i].tolist()), recipe.max_aspect, gen))
             for i in range(len(ps))]
    picks = [(i, r) for i, r in picks if r is not None]
    confs = []
    for j in range(0, len(picks), batch):
        chunk = picks[j:j + batch]
        x, _, _ = warp(ps.images[[i for i, _ in chunk]], torch.tensor([r for _, r in chunk]), recipe.input_size)
        with autocast(device, precision):
            out = predict(net, x.to(device))
        confs.append(decode(out.cpu(), recipe.input_size)[1])
    return torch.cat(confs) if confs else torch.zeros(0)


def choose_threshold(pos: Tensor, neg: Tensor, keep: float = 0.95) -> float:
    """The confidence that best separates head photos from head-free crops (max TPR - FPR),
    lowered where needed so that `keep` of the head photos stay found."""
    if len(pos) == 0:
        return 0.5
    floor = float(torch.quantile(pos.float(), 1 - keep))
    if len(neg) == 0:
        return floor
    best, best_t = -2.0, 0.5
    for t in torch.cat([pos, neg]).unique().tolist():
        j = float((pos >= t).float().mean() - (neg >= t).float().mean())
        if j > best:
            best, best_t = j, t
    return min(float(best_t), floor)


def _summary(ious: Tensor, conf: Tensor, threshold: float) -> dict:
    found = conf >= threshold
    return {"n": len(ious), "iou50": float((ious >= 0.5).float().mean()) if len(ious) else 0.0,
            "hit50": float(((ious >= 0.5) & found).float().mean()) if len(ious) else 0.0,
            "median_iou": float(ious.median()) if len(ious) else 0.0,
            "no_head": float((~found).float().mean()) if len(ious) else 0.0}


# --- training ----------------------------------------------------------------------------------

def train_detector(train: PhotoSet, probe: PhotoSet, recipe: Recipe, device: torch.device, precision: str = "fp32",
                   callback: Callback | None = None) -> tuple[HeadNet, dict]:
    """Train from scratch on `train`'s photos (all with a head window); returns the network
    (eval mode, on CPU) and its figures: the threshold chosen on `probe`, probe measures and
    the per-epoch history."""
    callback = callback or (lambda kind, info: None)
    t0 = time.perf_counter()
    torch.manual_seed(recipe.seed)
    net = HeadNet(recipe.widths, recipe.neck).to(device)
    n = len(train)
    per_epoch = max(1, n // recipe.batch_size)
    opt, sched = adamw_warmup_cosine(net.parameters(), recipe.lr, recipe.weight_decay, per_epoch, recipe.epochs,
                                     recipe.warmup_epochs)
    callback("start", {"train": n, "probe": len(probe), "epochs": recipe.epochs, "batches": per_epoch})
    history = []
    for epoch in range(recipe.epochs):
        net.train()
        gen = torch.Generator().manual_seed(stable_seed(recipe.seed, "detector", epoch))
        order = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        for b in range(per_epoch):
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            x, boxes, pos = make_batch(train, idx, recipe, gen)
            heat, reg, weight = targets(boxes, pos, recipe.input_size)
            with autocast(device, precision):
                out = net(x.to(device))
            loss, parts = loss_fn(out, heat.to(device), reg.to(device), weight.to(device), recipe)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            callback("batch", {"epoch": epoch + 1, "batch": b + 1, "loss": sums["loss"] / (b + 1)})
        row = {"epoch": epoch + 1, **{k: v / per_epoch for k, v in sums.items()}, "elapsed_s": time.perf_counter() - t0}
        if len(probe):
            ious, _ = predict_set(net, probe, recipe, device, precision)
            row.update(probe_iou50=float((ious >= 0.5).float().mean()), probe_median_iou=float(ious.median()))
        history.append(row)
        callback("epoch", row)
    pos_iou, pos_conf = predict_set(net, probe, recipe, device, precision) if len(probe) else (torch.zeros(0), torch.zeros(0))
    neg_conf = negative_confidences(net, probe, recipe, device, precision, recipe.seed) if len(probe) else torch.zeros(0)
    threshold = choose_threshold(pos_conf, neg_conf)
    probe_figures = {**_summary(pos_iou, pos_conf, threshold), "negatives": len(neg_conf),
                     "false_heads": float((neg_conf >= threshold).float().mean()) if len(neg_conf) else 0.0}
    net = net.cpu().eval()
    return net, {"threshold": threshold, "probe": probe_figures, "history": history,
                 "time_s": time.perf_counter() - t0}


# --- held-out evaluation on files -------------------------------------------------------------

@dataclass
class EvalPhoto:
    domain: str
    path: Path
    box: Box | None  # reference window; None: the reference finders found none (not a negative)


def evaluate(det: Detector, photos: list[EvalPhoto], max_pixels: int = DEFAULT_MAX_PIXELS, speed_photos: int = 100,
             callback: Callback | None = None, seed: int = 0) -> dict:
    """The detector on whole photos, as `munit heads` runs it, per domain:
      iou50 / hit50: share of photos with a reference window where the box has IoU >= 0.5 with
        it (hit50: and the confidence reaches the threshold); median_iou; no_head: share of those
        photos called "no head";
      unlabelled_found: share of photos without a reference window where a head is found (the
        finders missed many heads, so high is expected);
      false_heads: share of synthesised head-free crops (beside the reference window) called a head;
      centre_iou50: the same iou50 for a fixed box (the mean training window), for scale.
    and the time per photo (decode + letterbox + network, one at a time) on this CPU."""
    callback = callback or (lambda kind, info: None)
    mean_box = det.meta_json("mean_box")
    gen = torch.Generator().manual_seed(stable_seed(seed, "heldout-negatives"))
    per: dict[str, dict[str, list]] = {}
    unreadable = []
    for ph in photos:
        rec = per.setdefault(ph.domain, {"iou": [], "conf": [], "unl": [], "neg": [], "centre": []})
        try:
            img = load_rgb(ph.path, max_pixels=max_pixels)
        except ImageError:
            unreadable.append(str(ph.path))
            callback("photo", {})
            continue
        d = det.detect(img)
        if ph.box is None:
            rec["unl"].append(d.found)
        else:
            rec["iou"].append(iou(d.box, ph.box))
            rec["conf"].append(d.confidence)
            if mean_box:
                w, h = img.size
                rec["centre"].append(iou((mean_box[0] * w, mean_box[1] * h, mean_box[2] * w, mean_box[3] * h), ph.box))
            rect = negative_rect((0.0, 0.0, float(img.size[0]), float(img.size[1])), ph.box, det.recipe.max_aspect, gen)
            if rect is not None:
                rec["neg"].append(det.detect(img.crop(tuple(round(v) for v in rect))).found)
        callback("photo", {})
    domains = {}
    for dom, rec in per.items():
        s = _summary(torch.tensor(rec["iou"]), torch.tensor(rec["conf"]), det.threshold)
        s["unlabelled"] = len(rec["unl"])
        s["unlabelled_found"] = sum(rec["unl"]) / len(rec["unl"]) if rec["unl"] else None
        s["negatives"] = len(rec["neg"])
        s["false_heads"] = sum(rec["neg"]) / len(rec["neg"]) if rec["neg"] else None
        if rec["centre"]:
            s["centre_iou50"] = sum(v >= 0.5 for v in rec["centre"]) / len(rec["centre"])
        domains[dom] = s
    return {"domains": domains, "threshold": det.threshold, "unreadable": unreadable,
            "speed": measure_speed(det, [p.path for p in photos[:speed_photos]], max_pixels)}


def measure_speed(det: Detector, paths: list[Path], max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """Seconds per photo, one photo at a time: decode + letterbox + network (after a warm-up)."""
    if not paths:
        return {}
    det.detect(load_rgb(paths[0], max_pixels=max_pixels))
    times = []
    for p in paths:
        t = time.perf_counter()
        try:
            det.detect(load_rgb(p, max_pixels=max_pixels))
        except ImageError:
            continue
        times.append(time.perf_counter() - t)
    return {"ms_per_photo": 1000 * statistics.median(times) if times else None, "photos": len(times),
            "threads": torch.get_num_threads(), "device": str(det.device), "cpu": cpu_model()}
