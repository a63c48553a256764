"""Head finding (issue 18), the core: box maths against hand-computed values, crop windows,
the feathered paste-back, the detector file (round trip, wrong kinds) and training on a
synthetic set whose heads are discs at known places."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import make_image
from munit_cli.checkpoint import read_header, save_tensors
from munit_cli.errors import MunitError
from munit_cli.heads.boxes import Letterbox, clip, fit_inside, iou, iou_tensor, scale, square, to_int
from munit_cli.heads.compose import crop_window, cut, feather_mask, paste
from munit_cli.heads.data import Photo, check_disjoint, make_batch, negative_rect, positive_rect, select_training, warp
from munit_cli.heads.detector import Recipe, letterbox, load_detector, save_detector
from munit_cli.heads.network import HeadNet, decode
from munit_cli.heads.training import choose_threshold, targets

TINY = Recipe(input_size=64, widths=(8, 8, 16, 16, 16), neck=8, store_size=72)


# --- box maths ------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, want", [
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
    ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
    ((0, 0, 10, 10), (0, 0, 20, 20), 100 / 400),
    ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges share no pixel
    ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
    ((0, 0, 4, 4), (2, 2, 6, 6), 4 / 28),
    ((-5, -5, 5, 5), (0, 0, 10, 10), 25 / 175),  # boxes reaching past the photo count whole
    ((0, 0, 0, 10), (0, 0, 10, 10), 0.0),  # empty
])
def test_iou_by_hand(a, b, want):
    assert iou(a, b) == pytest.approx(want)
    assert iou(b, a) == pytest.approx(want)
    assert float(iou_tensor(torch.tensor([a], dtype=torch.float), torch.tensor([b], dtype=torch.float))[0]) == \
        pytest.approx(want, abs=1e-6)


def test_square_scale_clip_by_hand():
    assert square((0, 0, 10, 4)) == (0, -3, 10, 7)  # wide: grown vertically about the centre
    assert square((2, 0, 4, 8)) == (-1, 0, 7, 8)  # tall: grown sideways
    assert square((1, 1, 5, 5)) == (1, 1, 5, 5)
    assert scale((10, 10, 20, 20), 1.5) == (7.5, 7.5, 22.5, 22.5)
    assert scale((10, 10, 20, 20), 0.5) == (12.5, 12.5, 17.5, 17.5)
    assert clip((-5, -5, 10, 200), 100, 50) == (0, 0, 10, 50)
    assert clip((20, 10, 40, 30), 100, 50) == (20, 10, 40, 30)
    left, top, right, bottom = clip((120, 60, 150, 90), 100, 50)  # wholly outside: empty
    assert right <= left and bottom <= top


def test_fit_inside_moves_then_shrinks_by_hand():
    assert fit_inside((-10, 5, 30, 45), 100, 80) == (0, 5, 40, 45)  # moved right by 10
    assert fit_inside((80, 60, 120, 100), 100, 80) == (60, 40, 100, 80)  # moved up-left
    assert fit_inside((-50, -50, 150, 150), 100, 80) == (10, 0, 90, 80)  # shrunk to 80 about (50, 50), then moved
    assert fit_inside((20, 20, 40, 40), 100, 80) == (20, 20, 40, 40)  # inside already: unchanged


def test_to_int_keeps_squares_square():
    assert to_int((1.4, 2.6, 11.4, 12.6)) == (1, 3, 11, 13)
    l, t, r, b = to_int((0.5, 0.5, 33.7, 33.7))
    assert r - l == b - t == 33


def test_letterbox_maps_boxes_both_ways():
    lb = Letterbox.fit(200, 100, 128)
    assert (lb.new_w, lb.new_h, lb.left, lb.top) == (128, 64, 0, 32)
    assert lb.to_canvas((0, 0, 200, 100)) == pytest.approx((0, 32, 128, 96))
    assert lb.to_photo(lb.to_canvas((30, 10, 90, 70))) == pytest.approx((30, 10, 90, 70))
    x, lb2 = letterbox(Image.new("RGB", (200, 100), (255, 0, 0)), 64)
    assert x.shape == (3, 64, 64) and lb2.top == 16
    assert x[:, 0, 0].tolist() == pytest.approx([0.0039, 0.0039, 0.0039], abs=1e-3)  # mid-grey padding
    assert x[:, 32, 32].tolist() == pytest.approx([1, -1, -1])


# --- crops and paste-back -----------------------------------------------------------------------

def test_crop_window_margin_and_fit_by_hand():
    assert crop_window((40, 30, 80, 70), 100, 100) == (40, 30, 80, 70)
    assert crop_window((40, 30, 80, 70), 100, 100, margin=1.5) == (30, 20, 90, 80)
    assert crop_window((-10, -10, 30, 30), 100, 100) == (0, 0, 40, 40)
    assert crop_window((-10, -10, 30, 30), 100, 100, fit="pad") == (-10, -10, 30, 30)
    assert crop_window((0, 0, 300, 300), 120, 90) == (30, 0, 120, 90)  # shrunk to the shorter side, moved in
    with pytest.raises(MunitError, match="--fit"):
        crop_window((0, 0, 10, 10), 100, 100, fit="stretch")
    with pytest.raises(MunitError, match="--margin"):
        crop_window((0, 0, 10, 10), 100, 100, margin=0)


def test_cut_pads_black_past_the_edge_and_resizes():
    img = Image.new("RGB", (100, 100), (200, 100, 50))
    crop = cut(img, (-10, -10, 30, 30), 20)
    assert crop.size == (20, 20)
    assert crop.getpixel((0, 0)) == (0, 0, 0) and crop.getpixel((15, 15)) == (200, 100, 50)
    assert cut(img, (10, 10, 50, 50), None).size == (40, 40)


def _photo(w=120, h=100, value=40) -> Image.Image:
    return Image.new("RGB", (w, h), (value, value, value))


def test_paste_back_touches_only_the_window_and_changes_it():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (100, 120, 3), dtype=np.uint8), "RGB")
    window = (30, 20, 90, 80)
    out = paste(photo, Image.new("RGB", (32, 32), (250, 5, 120)), window)
    a, b = np.asarray(photo), np.asarray(out)
    assert out.size == photo.size
    outside = np.ones((100, 120), bool)
    outside[20:80, 30:90] = False
    assert np.array_equal(a[outside], b[outside])  # bit for bit
    assert (b[35:65, 45:75] == (250, 5, 120)).all()  # the middle is the translation
    assert (np.abs(a[20:80, 30:90].astype(int) - b[20:80, 30:90]).sum(-1) > 0).mean() > 0.9


def test_paste_back_seam_is_smooth_and_hard_paste_is_not():
    photo = _photo(value=40)
    window = (30, 20, 90, 80)
    crop = Image.new("RGB", (64, 64), (220, 220, 220))
    row = np.asarray(paste(photo, crop, window))[50, :, 0].astype(int)  # through the middle, across both edges
    steps = np.abs(np.diff(row))
    assert steps.max() <= 0.3 * 180  # the ramp spreads the 180 levels over several pixels
    assert abs(row[30] - 40) < 0.1 * 180 and abs(row[89] - 40) < 0.1 * 180  # starts near the photo at the edge
    assert row[60] == 220
    hard = np.asarray(paste(photo, crop, window, feather=0))[50, :, 0].astype(int)
    assert np.abs(np.diff(hard)).max() == 180  # without feathering: a hard step


def test_paste_back_keeps_edges_on_the_photo_border_hard():
    photo = _photo(value=40)
    out = np.asarray(paste(photo, Image.new("RGB", (40, 40), (220, 220, 220)), (0, 0, 60, 60)))
    assert out[0, 0, 0] == 220 and out[30, 0, 0] == 220  # on the border: no seam there, so no fade
    assert abs(int(out[30, 59, 0]) - 40) < 0.1 * 180  # the inner edge fades


def test_feather_mask_shape_and_ends():
    m = feather_mask(20, 30, 5.0)
    assert m.shape == (20, 30)
    assert float(m[10, 15]) == 1.0 and float(m[0, 0]) < 0.01 and float(m[10, 0]) < 0.1
    assert torch.equal(m, m.flip(0)) and torch.equal(m, m.flip(1))


# --- training data ------------------------------------------------------------------------------

def test_positive_and_negative_rects():
    gen = torch.Generator().manual_seed(0)
    valid, box = (0.0, 0.0, 144.0, 144.0), (40.0, 10.0, 100.0, 70.0)
    for _ in range(50):
        r = positive_rect(valid, box, 0.5, 2.0, gen)
        assert valid[0] <= r[0] < r[2] <= valid[2] and valid[1] <= r[1] < r[3] <= valid[3]
        assert r[0] <= 70 <= r[2] and r[1] <= 40 <= r[3]  # the head's centre stays in
        n = negative_rect(valid, box, 2.0, gen)
        assert n is not None and iou(n, box) == 0.0  # beside the head window, never on it
        assert 0.5 - 1e-6 <= (n[2] - n[0]) / (n[3] - n[1]) <= 2 + 1e-6
    assert negative_rect(valid, (-10.0, -10.0, 150.0, 150.0), 2.0, gen) is None  # the head fills the photo


def test_warp_letterboxes_a_rect_like_inference():
    img = torch.zeros(1, 3, 40, 40, dtype=torch.uint8)
    img[:, 0, 10:20, 0:40] = 255  # a red band in rows 10-19
    x, k, off = warp(img, torch.tensor([[0.0, 10.0, 40.0, 30.0]]), 32)  # a 40 x 20 rect
    assert float(k[0]) == pytest.approx(0.8) and off[0].tolist() == pytest.approx([0, 8])
    assert float(x[0, 0, 0, 16]) == 0  # letterbox padding: mid grey
    assert float(x[0, 0, 12, 16]) == pytest.approx(1, abs=1e-5)  # the band, at its new place
    assert float(x[0, 0, 20, 16]) == pytest.approx(-1, abs=1e-5)


def test_targets_peak_at_the_centre_and_none_for_negatives():
    boxes = torch.tensor([[16.0, 16.0, 48.0, 48.0], [0.0, 0.0, 10.0, 10.0]])
    heat, reg, weight = targets(boxes, torch.tensor([True, False]), 64)
    assert heat.shape == (2, 8, 8) and float(heat[0, 4, 4]) == 1.0 and float(heat[0].sum()) > 1
    assert float(heat[1].abs().sum()) == 0 and float(weight[1].sum()) == 0
    assert float(weight[0].sum()) == 9  # the 3 x 3 cells around the centre
    assert reg[0, :, 4, 4].tolist() == pytest.approx([-0.5, -0.5, float(np.log(0.5))])  # centre (32, 32) = cell 4's corner


def test_decode_reads_the_peak_cell():
    out = torch.zeros(1, 4, 8, 8)
    out[0, 0] = -5
    out[0, :, 2, 5] = torch.tensor([3.0, 0.25, -0.25, float(np.log(0.25))])
    boxes, conf = decode(out, 64)
    cx, cy = (5 + 0.5 + 0.25) * 8, (2 + 0.5 - 0.25) * 8
    assert boxes[0].tolist() == pytest.approx([cx - 8, cy - 8, cx + 8, cy + 8])
    assert float(conf[0]) == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_choose_threshold_separates_and_keeps_most_heads():
    pos, neg = torch.linspace(0.5, 1.0, 100), torch.linspace(0.0, 0.4, 100)
    t = choose_threshold(pos, neg)
    assert 0.4 < t <= float(torch.quantile(pos, 0.05)) + 1e-6
    assert float((pos >= t).float().mean()) >= 0.95


# --- the detector file --------------------------------------------------------------------------

def random_detector(path, threshold=0.5, recipe=TINY):
    torch.manual_seed(0)
    net = HeadNet(recipe.widths, recipe.neck)
    save_detector(path, net, recipe, threshold, heldout=json.dumps({"domains": {}}))
    return path


def test_detector_file_round_trip(tmp_path):
    path = random_detector(tmp_path / "det.safetensors", threshold=0.3)
    meta, header = read_header(path)
    assert meta["kind"] == "detector" and json.loads(meta["recipe"])["input_size"] == 64
    assert all(k.startswith("det.") for k in header) and "non-commercial" in meta["terms"]
    det = load_detector(path)
    assert det.threshold == pytest.approx(0.3) and det.recipe == TINY
    photo = Image.new("RGB", (90, 60), (10, 120, 200))
    a, b = det.detect(photo), load_detector(path).detect(photo)
    assert a == b and a.found == (a.confidence >= 0.3)
    side_w, side_h = a.box[2] - a.box[0], a.box[3] - a.box[1]
    assert side_w == pytest.approx(side_h)  # a square in the photo's pixels


def test_wrong_kind_detector_files_give_one_clear_line(tmp_path, tiny_gen_ckpt):
    with pytest.raises(MunitError, match=r"is a generator file, not a head detector") as e:
        load_detector(tiny_gen_ckpt)
    assert "\n" not in str(e.value)
    clf = tmp_path / "clf.safetensors"
    save_tensors(clf, {"clf.w": torch.zeros(2)}, {"format_version": "1", "kind": "classifier"})
    with pytest.raises(MunitError, match="is a classifier file, not a head detector"):
        load_detector(clf)
    foreign = tmp_path / "foreign.safetensors"
    save_tensors(foreign, {"w": torch.zeros(2)}, {})
    with pytest.raises(MunitError, match="not a munit file, not a head detector"):
        load_detector(foreign)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(MunitError, match="not a safetensors file"):
        load_detector(junk)


# --- training learns where the head is ---------------------------------------------------------

def disc_photos(folder, n, seed, size=(64, 48)):
    """Photos with a bright "head" (a disc with two dark eyes) at a random place: their boxes."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    boxes = {}
    for i in range(n):
        img = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)).point(lambda v: 40 + v // 4)
        draw = ImageDraw.Draw(img)
        r = rng.randrange(6, 12)
        x, y = rng.randrange(r, size[0] - r), rng.randrange(r, size[1] - r)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(240, 200, 60))
        draw.ellipse([x - r // 2 - 1, y - 2, x - r // 2 + 1, y], fill=(0, 0, 0))
        draw.ellipse([x + r // 2 - 1, y - 2, x + r // 2 + 1, y], fill=(0, 0, 0))
        img.save(folder / f"{i}.png")
        boxes[f"{i}.png"] = [x - 1.3 * r, y - 1.3 * r, x + 1.3 * r, y + 1.3 * r]
    return boxes


def test_select_training_excludes_limits_and_counts(tmp_path):
    for d, n in (("cat", 5), ("dog", 3)):
        for i in range(n):
            make_image(tmp_path / d / f"{i:05d}.jpg", size=(40, 30), seed=i)
    boxes = {"cat": {f"{i:05d}.jpg": (1, 1, 20, 20) for i in (0, 1, 2, 4)}, "dog": {"00000.jpg": (2, 2, 9, 9)}}
    sel = select_training(tmp_path, boxes, exclude=["00004.jpg"], limit=2)
    assert [(p.domain, p.path.name) for p in sel.positives] == [("cat", "00000.jpg"), ("cat", "00001.jpg"), ("dog", "00000.jpg")]
    assert sel.counts == {"cat": (2, 4), "dog": (1, 3)}  # kept with a box, photos found once excluded
    held = [Photo("cat", tmp_path / "elsewhere" / "00001.jpg", None)]
    with pytest.raises(MunitError, match="both a training photo and a held-out photo"):
        check_disjoint(sel.positives, held)
    check_disjoint(sel.positives, [Photo("dog", tmp_path / "x" / "00001.jpg", None)])


def test_make_batch_boxes_follow_the_augmentation(tmp_path):
    from munit_cli.heads.data import Photo, load_photos
    boxes = disc_photos(tmp_path / "cat", 8, seed=1)
    photos = [Photo("cat", tmp_path / "cat" / n, tuple(b)) for n, b in boxes.items()]
    ps = load_photos(photos, TINY.store_size)
    gen = torch.Generator().manual_seed(0)
    recipe = Recipe(**{**TINY.__dict__, "negatives": 0.0, "jitter": 0.0, "gray": 0.0})
    x, bx, pos = make_batch(ps, torch.arange(8), recipe, gen)
    assert x.shape == (8, 3, 64, 64) and bool(pos.all())
    for i in range(8):  # the disc's colour (yellow: R high, B low) is at the centre of each box
        cx, cy = int((bx[i, 0] + bx[i, 2]) / 2), int((bx[i, 1] + bx[i, 3]) / 2)
        r, g, b = x[i, :, cy, cx].tolist()
        assert r > 0.6 and b < 0 and r - b > 1.0, (i, r, g, b)
