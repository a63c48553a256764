"""Building blocks of MUNIT: conv block, residual blocks, AdaIN, the reference LayerNorm, MLP,
spectral normalisation.

AdaIN parameters are passed functionally (never stored on modules), so a decoder can be
called twice in one graph, under DDP or under torch.compile.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

EPS = 1e-5


def make_activation(name: str) -> nn.Module:
    return {
        "relu": lambda: nn.ReLU(inplace=True),
        "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
        "prelu": nn.PReLU,
        "selu": lambda: nn.SELU(inplace=True),
        "tanh": nn.Tanh,
        "none": nn.Identity,
    }[name]()


def _no_autocast(device: torch.device):
    return torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else contextlib.nullcontext()


def pad(x: Tensor, pads: tuple[int, ...], mode: str) -> Tensor:
    """F.pad in x's own dtype: CPU autocast runs reflection / replication pads in fp32, which
    costs an fp32 copy of every bf16 activation and a cast back at the next conv."""
    with _no_autocast(x.device):
        return F.pad(x, pads, mode=mode)


def conv2d(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """`conv(x)`, with a non-zero padding mode applied by `pad`."""
    if conv.padding_mode == "zeros" or conv.padding == (0, 0):
        return conv(x)
    ph, pw = conv.padding
    return F.conv2d(pad(x, (pw, pw, ph, ph), conv.padding_mode), conv.weight, conv.bias, conv.stride, 0,
                    conv.dilation, conv.groups)


def instance_norm(x: Tensor) -> Tensor:
    """Normalise per (sample, channel) over H, W: biased variance, eps inside the sqrt, no affine."""
    if x.is_contiguous() and not torch.onnx.is_in_onnx_export():
        # group_norm with one group per channel is exactly this; for bf16 it accumulates in
        # fp32 and rounds once, and on CPU it runs 1.2-2.5x faster than instance_norm, which
        # copies to (1, B*C, H, W) and, for bf16 accuracy, needs an fp32 copy of x
        return F.group_norm(x, x.shape[1], eps=EPS)
    # channels_last: group_norm's CPU kernel for it uses E[x^2] - E[x]^2, which cancels badly
    # when |mean| >> std; statistics in fp32 as bf16 loses too many digits. ONNX: a plain
    # InstanceNormalization node (group_norm would bake in the channel count as a graph input)
    return F.instance_norm(x.float(), eps=EPS).to(x.dtype)


class InstanceNorm(nn.Module):
    """`instance_norm` as a module (no parameters, no running statistics)."""

    def forward(self, x: Tensor) -> Tensor:
        return instance_norm(x)


def adain(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Adaptive instance norm: normalise per (sample, channel) over H, W with biased
    variance and eps inside the sqrt, then scale by `std` and shift by `mean` (both (B, C)).
    """
    return torch.addcmul(mean[:, :, None, None].to(x.dtype), instance_norm(x), std[:, :, None, None].to(x.dtype))


@functools.lru_cache(maxsize=None)
def _phase_taps(k: int) -> Tensor:
    """(2, T, k) 0/1 matrix: tap j of a k-wide kernel on the x2 nearest-upsampled grid reads
    low-resolution offset t - (T - 1) / 2 for output phase r (even / odd output position)."""
    p = (k - 1) // 2
    q = (p + 1) // 2  # reach of a phase on the low-res grid: T = 2q + 1 taps
    m = torch.zeros(2, 2 * q + 1, k)
    for r in range(2):
        for j in range(k):
            m[r, (r - p + j) // 2 + q, j] = 1
    return m


def upsample_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """`conv(nearest_x2(x))` without the upsampled copy: (B, Cin, H, W) -> (B, Cout, 2H, 2W).

    Nearest upsampling repeats every pixel 4 times, so each of the 4 output phases (even /
    odd row x column) is a small conv on the low-resolution grid whose taps are sums of the
    k x k kernel's taps (3 x 3 for k = 5: 36 instead of 100 multiply-adds per output pixel,
    the decoder's two 5x5 convs being over half its FLOPs). The phases run as one conv with
    4 * Cout channels, interleaved by pixel_shuffle. Replicate- and zero-padding of the
    upsampled image equal the same padding of x; reflection does not for the outer
    p - 1 rows and columns (p = (k - 1) / 2), which are recomputed directly from thin strips.
    Same values and gradients as the direct form up to float rounding (tests/test_performance.py).
    """
    k, mode = conv.kernel_size[0], conv.padding_mode
    p = (k - 1) // 2
    h, w = x.shape[-2:]
    kernel = conv.weight  # read once: under spectral norm every read recomputes it (and, training, iterates)
    plain = (conv.kernel_size != (k, k) or conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1
             or conv.padding != (p, p) or k % 2 == 0 or min(h, w) < p or torch.onnx.is_in_onnx_export())
    if plain:  # the direct form: unusual convs, tiny inputs, and ONNX graphs (which must not bake in sizes)
        return conv2d(conv, F.interpolate(x, scale_factor=2.0, mode="nearest"))
    with _no_autocast(x.device):  # tap sums in >= fp32; autocast casts the result
        dtype = torch.promote_types(kernel.dtype, torch.float32)
        m = _phase_taps(k).to(kernel.device, dtype)
        weight = torch.einsum("ayj,bxi,ocji->oabcyx", m, m, kernel.to(dtype))  # (Cout, 2, 2, Cin, T, T)
        weight = weight.reshape(-1, *weight.shape[3:]).to(kernel.dtype)  # (4 Cout, Cin, T, T)
    bias = conv.bias.repeat_interleave(4)
    q = (m.shape[1] - 1) // 2
    if mode == "zeros":
        y = F.conv2d(x, weight, bias, padding=q)
    else:  # replicate for both reflect and replicate (reflect's outer rows fixed below), by
        # concatenation: torch.compile mis-strides replication_pad2d's backward (torch 2.14)
        xp = torch.cat([x[:, :, :1]] * q + [x] + [x[:, :, -1:]] * q, 2)
        xp = torch.cat([xp[..., :1]] * q + [xp] + [xp[..., -1:]] * q, 3)
        y = F.conv2d(xp, weight, bias)
    y = F.pixel_shuffle(y, 2)  # (B, Cout, 2H, 2W)
    if mode == "reflect" and p > 1:
        n = p - 1  # rows / columns on each side whose window reaches 2 or more pixels into the padding
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
        y[:, :, :n] = F.conv2d(pad(up(x[:, :, :p]), (p, p, p, 0), "reflect")[:, :, :n + 2 * p], kernel, conv.bias)
        y[:, :, -n:] = F.conv2d(pad(up(x[:, :, -p:]), (p, p, 0, p), "reflect")[:, :, -(n + 2 * p):], kernel, conv.bias)
        y[..., :n] = F.conv2d(pad(up(x[..., :p]), (p, 0, p, p), "reflect")[..., :n + 2 * p], kernel, conv.bias)
        y[..., -n:] = F.conv2d(pad(up(x[..., -p:]), (0, p, p, p), "reflect")[..., -(n + 2 * p):], kernel, conv.bias)
    return y


class LayerNorm(nn.Module):
    """The reference implementation's LayerNorm (not torch's): per-sample statistics over
    (C, H, W), **unbiased** std, eps added to the std, per-channel affine.
    Used in the decoder's upsampling blocks, where IN would erase the style just applied.
    """

    def __init__(self, num_features: int, eps: float = EPS):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.empty(num_features).uniform_())  # U[0, 1) as the reference
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        dims, n = tuple(range(1, x.dim())), x[0].numel()
        if x.device.type == "mps":  # no float64 there
            std, mean = torch.std_mean(x.float(), dim=dims)  # (B,), unbiased as the reference
        else:
            # float64 sums of x and x^2: one read each, about 4x faster than torch.std on CPU,
            # and float64 keeps E[x^2] - E[x]^2 exact enough for any fp32 input
            s1 = x.sum(dims, dtype=torch.float64)
            s2 = torch.linalg.vector_norm(x, 2, dim=dims, dtype=torch.float64).square()
            mean = s1 / n
            std = ((s2 - s1 * mean) / (n - 1)).clamp_min(0).sqrt()  # unbiased, as the reference
        # y = (x - mean) / (std + eps) * gamma + beta, folded into one pass y = a x + b with
        # (B, C) a, b; computed in fp32 (a bf16 b would cancel against a x), rounded once
        a = self.gamma[None, :] / (std[:, None] + self.eps).float()  # (B, C)
        b = self.beta[None, :] - mean[:, None].float() * a
        return torch.addcmul(b[:, :, None, None], x, a[:, :, None, None]).to(x.dtype)


class ConvBlock(nn.Module):
    """pad -> conv (with bias) -> norm -> activation. `norm` is none | in | ln | adain;
    an `adain` block takes (x, mean, std). `pre=True` is the pre-activation order
    norm -> activation -> pad -> conv (the norm then acts on the `cin` input channels)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, norm: str = "none",
                 activ: str = "relu", pad_type: str = "reflect", pre: bool = False):
        super().__init__()
        if pre and norm == "none":
            raise ValueError("a pre-activation block needs a norm (an in-place activation would change its input)")
        self.pre = pre
        pad_mode = {"reflect": "reflect", "replicate": "replicate", "zero": "zeros"}[pad_type]
        # (k - 1) // 2: 7->3, 5->2, 3->1, 1->0, and 4->1 so 4x4 stride-2 maps H to floor(H / 2)
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2, bias=True, padding_mode=pad_mode)
        self.norm_type = norm
        if norm == "ln":
            self.norm = LayerNorm(cin if pre else cout)
        elif norm == "in":
            self.norm = InstanceNorm()
        elif norm in ("none", "adain"):
            self.norm = None
        else:
            raise ValueError(f"unknown norm {norm}")
        self.activ = make_activation(activ)

    def forward(self, x: Tensor, mean: Tensor | None = None, std: Tensor | None = None,
                upsample: bool = False) -> Tensor:
        """`upsample`: nearest x2 first (fused into the conv, see `upsample_conv`)."""
        if self.pre:  # the norm makes a new tensor, so an in-place activation never touches the input
            x = self.activ(self._norm(x, mean, std))
            return upsample_conv(x, self.conv) if upsample else conv2d(self.conv, x)
        x = upsample_conv(x, self.conv) if upsample else conv2d(self.conv, x)
        return self.activ(self._norm(x, mean, std))

    def _norm(self, x: Tensor, mean: Tensor | None, std: Tensor | None) -> Tensor:
        if self.norm_type == "adain":
            return adain(x, mean, std)
        return x if self.norm is None else self.norm(x)


class ResBlock(nn.Module):
    """conv3x3 -> norm -> activ -> conv3x3 -> norm, plus the input; no activation after the add.
    `pre=True`: norm -> activ -> conv3x3 -> norm -> activ -> conv3x3, plus the input."""

    def __init__(self, dim: int, norm: str, activ: str, pad_type: str, pre: bool = False):
        super().__init__()
        self.conv1 = ConvBlock(dim, dim, 3, 1, norm, activ, pad_type, pre)
        self.conv2 = ConvBlock(dim, dim, 3, 1, norm, activ if pre else "none", pad_type, pre)

    def forward(self, x: Tensor, adain_params: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        if adain_params is None:
            return x + self.conv2(self.conv1(x))
        (m1, s1), (m2, s2) = adain_params
        return x + self.conv2(self.conv1(x, m1, s1), m2, s2)


class MLP(nn.Module):
    """style (B, style_dim) -> AdaIN parameters (B, n_out): Linear-activ, Linear-activ, Linear."""

    def __init__(self, din: int, dout: int, dim: int, activ: str, n_blk: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(din, dim), make_activation(activ)]
        for _ in range(n_blk - 2):
            layers += [nn.Linear(dim, dim), make_activation(activ)]
        layers.append(nn.Linear(dim, dout))
        self.model = nn.Sequential(*layers)

    def forward(self, s: Tensor) -> Tensor:
        return self.model(s.flatten(1))


def plain(module: nn.Module) -> nn.Module:
    """Mark a conv / linear that `apply_spectral_norm` leaves alone."""
    module.plain_weight = True
    return module


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral norm (torch parametrization, one power iteration per training-mode forward,
    none in eval mode) on every Conv2d / Linear of `module` not marked `plain`. Apply it after
    the weight init: registration runs 15 power iterations on the weight it finds."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not getattr(m, "plain_weight", False):
            spectral_norm(m)
    return module


def bake_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace every spectral-norm parametrization by the weight it gives in eval mode (puts
    `module` in eval mode): the same outputs, as plain convs, e.g. for ONNX (which has no vdot)."""
    module.eval()
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module
