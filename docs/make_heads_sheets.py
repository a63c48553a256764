"""Contact sheets of head finding (issue 18), made with the munit CLI itself:

  docs/heads-cat.jpg, docs/heads-dog.jpg: `munit heads` on pets photos 4900-4999 of each domain
      (kept out of the detector's training), each photo with its head window drawn, then its crop;
  docs/heads-translate-cat2dog.jpg, -dog2cat.jpg: `munit translate --heads` on the first 10 held-out
      photos (numbers 11000-11999 with a reference box) of each domain: photo, then translation.

Usage: python docs/make_heads_sheets.py [--data ../shared/data] [--detector FILE] [--model NAME] [--out docs]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

CELL = 112  # px per picture on the sheets
PAD = 4


def munit(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "munit_cli", *args], check=True, capture_output=True, text=True).stdout


def fit(img: Image.Image) -> Image.Image:
    img = img.convert("RGB")
    img.thumbnail((CELL, CELL), Image.BICUBIC)
    return img


def sheet(rows: list[list[Image.Image]], cols: int) -> Image.Image:
    """Rows of cells, `cols` cells per line (a row may wrap), on white."""
    cells = [c for r in rows for c in r]
    lines = (len(cells) + cols - 1) // cols
    out = Image.new("RGB", (cols * (CELL + PAD) + PAD, lines * (CELL + PAD) + PAD), "white")
    for i, c in enumerate(cells):
        x, y = PAD + (i % cols) * (CELL + PAD), PAD + (i // cols) * (CELL + PAD)
        out.paste(c, (x + (CELL - c.size[0]) // 2, y + (CELL - c.size[1]) // 2))
    return out


def heads_sheet(photos: Path, domain: str, detector: list[str], work: Path, out: Path) -> None:
    lines = munit("heads", str(photos / domain / "49??.jpg"), "--out", str(work / domain), "--size", str(CELL),
                  "--json", *detector)
    cells = []
    for e in map(json.loads, lines.splitlines()):
        photo = Image.open(e["source"]).convert("RGB")
        draw = ImageDraw.Draw(photo)
        if e["box"]:
            draw.rectangle(e["box"], outline=(255, 40, 40), width=2)
        else:
            draw.text((4, 4), "no head", fill=(255, 40, 40))
        crop = Image.open(e["output"]) if e["output"] else Image.new("RGB", (CELL, CELL), (230, 230, 230))
        cells += [fit(photo), fit(crop)]
    sheet([cells], 10).save(out / f"heads-{domain}.jpg", quality=88)
    print(out / f"heads-{domain}.jpg", f"{sum(1 for c in lines.splitlines() if json.loads(c)['box'])} of "
          f"{len(lines.splitlines())} with a head")


def translate_sheet(held: Path, boxes: dict, src: str, tgt: str, detector: list[str], model: list[str], work: Path,
                    out: Path, n: int = 10) -> None:
    names = sorted(boxes[src], key=lambda s: int(s.split(".")[0]))
    picks = [held / src / name for name in names if int(name.split(".")[0]) >= 11000][:n + 5]  # spares: no head
    lines = munit("translate", *map(str, picks), "--to", tgt, "--heads", "-n", "1", "--seed", "0", "--outdir",
                  str(work / f"{src}2{tgt}"), "--json", *detector, *model)
    outputs = {json.loads(line)["input"]: json.loads(line)["output"] for line in lines.splitlines()}
    rows = [[fit(Image.open(p)), fit(Image.open(outputs[str(p)]))] for p in picks if str(p) in outputs][:n]
    sheet(rows, 4).save(out / f"heads-translate-{src}2{tgt}.jpg", quality=88)
    print(out / f"heads-translate-{src}2{tgt}.jpg", f"{len(rows)} photos")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--detector", help="detector file (default: the shipped one)")
    ap.add_argument("--model", help="translation model (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    a = ap.parse_args()
    detector = ["--detector", a.detector] if a.detector else []
    model = ["--model", a.model] if a.model else []
    boxes = json.loads((a.data / "heads" / "boxes.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for d in ("cat", "dog"):
            heads_sheet(a.data / "pets", d, detector, work, a.out)
        translate_sheet(a.data / "heads" / "photos", boxes, "cat", "dog", detector, model, work, a.out)
        translate_sheet(a.data / "heads" / "photos", boxes, "dog", "cat", detector, model, work, a.out)


if __name__ == "__main__":
    main()
