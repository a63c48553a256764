"""How well a model translates (`munit eval`) and the small probe run during training
(`munit train --eval-every`): success rate under a domain classifier, diversity, FID / KID.

Glossary: success = fraction of outputs the classifier calls the target domain; ceiling = its
accuracy on real target images; floor = its target-domain rate on the untranslated inputs.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from munit_cli import __version__
from munit_cli.checkpoint import CheckpointInfo, GeneratorBundle, read_header
from munit_cli.classifier import Classifier, load_classifier, square
from munit_cli.config import ModelConfig
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS, ImageError, find_images, load_rgb, to_tensor
from munit_cli.inference import Translator, supported_directions, u8_to_unit
from munit_cli.metrics import FidReference, kid, mean_pairwise_distance, mean_pairwise_lpips
from munit_cli.models import Generator, random_styles
from munit_cli.seeds import stable_seed

Callback = Callable[[str, dict], None]
MODES = ("latent", "reference")


# --- images -------------------------------------------------------------------------------

def eval_folder(root: Path, name: str) -> Path:
    """ROOT/test/NAME, ROOT/val/NAME or ROOT/NAME, the first that exists."""
    tried = [Path(root) / "test" / name, Path(root) / "val" / name, Path(root) / name]
    for cand in tried:
        if cand.is_dir():
            return cand
    raise MunitError(f"no test images for domain {name!r}: tried {', '.join(map(str, tried))}; "
                     "pass --data ROOT with one of them, or --src-images / --tgt-images")


@dataclass
class EvalImages:
    """One domain's eval images, decoded as (N, 3, size, size) in [-1, 1] (centre squares)."""

    name: str
    paths: list[Path]
    images: Tensor
    unreadable: list[Path] = field(default_factory=list)


def load_eval_images(name: str, paths: list[Path], size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> EvalImages:
    kept, xs, bad = [], [], []
    for p in paths:
        try:
            xs.append(square(to_tensor(load_rgb(p, max_pixels=max_pixels)).unsqueeze(0), size)[0])
            kept.append(p)
        except ImageError:
            bad.append(p)
    if len(xs) < 2:
        raise MunitError(f"domain {name!r} has {len(xs)} readable eval image(s) ({len(bad)} unreadable): "
                         "pass at least 2 images per domain")
    return EvalImages(name, kept, torch.stack(xs), bad)


def class_indices(clf: Classifier, domains: tuple[str, str]) -> dict[str, int]:
    """Model domain key ('a'/'b') -> the classifier's class index, matched by name."""
    if set(domains) != set(clf.classes):
        raise MunitError(f"classifier {str(clf.path)!r} tells {clf.classes[0]!r} from {clf.classes[1]!r} but the "
                         f"model's domains are {domains[0]!r} and {domains[1]!r}: train a classifier on the model's "
                         "domains (munit train-classifier --src ... --tgt ...)")
    return {d: clf.classes.index(name) for d, name in zip("ab", domains)}


def overlap_warnings(clf: Classifier, model_meta: dict[str, str], images: list[EvalImages]) -> list[str]:
    """Sentences for eval images the classifier was trained on (content hash) or that lie in
    a folder the model was trained on (training checkpoints record their folders)."""
    out = []
    paths = [p for im in images for p in im.paths]
    seen = clf.seen(paths)
    if seen:
        out.append(f"{len(seen)} of the {len(paths)} eval images (e.g. {str(seen[0])!r}) were in the classifier's "
                   "training set: its scores on them are optimistic; evaluate on images it never saw")
    try:
        folders = [Path(f).resolve() for f in json.loads(model_meta.get("data", "{}")).values() if f]
    except (ValueError, AttributeError):
        folders = []
    inside = [p for p in paths if any(p.resolve().is_relative_to(f) for f in folders)]
    if inside:
        out.append(f"{len(inside)} of the {len(paths)} eval images (e.g. {str(inside[0])!r}) are inside a folder the "
                   "model was trained on: unless they were excluded from its training, the model has seen them")
    return out


# --- the eval protocol ----------------------------------------------------------------------

def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": values}


@dataclass
class Measures:
    """What judges the outputs: the classifier, and optionally Inception (FID/KID) and LPIPS."""

    classifier: Classifier
    inception: Callable[[Tensor], Tensor] | None = None  # uint8 (B, H, W, 3) -> (B, D)
    lpips: torch.nn.Module | None = None
    precision: str = "fp32"

    @property
    def names(self) -> dict[str, str]:
        """JSON keys of the figures, named for what they are."""
        space = "" if self.inception is not None else "classifier_"
        return {"diversity": "lpips" if self.lpips is not None else "classifier_feature_distance",
                "fid": f"{space}fid", "kid": f"{space}kid"}

    def judge(self, u8: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Images given as uint8 (B, H, W, 3) and [-1, 1] (B, 3, H, W) -> classifier
        probabilities, classifier features, distribution (FID/KID) features."""
        probs, feats = self.classifier.judge(x, self.precision)
        return probs, feats, (self.inception(u8) if self.inception is not None else feats)

    def diversity(self, x: Tensor, clf_feats: Tensor) -> float:
        return mean_pairwise_lpips(self.lpips, x) if self.lpips is not None else mean_pairwise_distance(clf_feats)


def _to_u8(x: Tensor) -> Tensor:
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(-3, -1).contiguous()


def _judge_all(m: Measures, x_all: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Measures.judge over real images (N, 3, H, W), 64 at a time."""
    parts = [m.judge(_to_u8(x_all[i:i + 64]), x_all[i:i + 64]) for i in range(0, x_all.shape[0], 64)]
    return tuple(torch.cat(t) for t in zip(*parts))


def _group_diversity(m: Measures, x: Tensor, clf_feats: Tensor, k: int, seed: int) -> float:
    """The diversity measure over random groups of k different real images (the reference)."""
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(stable_seed("reals", seed)))
    groups = [order[i:i + k] for i in range(0, len(order) - k + 1, k)] or [order]
    return statistics.fmean(m.diversity(x[g], clf_feats[g]) for g in groups)


@dataclass
class EvalResult:
    report: dict
    grid_rows: list[list[Tensor]]  # per shown input: the input then its outputs, (3, H, W) in [-1, 1]


@dataclass
class _Task:
    """One direction's work: its translator, inputs, target label and real-image features."""

    tr: Translator
    direction: str  # a2b | b2a
    inputs: Tensor  # (N, 3, H, W)
    label: int  # the target domain's class index
    real_feats: Tensor  # distribution features of the real target images
    real_fid: FidReference
    ref_codes: Tensor | None  # styles of the real target images (M, style_dim, 1, 1)


def _score(m: Measures, task: _Task, mode: str, seed: int, k: int, kid_subsets: int, grid_inputs: int,
           grid_rows: list, advance: Callable[[], None]) -> dict[str, float]:
    """Translate every input with k styles of `mode` for one seed; the figures of that seed."""
    names = m.names
    hits, divs, feats = 0, [], []
    for i, x_a in enumerate(task.inputs):
        if mode == "latent":
            s = random_styles(k, task.tr.style_dim, stable_seed("eval", seed, task.direction, i))
        else:
            g = torch.Generator().manual_seed(stable_seed("eval-ref", seed, task.direction, i))
            s = task.ref_codes[torch.randint(task.ref_codes.shape[0], (k,), generator=g)]
        u8 = task.tr.translate(x_a, s)  # (k, H, W, 3)
        x = u8_to_unit(u8)
        probs, clf_f, f = m.judge(u8, x)
        hits += int((probs.argmax(1) == task.label).sum())
        divs.append(m.diversity(x, clf_f))
        feats.append(f)
        if i < grid_inputs:
            grid_rows.append([x_a, *x])
        advance()
    feats = torch.cat(feats)
    return {"success": hits / feats.shape[0], names["diversity"]: statistics.fmean(divs),
            names["fid"]: task.real_fid.distance(feats), names["kid"]: kid(feats, task.real_feats, kid_subsets, seed=seed)[0]}


def evaluate(bundle: GeneratorBundle, measures: Measures, images: dict[str, EvalImages], *, device: torch.device,
             num_styles: int = 10, seeds: list[int] = (0, 1, 2), batch_size: int | None = None, grid_inputs: int = 0,
             kid_subsets: int = 50, callback: Callback | None = None) -> EvalResult:
    """Translate every input of `images` ({'a': ..., 'b': ...}) with `num_styles` styles in both
    directions and both modes, once per seed, and score the outputs (see the module glossary).
    The contact sheet rows are the first `grid_inputs` inputs of the first seed, per mode."""
    callback = callback or (lambda kind, info: None)
    t0 = time.perf_counter()
    labels = class_indices(measures.classifier, bundle.info.domains)
    dom, names = dict(zip("ab", bundle.info.domains)), measures.names
    if not supported_directions(bundle):
        raise MunitError(f"{str(bundle.info.path)!r} holds no complete translation direction: re-export it")
    directions, grid_rows = {}, []
    for direction in supported_directions(bundle):
        src, tgt = direction[0], direction[-1]
        t_dir, name = time.perf_counter(), f"{dom[src]}2{dom[tgt]}"
        ref_ok = "enc_style" in bundle.parts.get(tgt, ())
        tr = Translator(bundle, src, tgt, device, measures.precision, batch_size, style_encoder=ref_ok)
        reals = images[tgt].images
        real_probs, real_clf, real_feats = _judge_all(measures, reals)
        refs = torch.cat([tr.style(reals[i:i + 32]) for i in range(0, reals.shape[0], 32)]) if ref_ok else None
        task = _Task(tr, direction, images[src].images, labels[tgt], real_feats, FidReference(real_feats), refs)
        modes = {}
        for mode in MODES if ref_ok else MODES[:1]:
            runs = [_score(measures, task, mode, seed, num_styles, kid_subsets, grid_inputs if si == 0 else 0,
                           grid_rows, lambda: callback("advance", {"direction": name, "mode": mode}))
                    for si, seed in enumerate(seeds)]
            modes[mode] = {k: _spread([r[k] for r in runs]) for k in runs[0]}
            modes[mode]["outputs_per_seed"] = task.inputs.shape[0] * num_styles
        ceiling = float((real_probs.argmax(1) == labels[tgt]).float().mean())
        floor = float((_judge_all(measures, task.inputs)[0].argmax(1) == labels[tgt]).float().mean())
        real_div = _group_diversity(measures, reals, real_clf, num_styles, seeds[0])
        directions[name] = {"source": dom[src], "target": dom[tgt], "inputs": task.inputs.shape[0],
                            "real_targets": reals.shape[0], "ceiling": ceiling, "floor": floor,
                            f"real_{names['diversity']}": real_div, "modes": modes, "time_s": time.perf_counter() - t_dir}
    report = {"model": str(bundle.info.path), "classifier": str(measures.classifier.path),
              "domains": list(bundle.info.domains), "num_styles": num_styles, "seeds": list(seeds),
              "measures": {"diversity": names["diversity"], "distribution": names["fid"].replace("fid", "fid/kid"),
                           "classifier_holdout_accuracy": measures.classifier.holdout_accuracy},
              "images": {im.name: len(im.paths) for im in images.values()},
              "directions": directions, "time_s": time.perf_counter() - t0, "munit_version": __version__}
    return EvalResult(report, grid_rows)


def eval_steps(bundle: GeneratorBundle, images: dict[str, EvalImages], seeds: int) -> int:
    """How many `advance` callbacks evaluate() makes (for a progress bar)."""
    total = 0
    for direction in supported_directions(bundle):
        modes = 2 if "enc_style" in bundle.parts.get(direction[-1], ()) else 1
        total += images[direction[0]].images.shape[0] * modes * seeds
    return total


# --- the training probe ---------------------------------------------------------------------

PROBE_INPUTS = 16  # per domain: the first images (sorted) of each --eval-data domain folder
PROBE_STYLES = 4  # fixed random styles, the same at every probe


@dataclass
class ProbeSpec:
    """`munit train --eval-every N --eval-data DIR --classifier C`."""

    every: int
    data: Path
    classifier: Path


MIN_DIVERSITY_RATIO = 0.5  # best.safetensors: only probes whose diversity is >= this x the real photos'


class TrainingProbe:
    """Fixed inputs and styles, both directions, latent mode: success rate and classifier-
    feature diversity in a few seconds; remembers the best mean success rate among probes
    that are not collapsed.

    A collapsed generator (every style gives the same picture) can fool the classifier, so a
    probe is *eligible* for best.safetensors only when, in both directions, the diversity of
    its outputs is at least MIN_DIVERSITY_RATIO x the same measure among real target photos
    (groups of PROBE_STYLES probe photos, computed once)."""

    def __init__(self, spec: ProbeSpec, domains: tuple[str, str], image_size: int, device: torch.device,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.spec, self.domains, self.device = spec, domains, device
        self.clf = load_classifier(spec.classifier).to(device)
        self.labels = class_indices(self.clf, domains)
        self.inputs = {}
        for d, name in zip("ab", domains):
            files = find_images(eval_folder(spec.data, name))
            self.inputs[d] = load_eval_images(name, files[:PROBE_INPUTS], image_size, max_pixels).images
        self.real_diversity = {d: self._real_diversity(x) for d, x in self.inputs.items()}
        self.best: float | None = None
        self.improved = False  # whether the last run() set a new best

    def _real_diversity(self, x: Tensor) -> float:
        """Mean pairwise classifier-feature distance within consecutive groups of PROBE_STYLES
        real photos: what the outputs' diversity is compared with."""
        groups = [x[i:i + PROBE_STYLES] for i in range(0, x.shape[0] - PROBE_STYLES + 1, PROBE_STYLES)] or [x]
        return statistics.fmean(mean_pairwise_distance(self.clf.judge(g, "fp32")[1]) for g in groups)

    def due(self, step: int, total: int) -> bool:
        return step % self.spec.every == 0 or step == total

    def restore_best(self, best_path: Path) -> None:
        """On resume: the best figure so far, from best.safetensors' metadata."""
        if best_path.exists():
            meta, _ = read_header(best_path)
            try:
                self.best = float(json.loads(meta.get("probe", "{}"))["probe_success"])
            except (ValueError, KeyError, TypeError):
                self.best = None

    def run(self, gen_a: Generator, gen_b: Generator, model: ModelConfig, precision: str) -> dict:
        """Probe figures: probe_success (mean of both directions), per direction success and
        diversity, the real photos' diversity per target domain, probe_eligible (not collapsed),
        probe_best (best eligible success so far, this one included; None before one), probe_s."""
        t0 = time.perf_counter()
        gens = {d: copy.deepcopy(g) for d, g in (("a", gen_a), ("b", gen_b))}  # Translator sets eval mode, no grads
        info = CheckpointInfo(Path("training-probe"), "training", model, None, self.domains, model.image_size, 0,
                              __version__)
        bundle = GeneratorBundle(info, gens, ema=False, dtype=torch.float32)
        styles = random_styles(PROBE_STYLES, model.gen.style_dim, stable_seed("probe"))
        out = {}
        for src, tgt in (("a", "b"), ("b", "a")):
            tr = Translator(bundle, src, tgt, self.device, precision)
            hits, divs = 0, []
            for x in self.inputs[src]:
                probs, f = self.clf.judge(u8_to_unit(tr.translate(x, styles)), precision)
                hits += int((probs.argmax(1) == self.labels[tgt]).sum())
                divs.append(mean_pairwise_distance(f))
            out[f"probe_success_{src}2{tgt}"] = hits / (len(self.inputs[src]) * PROBE_STYLES)
            out[f"probe_diversity_{src}2{tgt}"] = statistics.fmean(divs)
        out["probe_success"] = (out["probe_success_a2b"] + out["probe_success_b2a"]) / 2
        for src, tgt in (("a", "b"), ("b", "a")):
            out[f"probe_real_diversity_{tgt}"] = self.real_diversity[tgt]
        out["probe_eligible"] = all(out[f"probe_diversity_{s}2{t}"] >= MIN_DIVERSITY_RATIO * self.real_diversity[t]
                                    for s, t in (("a", "b"), ("b", "a")))
        self.improved = out["probe_eligible"] and (self.best is None or out["probe_success"] > self.best)
        if self.improved:
            self.best = out["probe_success"]
        out["probe_best"] = self.best
        out["probe_s"] = time.perf_counter() - t0
        return out


def probe_spec(every: int | None, data: Path | None, classifier: Path | None) -> ProbeSpec | None:
    """The probe asked for by --eval-every / --eval-data / --classifier (all or none)."""
    given = {"--eval-every": every, "--eval-data": data, "--classifier": classifier}
    if all(v is None for v in given.values()):
        return None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise MunitError(f"the training probe needs --eval-every, --eval-data and --classifier: add "
                         f"{' and '.join(missing)}", exit_code=2)
    if every < 1:
        raise MunitError(f"--eval-every must be >= 1, got {every}", exit_code=2)
    return ProbeSpec(every, Path(data), Path(classifier))
