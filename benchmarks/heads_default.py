"""Should `translate --heads` be the default for a model trained on head crops (issue 18), and
how should a head window that reaches past the photo's edge be cut (`--fit`, issue 17)?

Translates whole held-out photos (numbers 11000-11999 with a reference head window) three ways
with the same model and styles: the whole photo at the model's size (`--no-heads`), and the
detected head crop pasted back into the photo (`--heads`), its window either moved inside the
photo (`--fit inside`) or kept centred on the head, black past the edge like the training crops
of ../shared/data/heads (`--fit pad`). Each output is judged where a person
looks, at the animal's head: the reference window is cut from the output and the heads
classifier says whether it shows the target animal. A second measure makes each photo a
close-up like examples/cat.png (the photo cut to the middle `--closeup` of its head window,
clipped to the photo, enlarged 3x: the head overflows the frame) and judges the whole output of
both `--fit` choices. Prints one JSON object.

Usage:
  python benchmarks/heads_default.py --model M --classifier heads-clf.safetensors \
      --photos ../shared/data/heads/photos --boxes ../shared/data/heads/boxes.json --limit 50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from munit_cli.checkpoint import load_generators
from munit_cli.classifier import load_classifier
from munit_cli.evaluation import class_indices
from munit_cli.heads.compose import FITS, HeadFraming
from munit_cli.heads.detector import load_detector
from munit_cli.images import load_rgb, resize_shorter, to_tensor
from munit_cli.inference import Translator
from munit_cli.models import random_styles
from munit_cli.runtime import check_precision
from munit_cli.weights import resolve_detector, resolve_model


def head_of(img: Image.Image, box: list[float], scale: float) -> torch.Tensor:
    """The reference window (photo pixels x scale) cut from `img`, as a (3, H, W) tensor."""
    return to_tensor(img.crop(tuple(round(v * scale) for v in box)))


def closeup(photo: Image.Image, box: list[float], keep: float) -> Image.Image:
    """The middle `keep` of the head window (clipped to the photo), enlarged 3x: a photo whose
    head overflows the frame."""
    l, t, r, b = box
    cx, cy, half = (l + r) / 2, (t + b) / 2, (r - l) * keep / 2
    w, h = photo.size
    win = (max(0, round(cx - half)), max(0, round(cy - half)), min(w, round(cx + half)), min(h, round(cy + half)))
    near = photo.crop(win)
    return near.resize((near.width * 3, near.height * 3), Image.BICUBIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--detector")
    ap.add_argument("--photos", required=True, type=Path)
    ap.add_argument("--boxes", required=True, type=Path)
    ap.add_argument("--limit", type=int, default=50, help="photos per domain (the first by number)")
    ap.add_argument("-n", "--num-styles", type=int, default=4)
    ap.add_argument("--closeup", type=float, default=0.6, help="close-ups: the share of the head window kept")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    dev = torch.device("cpu")
    prec = check_precision(args.precision, dev)
    bundle = load_generators(resolve_model(args.model))
    clf = load_classifier(args.classifier)
    labels = class_indices(clf, bundle.info.domains)
    detector = load_detector(resolve_detector(args.detector)).to(dev, prec)
    framings = {fit: HeadFraming(detector, bundle.info.image_size, fit=fit) for fit in FITS}
    boxes = json.loads(args.boxes.read_text())
    size = bundle.info.image_size
    styles = random_styles(args.num_styles, bundle.info.model.gen.style_dim, seed=0)
    t0 = time.perf_counter()
    report = {"model": str(resolve_model(args.model)), "styles": args.num_styles, "precision": prec, "directions": {}}
    for src, tgt in (("a", "b"), ("b", "a")):
        name = bundle.info.domains["ab".index(src)]
        tr = Translator(bundle, src, tgt, dev, prec)
        files = sorted((f for f in boxes[name] if (args.photos / name / f).exists()), key=lambda f: int(Path(f).stem))
        files = files[:args.limit]
        hits = {"whole": 0, **{f"heads_{fit}": 0 for fit in FITS}, **{f"closeup_{fit}": 0 for fit in FITS}}
        no_head = past_edge = 0
        for f in files:
            path, box = args.photos / name / f, boxes[name][f]
            photo = load_rgb(path)
            small = resize_shorter(photo, size)  # --no-heads: the model sees the whole photo
            outs = tr.translate(to_tensor(small), styles)  # uint8 (N, H, W, 3)
            heads = [head_of(Image.fromarray(o.numpy()), box, small.size[0] / photo.size[0]) for o in outs]
            probs, _ = clf.judge(torch.stack([h for h in _same_size(heads)]), prec)
            hits["whole"] += int((probs.argmax(1) == labels[tgt]).sum())
            for fit, framing in framings.items():
                _, prep = framing.find(photo)  # --heads: the head crop, pasted back
                if prep is None:
                    no_head += fit == FITS[0]  # counted as a miss: --heads skips this photo
                    continue
                l, t, r, b = prep.window
                past_edge += fit == "pad" and (l < 0 or t < 0 or r > photo.size[0] or b > photo.size[1])
                outs = tr.translate(prep.x_a, styles)
                heads = [head_of(prep.render(o), box, 1.0) for o in outs]
                probs, _ = clf.judge(torch.stack(_same_size(heads)), prec)
                hits[f"heads_{fit}"] += int((probs.argmax(1) == labels[tgt]).sum())
            near = closeup(photo, box, args.closeup)
            for fit, framing in framings.items():
                _, head = framing.find(near)
                if head is None:
                    continue  # a miss for both fits
                outs = tr.translate(head.x_a, styles)
                probs, _ = clf.judge(torch.stack([to_tensor(head.render(o)) for o in outs]), prec)
                hits[f"closeup_{fit}"] += int((probs.argmax(1) == labels[tgt]).sum())
        total = len(files) * args.num_styles
        report["directions"][tr.direction] = {"photos": len(files), "no_head": no_head, "window_past_edge": past_edge,
                                              **{f"success_{k}": v / total for k, v in hits.items()}}
    report["time_s"] = time.perf_counter() - t0
    print(json.dumps(report))


def _same_size(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Crops of one photo may differ by a pixel after rounding: resize all to the first's size."""
    h, w = xs[0].shape[1:]
    return [x if x.shape[1:] == (h, w) else torch.nn.functional.interpolate(x[None], size=(h, w), mode="bilinear")[0]
            for x in xs]


if __name__ == "__main__":
    main()
