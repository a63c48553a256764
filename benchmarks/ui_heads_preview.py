"""munit ui with the heads switch on a large photo: a preview (the head pasted into a copy of the
photo scaled to --preview-side) against the full-size picture, per shown image; JSON.

Times what the server does for one slider move (Studio.render of one style code, then the PNG
data URL the page receives), alternating preview and full size in one process so the two
figures share the machine's noise. The photo is examples/cat.png enlarged (default 1600 px
long, 1.7 megapixels); the model and detector are the shipped ones unless given.

    python benchmarks/ui_heads_preview.py --reps 15
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--detector", default=None)
    ap.add_argument("--long-side", type=int, default=1600, help="enlarge examples/cat.png to this long side")
    ap.add_argument("--preview-side", type=int, default=None, help="default: munit ui's")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from munit_cli.checkpoint import load_generators
    from munit_cli.heads.detector import open_detector
    from munit_cli.runtime import check_precision, cpu_model
    from munit_cli.web.app import data_url, png_bytes
    from munit_cli.web.session import PREVIEW_SIDE, Studio
    from munit_cli.weights import resolve_model

    dev = torch.device("cpu")
    prec = check_precision(args.precision, dev)
    img = Image.open(ROOT / "examples" / "cat.png").convert("RGB")
    w, h = img.size
    f = args.long_side / max(w, h)
    big = img.resize((round(w * f), round(h * f)), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    side = PREVIEW_SIDE if args.preview_side is None else args.preview_side
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(load_generators(resolve_model(args.model)), dev, prec, Path(tmp),
                        detector=open_detector(args.detector, dev, prec), preview_side=side)
        photo = studio.add_photo(buf.getvalue(), "cat-large.png")
        code = studio.codes({"random": {"n": 1, "seed": 1}})
        studio.render(photo, "a2b", code, heads=True)  # the detector, the content code, the preview canvas
        times: dict[str, list[float]] = {"preview": [], "full": []}
        sizes = {}
        for k in range(args.reps + 1):
            for mode in ("preview", "full"):
                code[0, 3] = -2 + 4 * k / (args.reps + 1)
                t = time.perf_counter()
                x_ab, _ = studio.render(photo, "a2b", code, heads=True, full=mode == "full")
                url = data_url(png_bytes(x_ab[0]))
                ms = (time.perf_counter() - t) * 1000
                if k:  # the first round warms up
                    times[mode].append(ms)
                sizes[mode] = {"image": [x_ab.shape[2], x_ab.shape[1]], "data_url_kb": round(len(url) / 1024)}
    med = {m: statistics.median(v) for m, v in times.items()}
    print(json.dumps({
        "benchmark": "ui_heads_preview", "cpu": cpu_model(), "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(), "precision": prec, "photo": list(big.size),
        "preview_side": side, "reps": args.reps, "sizes": sizes,
        "median_ms": {m: round(v, 1) for m, v in med.items()},
        "p90_ms": {m: round(sorted(v)[int(0.9 * (len(v) - 1))], 1) for m, v in times.items()},
        "full_over_preview": round(med["full"] / med["preview"], 2),
    }, indent=2))


if __name__ == "__main__":
    sys.exit(main())
