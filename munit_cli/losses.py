"""MUNIT objectives (SPEC sections 3 and 6): LSGAN, hinge and non-saturating GAN terms, L1
reconstructions, perceptual loss."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from munit_cli.errors import MunitError


def recon(x: Tensor, target: Tensor) -> Tensor:
    """L1, mean over all elements."""
    return (x - target).abs().mean()


def dis_loss(outs_fake: list[Tensor], outs_real: list[Tensor], gan_type: str = "lsgan") -> Tensor:
    """Discriminator loss summed over D outputs (scales), D(.) being raw scores:
    lsgan: mean(D(fake)^2) + mean((D(real) - 1)^2);  hinge: mean(relu(1 - D(real))) +
    mean(relu(1 + D(fake)));  nonsaturating: mean(softplus(-D(real))) + mean(softplus(D(fake)))."""
    if gan_type == "lsgan":
        return sum(f.float().pow(2).mean() + (r.float() - 1).pow(2).mean() for f, r in zip(outs_fake, outs_real))
    if gan_type == "hinge":
        return sum(F.relu(1 - r.float()).mean() + F.relu(1 + f.float()).mean() for f, r in zip(outs_fake, outs_real))
    if gan_type == "nonsaturating":
        return sum(F.softplus(-r.float()).mean() + F.softplus(f.float()).mean() for f, r in zip(outs_fake, outs_real))
    raise ValueError(f"unknown gan_type {gan_type!r}")


def gen_adv_loss(outs_fake: list[Tensor], gan_type: str = "lsgan") -> Tensor:
    """Generator loss summed over D outputs: lsgan mean((D(fake) - 1)^2); hinge -mean(D(fake));
    nonsaturating mean(softplus(-D(fake)))."""
    if gan_type == "lsgan":
        return sum((f.float() - 1).pow(2).mean() for f in outs_fake)
    if gan_type == "hinge":
        return sum(-f.float().mean() for f in outs_fake)
    if gan_type == "nonsaturating":
        return sum(F.softplus(-f.float()).mean() for f in outs_fake)
    raise ValueError(f"unknown gan_type {gan_type!r}")


class PerceptualLoss(nn.Module):
    """Domain-invariant perceptual loss: VGG16 relu5_3 features, instance-normalised, MSE.

    Weights come from a local file (torchvision's vgg16 state dict as .safetensors or a
    .pth read with weights_only=True); nothing is downloaded. Inputs in [-1, 1] get
    torchvision's ImageNet normalisation (the reference used Caffe-converted weights with
    BGR mean subtraction; with torchvision weights the matching preprocessing is this one).
    """

    def __init__(self, weights: Path | str | None = None):
        super().__init__()
        from torchvision.models import vgg16

        self.features = vgg16(weights=None).features[:30].eval()  # up to relu5_3
        if weights is not None:
            self.features.load_state_dict(load_vgg_state(weights))
        for p in self.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _feat(self, x: Tensor) -> Tensor:
        x = ((x + 1) / 2 - self.mean) / self.std
        return F.instance_norm(self.features(x).float(), eps=1e-5)

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(self._feat(x), self._feat(target))


def load_vgg_state(path: Path | str) -> dict[str, Tensor]:
    """vgg16 `features.*` weights from a local file, keys normalised to the features module."""
    path = Path(path)
    if not path.is_file():
        raise MunitError(f"VGG16 weights {str(path)!r} not found: pass --vgg-weights with a local vgg16 file "
                         "(torchvision's vgg16 state dict, .safetensors or .pth)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]  # torch's run to paragraphs
        raise MunitError(f"cannot read VGG16 weights {str(path)!r} ({reason}): pass a vgg16 state dict file")
    state = {k[len("features."):] if k.startswith("features.") else k: v for k, v in state.items()
             if not k.startswith("classifier.")}
    return state
