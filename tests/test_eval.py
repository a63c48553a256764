"""`munit eval` and the training probe (issue 12) on a synthetic two-domain set: a perfect
translator scores near the ceiling, the identity near the floor, a constant output has no
diversity; the CLI end to end; the probe writes metrics and keeps best.safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_shape_domains
from munit_cli.checkpoint import load_generators, load_tensors, read_header, save_tensors
from munit_cli.classifier import Recipe, load_class, load_classifier, save_classifier, select_files, train_classifier
from munit_cli.cli import app
from munit_cli.errors import MunitError
from munit_cli import evaluation
from munit_cli.evaluation import (Measures, ProbeSpec, TrainingProbe, class_indices, evaluate, load_eval_images,
                                  overlap_warnings)

runner = CliRunner()
RECIPE = Recipe(image_size=32, store_size=36, widths=(16, 32, 64), convs=(1, 1, 1), epochs=5, batch_size=16,
                holdout=0.25)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    """(data root with train/ and test/ folders for dog and cat, a classifier trained on train/)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("shapes")
    make_shape_domains(root / "train", 40, seed=0)
    make_shape_domains(root / "test", 12, seed=1)
    folders = [root / "train" / n for n in ("dog", "cat")]
    classes = [load_class(f.name, select_files(f), RECIPE, workers=1) for f in folders]
    net, figures = train_classifier(classes, RECIPE, torch.device("cpu"))
    assert min(figures["holdout_accuracy"].values()) >= 0.9, figures
    save_classifier(root / "clf.safetensors", net, RECIPE, classes, figures, folders)
    torch.set_num_threads(2)
    return root, root / "clf.safetensors"


class FakeTranslator:
    """Translator's interface with a chosen behaviour: 'perfect' returns real target images,
    'identity' the input, 'constant' one grey image."""

    behaviour = "perfect"
    targets: dict[str, torch.Tensor] = {}

    def __init__(self, bundle, src, tgt, device, precision="fp32", batch_size=None, style_encoder=False):
        self.tgt, self.style_dim, self.n = tgt, bundle.info.model.gen.style_dim, 0

    def style(self, x):
        return torch.randn(x.shape[0] if x.dim() == 4 else 1, self.style_dim, 1, 1)

    def translate(self, x_a, s_b):
        k = s_b.shape[0]
        if self.behaviour == "perfect":
            pool = self.targets[self.tgt]
            self.n += k
            out = pool[torch.arange(self.n - k, self.n) % pool.shape[0]]
        elif self.behaviour == "identity":
            out = x_a.expand(k, -1, -1, -1)
        else:
            out = torch.zeros(k, *x_a.shape)
        return out.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(1, -1).contiguous()


def _run(shapes, tiny_gen_ckpt, monkeypatch, behaviour, **kw):
    root, clf_path = shapes
    bundle = load_generators(tiny_gen_ckpt)  # domains dog (a) / cat (b)
    images = {d: load_eval_images(n, select_files(root / "test" / n), 32) for d, n in zip("ab", ("dog", "cat"))}
    FakeTranslator.behaviour, FakeTranslator.targets = behaviour, {d: im.images for d, im in images.items()}
    monkeypatch.setattr(evaluation, "Translator", FakeTranslator)
    m = Measures(load_classifier(clf_path))
    return evaluate(bundle, m, images, device=torch.device("cpu"), num_styles=4, seeds=[0, 1], kid_subsets=5, **kw).report


def test_perfect_identity_and_constant_translators(shapes, tiny_gen_ckpt, monkeypatch, one_thread):
    perfect = _run(shapes, tiny_gen_ckpt, monkeypatch, "perfect")
    identity = _run(shapes, tiny_gen_ckpt, monkeypatch, "identity")
    constant = _run(shapes, tiny_gen_ckpt, monkeypatch, "constant")
    assert set(perfect["directions"]) == {"dog2cat", "cat2dog"}
    for name, d in perfect["directions"].items():
        lat, ref = d["modes"]["latent"], d["modes"]["reference"]
        assert d["ceiling"] >= 0.9 and d["floor"] <= 0.1
        assert abs(lat["success"]["mean"] - d["ceiling"]) <= 0.1 and abs(ref["success"]["mean"] - d["ceiling"]) <= 0.1
        assert len(lat["success"]["per_seed"]) == 2 and lat["outputs_per_seed"] == 12 * 4
        # real target photos as outputs: diversity like the real photos, distribution close to them
        div = lat["classifier_feature_distance"]["mean"]
        assert div > 0.5 * d["real_classifier_feature_distance"]
        idd = identity["directions"][name]
        assert abs(idd["modes"]["latent"]["success"]["mean"] - idd["floor"]) <= 0.1
        assert idd["modes"]["latent"]["classifier_feature_distance"]["mean"] == pytest.approx(0, abs=1e-9)
        assert lat["classifier_fid"]["mean"] < idd["modes"]["latent"]["classifier_fid"]["mean"]
        assert lat["classifier_kid"]["mean"] < idd["modes"]["latent"]["classifier_kid"]["mean"]
        con = constant["directions"][name]["modes"]["latent"]
        assert con["classifier_feature_distance"]["mean"] == pytest.approx(0, abs=1e-9)
    assert perfect["measures"]["diversity"] == "classifier_feature_distance"
    assert "lpips" not in json.dumps(perfect) and '"fid"' not in json.dumps(perfect)


def test_classifier_must_know_the_model_domains(shapes, tmp_path):
    clf = load_classifier(shapes[1])
    assert class_indices(clf, ("cat", "dog")) == {"a": 1, "b": 0}
    with pytest.raises(MunitError, match="model's domains are 'horse' and 'zebra'"):
        class_indices(clf, ("horse", "zebra"))


def test_overlap_warnings(shapes, one_thread):
    root, clf_path = shapes
    clf = load_classifier(clf_path)
    test = [load_eval_images(n, select_files(root / "test" / n), 32) for n in ("dog", "cat")]
    assert overlap_warnings(clf, {}, test) == []
    train = [load_eval_images("dog", select_files(root / "train" / "dog"), 32)]
    notes = overlap_warnings(clf, {"data": json.dumps({"a": str(root / "train" / "dog")})}, train)
    assert len(notes) == 2 and "classifier's training set" in notes[0] and "model was trained on" in notes[1]


def test_eval_cli_json_end_to_end(shapes, tiny_gen_ckpt, tmp_path, one_thread):
    root, clf_path = shapes
    grid = tmp_path / "sheet.png"
    r = runner.invoke(app, ["eval", "-m", str(tiny_gen_ckpt), "-c", str(clf_path), "--data", str(root), "-n", "3",
                            "--seeds", "2", "--limit", "4", "--grid", str(grid), "--grid-rows", "2", "--device", "cpu",
                            "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["images"] == {"dog": 4, "cat": 4} and rep["seeds"] == [0, 1] and rep["warnings"] == []
    for d in rep["directions"].values():
        for mode in ("latent", "reference"):
            f = d["modes"][mode]
            assert 0 <= f["success"]["mean"] <= 1 and len(f["classifier_fid"]["per_seed"]) == 2
            assert f["classifier_feature_distance"]["mean"] >= 0
    assert rep["time_s"] > 0 and grid.exists()
    # the table, and a warning when the images are the classifier's own training images
    r = runner.invoke(app, ["eval", "-m", str(tiny_gen_ckpt), "-c", str(clf_path), "--src-images",
                            str(root / "train" / "dog"), "--tgt-images", str(root / "train" / "cat"), "-n", "2",
                            "--seeds", "1", "--limit", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "classifier-FID" in r.stdout and "success" in r.stdout and "LPIPS" not in r.stdout
    assert "classifier's training set" in r.stderr
    r = runner.invoke(app, ["eval", "-m", str(tiny_gen_ckpt), "-c", str(clf_path), "--data", str(tmp_path)])
    assert r.exit_code == 1 and "no test images for domain 'dog'" in r.stderr


def test_probe_never_keeps_a_collapsed_generator(shapes, tiny_gen_ckpt, monkeypatch, one_thread):
    root, clf_path = shapes
    bundle = load_generators(tiny_gen_ckpt)  # domains dog (a) / cat (b)
    probe = TrainingProbe(ProbeSpec(2, root / "test", clf_path), ("dog", "cat"), 32, torch.device("cpu"))
    assert all(v > 0 for v in probe.real_diversity.values())
    FakeTranslator.targets = dict(probe.inputs)
    monkeypatch.setattr(evaluation, "Translator", FakeTranslator)
    run = lambda: probe.run(bundle.gens["a"], bundle.gens["b"], bundle.info.model, "fp32")  # noqa: E731
    FakeTranslator.behaviour = "constant"  # every style the same grey picture
    out = run()
    assert out["probe_diversity_a2b"] == pytest.approx(0, abs=1e-9) and out["probe_success"] > 0
    assert not out["probe_eligible"] and not probe.improved and out["probe_best"] is None
    FakeTranslator.behaviour = "perfect"  # real target photos: as diverse as the real ones
    out = run()
    assert out["probe_eligible"] and probe.improved and out["probe_best"] == out["probe_success"] >= 0.9
    assert out["probe_real_diversity_b"] == probe.real_diversity["b"]
    probe.best = 0.0  # even a collapsed probe that beats the best so far is not kept
    FakeTranslator.behaviour = "constant"
    out = run()
    assert out["probe_success"] > 0 and not probe.improved and out["probe_best"] == 0.0


def _train(root: Path, out: Path, clf: Path, iters: int, *extra: str):
    return runner.invoke(app, ["train", "--data", str(root / "train"), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                               "--iters", str(iters), "--log-every", "3", "--save-every", "2", "--sample-every", "100",
                               "--workers", "0", "--device", "cpu", "--out", str(out), "--eval-every", "2",
                               "--eval-data", str(root / "test"), "--classifier", str(clf), "--quiet", *extra])


def test_training_probe_writes_metrics_and_keeps_best(shapes, tmp_path, monkeypatch, one_thread):
    root, clf_path = shapes
    # a 4-step tiny model is collapsed by the probe's rule (test_probe_never_keeps_a_collapsed_generator):
    # let every probe count here, to test the bookkeeping of best.safetensors
    monkeypatch.setattr(evaluation, "MIN_DIVERSITY_RATIO", 0.0)
    run = tmp_path / "run"
    r = _train(root, run, clf_path, 4)
    assert r.exit_code == 0, r.output
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    probes = [row for row in rows if "probe_success" in row]
    assert [row["step"] for row in probes] == [2, 4]
    for row in probes:
        assert 0 <= row["probe_success"] <= 1 and row["probe_diversity_a2b"] >= 0 and "loss_gan_a" in row
    best = run / "checkpoints" / "best.safetensors"
    eligible = [p for p in probes if p["probe_eligible"]]
    assert eligible == probes
    meta, _ = read_header(best)
    assert meta["kind"] == "training" and json.loads(meta["probe"])["probe_success"] == max(p["probe_success"] for p in eligible)
    # resume keeps the best so far: an unbeatable best stays, and best.safetensors is not rewritten
    save_tensors(best, load_tensors(best), {**meta, "probe": json.dumps({"probe_success": 2.0}), "step": "999"})
    r = _train(root, run, clf_path, 6, "--resume")
    assert r.exit_code == 0, r.output
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["probe_best"] for row in rows if row["step"] == 6] == [2.0]
    assert read_header(best)[0]["step"] == "999"


def test_probe_flags_come_together(shapes, tmp_path):
    root, clf_path = shapes
    r = runner.invoke(app, ["train", "--data", str(root / "train"), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                            "--out", str(tmp_path / "r"), "--eval-every", "2"])
    assert r.exit_code == 2 and "--eval-data and --classifier" in r.stderr
