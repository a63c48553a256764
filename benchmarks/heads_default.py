"""Should `translate --heads` be the default for a model trained on head crops? (issue 18)

Translates whole held-out photos (numbers 11000-11999 with a reference head window) two ways
with the same model and styles: the whole photo at the model's size (`--no-heads`), and the
detected head crop pasted back into the photo (`--heads`). Each output is judged where a person
looks, at the animal's head: the reference window is cut from the output and the heads
classifier says whether it shows the target animal. Prints one JSON object.

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
from munit_cli.heads.compose import HeadFraming, PastedHead
from munit_cli.heads.detector import load_detector
from munit_cli.images import load_rgb, resize_shorter, to_tensor
from munit_cli.inference import Translator
from munit_cli.models import random_styles
from munit_cli.runtime import check_precision
from munit_cli.weights import resolve_detector, resolve_model


def head_of(img: Image.Image, box: list[float], scale: float) -> torch.Tensor:
    """The reference window (photo pixels x scale) cut from `img`, as a (3, H, W) tensor."""
    return to_tensor(img.crop(tuple(round(v * scale) for v in box)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--detector")
    ap.add_argument("--photos", required=True, type=Path)
    ap.add_argument("--boxes", required=True, type=Path)
    ap.add_argument("--limit", type=int, default=50, help="photos per domain (the first by number)")
    ap.add_argument("-n", "--num-styles", type=int, default=4)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    dev = torch.device("cpu")
    prec = check_precision(args.precision, dev)
    bundle = load_generators(resolve_model(args.model))
    clf = load_classifier(args.classifier)
    labels = class_indices(clf, bundle.info.domains)
    framing = HeadFraming(load_detector(resolve_detector(args.detector)).to(dev, prec), bundle.info.image_size)
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
        hits = {"whole": 0, "heads": 0}
        no_head = 0
        for f in files:
            path, box = args.photos / name / f, boxes[name][f]
            photo = load_rgb(path)
            small = resize_shorter(photo, size)  # --no-heads: the model sees the whole photo
            outs = tr.translate(to_tensor(small), styles)  # uint8 (N, H, W, 3)
            heads = [head_of(Image.fromarray(o.numpy()), box, small.size[0] / photo.size[0]) for o in outs]
            probs, _ = clf.judge(torch.stack([h for h in _same_size(heads)]), prec)
            hits["whole"] += int((probs.argmax(1) == labels[tgt]).sum())
            prep = framing.prepare(path)  # --heads: the head crop, pasted back
            if not isinstance(prep, PastedHead):
                no_head += 1  # counted as a miss: --heads skips this photo
                continue
            outs = tr.translate(prep.x_a, styles)
            heads = [head_of(prep.render(o), box, 1.0) for o in outs]
            probs, _ = clf.judge(torch.stack(_same_size(heads)), prec)
            hits["heads"] += int((probs.argmax(1) == labels[tgt]).sum())
        total = len(files) * args.num_styles
        report["directions"][tr.direction] = {"photos": len(files), "no_head": no_head,
                                              "success_whole": hits["whole"] / total, "success_heads": hits["heads"] / total}
    report["time_s"] = time.perf_counter() - t0
    print(json.dumps(report))


def _same_size(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Crops of one photo may differ by a pixel after rounding: resize all to the first's size."""
    h, w = xs[0].shape[1:]
    return [x if x.shape[1:] == (h, w) else torch.nn.functional.interpolate(x[None], size=(h, w), mode="bilinear")[0]
            for x in xs]


if __name__ == "__main__":
    main()
