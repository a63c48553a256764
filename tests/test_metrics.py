"""FID / KID math against closed forms, pairwise diversity, and the optional Inception / LPIPS
loaders on random-weight files written here (the real loading path, no network)."""

from __future__ import annotations

import io
import itertools
import sys

import pytest
import torch
from typer.testing import CliRunner

from munit_cli.cli import app
from munit_cli.errors import MunitError
from munit_cli.metrics import (INCEPTION_FILES, LPIPS_FILES, FidReference, InceptionFeatures, fid, find_weights, frechet_distance,
                               kid, load_lpips, mean_pairwise_distance, mean_pairwise_lpips, mmd2_unbiased,
                               poly_kernel, read_state_dict)

runner = CliRunner()


def test_frechet_distance_matches_the_diagonal_closed_form():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    v1 = torch.rand(6, generator=g, dtype=torch.float64) + 0.1
    v2 = torch.rand(6, generator=g, dtype=torch.float64) * 3 + 0.1
    want = float((mu1 - mu2).square().sum() + (v1.sqrt() - v2.sqrt()).square().sum())
    assert frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2)) == pytest.approx(want, rel=1e-9, abs=1e-9)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))  # a rotation changes nothing
    rot = frechet_distance(q @ mu1, q @ torch.diag(v1) @ q.T, q @ mu2, q @ torch.diag(v2) @ q.T)
    assert rot == pytest.approx(want, rel=1e-8)
    assert frechet_distance(mu1, torch.diag(v1), mu1, torch.diag(v1)) == pytest.approx(0, abs=1e-9)


def test_fid_of_samples_approaches_the_closed_form_and_grows_with_a_shift(one_thread):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20000, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    y = torch.randn(20000, 4, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    want = 1.0 + (1 - 1) ** 2 + (2 - 1) ** 2 + (0.5 - 1) ** 2 + (1.5 - 1) ** 2
    assert fid(x, y) == pytest.approx(want, rel=0.05)
    assert fid(x, x) == pytest.approx(0, abs=1e-6)
    assert fid(x[:500], x[:500] + 0.5) > fid(x[:500], x[500:1000]) + 0.5


def test_mmd_matches_a_direct_double_loop():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(9, 3, generator=g, dtype=torch.float64) + 0.3

    def k(a, b):
        return (float(a @ b) / 3 + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    assert poly_kernel(x, y).shape == (7, 9)


def test_kid_is_near_zero_for_one_set_and_larger_for_a_shifted_one():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(300, 16, generator=g)
    same, _ = kid(f[:150], f[150:], subsets=20, subset_size=100)
    shifted, std = kid(f[:150], f[150:] + 1.0, subsets=20, subset_size=100)
    assert abs(same) < 0.02 and shifted > 0.1 and std >= 0
    with pytest.raises(MunitError):
        kid(f[:1], f, subsets=2)


def test_mean_pairwise_distance():
    assert mean_pairwise_distance(torch.ones(5, 8)) == 0.0
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    three = torch.tensor([[0.0], [1.0], [3.0]])
    assert mean_pairwise_distance(three) == pytest.approx((1 + 3 + 2) / 3)
    assert mean_pairwise_distance(torch.ones(1, 3)) == 0.0


# --- optional networks --------------------------------------------------------------------

def test_missing_or_bad_weight_files_are_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MunitError, match="does not exist"):
        find_weights(tmp_path / "nope.pth", INCEPTION_FILES, "--inception-weights")
    assert find_weights(None, INCEPTION_FILES, "--inception-weights") is None
    cached = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILES[0]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a pickle")
    assert find_weights(None, INCEPTION_FILES, "--inception-weights") == cached
    with pytest.raises(MunitError, match="cannot read Inception weights") as e:
        read_state_dict(cached, "Inception")
    assert "\n" not in str(e.value)


def test_eval_with_a_missing_inception_file_exits_with_one_line(tmp_path):
    r = runner.invoke(app, ["eval", "-c", str(tmp_path / "clf.safetensors"), "--data", str(tmp_path),
                            "--inception-weights", str(tmp_path / "missing.pth")])
    assert r.exit_code == 1 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_missing_extra_names_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    monkeypatch.setitem(sys.modules, "lpips", None)
    with pytest.raises(MunitError, match=r"munit-cli\[eval\]"):
        InceptionFeatures(tmp_path / "x.pth", torch.device("cpu"))
    with pytest.raises(MunitError, match=r"munit-cli\[eval\]"):
        load_lpips(tmp_path / "x.pth", torch.device("cpu"))


def test_inception_loads_a_local_random_weights_file(tmp_path, monkeypatch, one_thread):
    pytest.importorskip("torch_fidelity")
    from safetensors.torch import save_file
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with monkeypatch.context() as m:  # build the network once without any weights
        m.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        sd = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty).state_dict()
    torch.save(sd, tmp_path / "inception.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "inception.safetensors"))
    back = read_state_dict(tmp_path / "inception.safetensors", "Inception")
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    net = InceptionFeatures(tmp_path / "inception.pth", torch.device("cpu"))
    u8 = torch.randint(0, 256, (2, 40, 48, 3), dtype=torch.uint8)
    f = net(u8)
    assert f.shape == (2, 2048) and f.dtype == torch.float64 and torch.isfinite(f).all()
    assert not torch.equal(f[0], f[1])


def test_inception_refuses_other_weights(tmp_path):
    pytest.importorskip("torch_fidelity")
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 3)}, path)
    with pytest.raises(MunitError, match="do not fit the FID InceptionV3"):
        InceptionFeatures(path, torch.device("cpu"))


def test_lpips_loads_a_local_alexnet_file_and_matches_the_library(tmp_path, one_thread):
    pytest.importorskip("lpips")
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / LPIPS_FILES[0]
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    net = load_lpips(path, torch.device("cpu"))
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    ours = mean_pairwise_lpips(net, x)
    i, j = torch.triu_indices(3, 3, 1)
    with torch.no_grad():
        ref = float(net(x[i], x[j]).mean())  # the library's own forward, pair by pair
    assert ours == pytest.approx(ref, rel=1e-4) and ours > 0
    assert mean_pairwise_lpips(net, x[:1].expand(4, -1, -1, -1)) == pytest.approx(0, abs=1e-7)
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(MunitError, match="not torchvision's AlexNet"):
        load_lpips(bad, torch.device("cpu"))


def test_fid_reference_equals_fid():
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(60, 5, generator=g), torch.randn(40, 5, generator=g) * 1.3 + 0.2
    assert FidReference(real).distance(fake) == pytest.approx(fid(fake, real), rel=1e-9)
