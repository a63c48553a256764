"""Distribution and diversity measures for `munit eval`: FID and KID on feature sets (our own
float64 math), mean pairwise distances, and the optional Inception / LPIPS networks.

The networks come from the `[eval]` extra and are built without weights, then loaded from a
local file (never downloaded): torch-fidelity's InceptionV3 is the standard FID network (the
TF graph ported bit-for-bit, pure torch, no SciPy), and `lpips` is the metric's reference
package by its authors (its calibrated linear layers ship in the wheel; the AlexNet trunk is
loaded from torchvision's ImageNet file). torchmetrics wraps the same two, with more weight;
pytorch-fid and clean-fid only offer download-on-first-use loading.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

from munit_cli.errors import MunitError

INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth",)  # torch-fidelity's name in the torch hub cache
LPIPS_FILES = ("alexnet-owt-7be5be79.pth",)  # torchvision's AlexNet ImageNet weights (the LPIPS trunk)
EXTRA_HINT = 'pip install "munit-cli[eval]"'


# --- FID / KID ------------------------------------------------------------------------------

def gaussian_stats(f: Tensor) -> tuple[Tensor, Tensor]:
    """(N, D) features -> mean (D,) and unbiased covariance (D, D), float64."""
    f = f.double()
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / max(1, f.shape[0] - 1)


@contextlib.contextmanager
def _one_thread():
    """LAPACK's eigen-solvers with 2+ threads on a busy CPU spin for seconds on a 256 x 256
    matrix (measured: 2.2 s against 9 ms on one thread); these matrices are small."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def psd_sqrt(m: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    with _one_thread():
        vals, vecs = torch.linalg.eigh((m.double() + m.double().T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor, root1: Tensor | None = None) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2). The inner matrix is symmetric
    PSD, so both roots come from symmetric eigen-decompositions (stable, real, float64).
    `root1` = psd_sqrt(sigma1) when the caller has it (one reference, many sets)."""
    mu1, mu2, sigma1, sigma2 = mu1.double(), mu2.double(), sigma1.double(), sigma2.double()
    root1 = psd_sqrt(sigma1) if root1 is None else root1
    inner = root1 @ sigma2 @ root1
    with _one_thread():
        vals = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0)
    fid = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * vals.sqrt().sum()
    return max(0.0, float(fid))


class FidReference:
    """The Gaussian of a reference set (the real images), with its covariance root computed
    once, for the FID of many sets against it."""

    def __init__(self, f: Tensor):
        self.mu, self.sigma = gaussian_stats(f)
        self.root = psd_sqrt(self.sigma)

    def distance(self, f: Tensor) -> float:
        return frechet_distance(self.mu, self.sigma, *gaussian_stats(f), root1=self.root)


def fid(f1: Tensor, f2: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


def poly_kernel(x: Tensor, y: Tensor) -> Tensor:
    """KID's cubic polynomial kernel k(x, y) = (x.y / D + 1)^3."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD^2 between samples x (m, D) and y (n, D) with the polynomial kernel."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1)) - 2 * kxy.mean())


def kid(f1: Tensor, f2: Tensor, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and standard deviation of the unbiased MMD^2 over
    random subsets of min(subset_size, N1, N2) samples of each set (float64)."""
    f1, f2 = f1.double(), f2.double()
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise MunitError("KID needs at least 2 images in each set")
    g = torch.Generator().manual_seed(seed)
    vals = torch.tensor([mmd2_unbiased(f1[torch.randperm(f1.shape[0], generator=g)[:m]],
                                       f2[torch.randperm(f2.shape[0], generator=g)[:m]]) for _ in range(subsets)])
    return float(vals.mean()), float(vals.std()) if subsets > 1 else 0.0


# --- diversity ------------------------------------------------------------------------------

def mean_pairwise_distance(f: Tensor) -> float:
    """Mean L2 distance over all pairs of rows of f (K, D); 0 for K < 2."""
    k = f.shape[0]
    if k < 2:
        return 0.0
    d = torch.cdist(f.double().unsqueeze(0), f.double().unsqueeze(0))[0]
    return float(d.sum() / (k * (k - 1)))


@torch.inference_mode()
def mean_pairwise_lpips(net, x: Tensor) -> float:
    """Mean LPIPS over all pairs of images x (K, 3, H, W) in [-1, 1]. Equal to averaging
    net(x[i], x[j]) over the pairs, with each image through the trunk once instead of K - 1 times."""
    k = x.shape[0]
    if k < 2:
        return 0.0
    i, j = torch.triu_indices(k, k, 1)
    dev = next(net.parameters()).device
    feats = net.net(net.scaling_layer(x.float().to(dev)))
    total = 0.0
    for f, lin in zip(feats, net.lins):
        f = f / (f.square().sum(1, keepdim=True).sqrt() + 1e-10)  # lpips.normalize_tensor
        total = total + lin((f[i] - f[j]).square()).mean((1, 2, 3))  # (pairs,)
    return float(total.mean())


# --- optional networks (the [eval] extra) -----------------------------------------------------

def hub_checkpoints() -> Path:
    """torch's usual download cache ($TORCH_HOME/hub/checkpoints, default ~/.cache/torch/...)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def find_weights(explicit: Path | None, names: tuple[str, ...], option: str) -> Path | None:
    """An explicit file (which must exist), else the first of `names` in the torch hub cache."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise MunitError(f"{option} file {str(explicit)!r} does not exist: pass a local weights file "
                             "(nothing is downloaded)")
        return Path(explicit)
    for name in names:
        if (hub_checkpoints() / name).is_file():
            return hub_checkpoints() / name
    return None


def read_state_dict(path: Path, what: str) -> dict[str, Tensor]:
    """Tensors from a .safetensors file or a torch file read with weights_only=True (no code
    is unpickled); one clear line when the file is not a weights file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and safetensors errors have many types
        raise MunitError(f"cannot read {what} weights {str(path)!r} ({type(e).__name__}): pass the original "
                         ".pth or .safetensors file")
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise MunitError(f"{what} weights {str(path)!r} hold no state dict of tensors: pass the original file")
    return sd


def _require(module: str, option: str):
    try:
        return __import__(module)
    except ImportError:
        raise MunitError(f"{option} needs the {module.replace('_', '-')} package: {EXTRA_HINT}")


class InceptionFeatures:
    """The standard FID InceptionV3 (torch-fidelity's port), 2048-d pool features."""

    name = "inception"

    def __init__(self, path: Path, device: torch.device):
        _require("torch_fidelity", "--inception-weights")
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        buf = io.BytesIO()  # re-serialise the safely loaded tensors: the library unpickles what it is given
        torch.save(read_state_dict(path, "Inception"), buf)
        buf.seek(0)
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=buf)
        except RuntimeError as e:
            raise MunitError(f"Inception weights {str(path)!r} do not fit the FID InceptionV3 "
                             f"({str(e).splitlines()[0]}): pass {INCEPTION_FILES[0]}")
        self.net = self.net.to(device).eval()
        self.device, self.path = device, path

    @torch.inference_mode()
    def __call__(self, u8: Tensor) -> Tensor:
        """uint8 (B, H, W, 3) -> (B, 2048) float64 on CPU."""
        (f,) = self.net(u8.movedim(-1, 1).contiguous().to(self.device))
        return f.double().cpu()


def load_lpips(path: Path, device: torch.device):
    """LPIPS (AlexNet trunk, the authors' calibrated linear layers from the `lpips` wheel) with
    the trunk loaded from torchvision's AlexNet ImageNet weights at `path`."""
    _require("lpips", "--lpips-weights")
    import lpips

    sd = read_state_dict(path, "AlexNet")
    with warnings.catch_warnings():  # lpips builds its random trunk with torchvision's old keyword
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    trunk = net.net.state_dict()  # keys "sliceK.I.weight" hold torchvision's "features.I.weight"
    want = {k: "features." + k.split(".", 1)[1] for k in trunk}
    missing = [v for v in want.values() if v not in sd]
    wrong = [v for k, v in want.items() if v in sd and sd[v].shape != trunk[k].shape]
    if missing or wrong:
        bad = (missing or wrong)[:3]
        raise MunitError(f"LPIPS trunk weights {str(path)!r} are not torchvision's AlexNet "
                         f"({'missing' if missing else 'wrong shape'} {', '.join(bad)}): pass {LPIPS_FILES[0]}")
    net.net.load_state_dict({k: sd[v] for k, v in want.items()})
    return net.to(device).eval().requires_grad_(False)
