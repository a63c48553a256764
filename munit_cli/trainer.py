"""One MUNIT training step and the complete training state (networks, EMA, optimisers, RNG).

Step semantics (SPEC section 3, with one documented change): the reference generates the
fakes twice per iteration, once for the D update and again for the G update, each time with
fresh random styles. With `shared_fakes` (default) the generator forward runs once; D is
updated on the detached fakes, then the G losses use the same fakes against the updated D,
with D's parameters frozen so no D weight gradients are computed. Only the random style
draw differs from the reference (one draw per step instead of two); the objectives, their
order and the optimiser updates are unchanged. `shared_fakes=False` is the reference step.

Improved-recipe options (SPEC section 6) change only what their config fields say: the GAN
objective, DiffAugment on every D input (drawn from `aug_rng`, saved with the RNG state), a
constant learning rate, orthogonal init, and the EMA start; under spectral norm the EMA
copies the live nets' power-iteration vectors, as it cannot iterate itself. A warm start
(`init_from`) loads trained weights and averages at the full EMA beta from step 0.

Diversity-sensitive loss (`ds_w`, StarGAN v2, Choi et al. 2020, eq. 3; the mode-seeking idea
of Mao et al. 2019): each cross decode also runs with a second random style, and the mean L1
distance between the two outputs is subtracted from the G loss, its weight falling linearly
to 0 over `ds_decay` steps. It fights the collapse in which a decoder ignores its style code.
Off (0) in every preset; the extra styles are drawn only when it is on, so runs without it
draw the same codes as before.

Reference-guided steps (`ref_p`, after StarGAN v2, which trains every generation both with
a random style and with a reference image's encoded style): on a fraction `ref_p` of the
steps, spread evenly, each cross decode takes the style the encoder finds in the step's real
image of the target domain (x_ba: c_b with x_a's style) instead of a random code. The paper
decodes encoded styles only with their own image's content, so `--style-from` asks the
decoder for a pairing it never trained on; these steps train it, and the adversarial loss
teaches the style encoder to give codes that make the other animal. The style target is the
encoded code, detached (otherwise the encoder could shrink its codes to make the loss easy).
No extra pass: the step costs what a latent one does. Off (0) in every preset.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random

import torch
from torch import Tensor, nn

from munit_cli.checkpoint import flatten_optimizer, module_tensors, load_module, restore_optimizer
from munit_cli.config import ModelConfig, TrainConfig
from munit_cli.diffaugment import DiffAugment
from munit_cli.seeds import stable_seed
from munit_cli.losses import PerceptualLoss, dis_loss, gen_adv_loss, recon
from munit_cli.models import Generator, MultiScaleDiscriminator, build_discriminator, build_generator
from munit_cli.runtime import autocast, channels_last_ok, check_precision, speed_settings


class GenPair(nn.Module):
    """Both generators. `forward` computes every generator output of one step in a single
    call, so DistributedDataParallel sees one forward per backward."""

    def __init__(self, gen_a: Generator, gen_b: Generator, cycle: bool):
        super().__init__()
        self.gen_a, self.gen_b, self.cycle = gen_a, gen_b, cycle

    def forward(self, x_a: Tensor, x_b: Tensor, s_a: Tensor, s_b: Tensor, s_a2: Tensor | None = None,
                s_b2: Tensor | None = None, ref: bool = False) -> dict[str, Tensor]:
        """`s_a2`, `s_b2`: second random styles for the diversity-sensitive loss (x_ba2, x_ab2).
        `ref`: a reference-guided step, the cross decodes take the real images' encoded styles
        in place of `s_a`, `s_b` (out["s_a_cross"], out["s_b_cross"]: the styles used)."""
        c_a, s_a_prime = self.gen_a.encode(x_a)
        c_b, s_b_prime = self.gen_b.encode(x_b)
        if ref:
            s_a, s_b = s_a_prime, s_b_prime
        # one decode per generator over [own content + own style; other content + random style(s)]:
        # per-sample norms make this exactly the separate decodes, with better conv batching
        ds = s_a2 is not None
        parts = 3 if ds else 2
        xs_a = self.gen_a.decode(torch.cat([c_a, c_b] + [c_b] * ds), torch.cat([s_a_prime, s_a] + [s_a2] * ds)).chunk(parts)
        xs_b = self.gen_b.decode(torch.cat([c_b, c_a] + [c_a] * ds), torch.cat([s_b_prime, s_b] + [s_b2] * ds)).chunk(parts)
        (x_a_recon, x_ba), (x_b_recon, x_ab) = xs_a[:2], xs_b[:2]
        c_b_recon, s_a_recon = self.gen_a.encode(x_ba)
        c_a_recon, s_b_recon = self.gen_b.encode(x_ab)
        out = dict(c_a=c_a, c_b=c_b, s_a_prime=s_a_prime, s_b_prime=s_b_prime, x_a_recon=x_a_recon,
                   x_b_recon=x_b_recon, x_ba=x_ba, x_ab=x_ab, c_a_recon=c_a_recon, c_b_recon=c_b_recon,
                   s_a_recon=s_a_recon, s_b_recon=s_b_recon, s_a_cross=s_a, s_b_cross=s_b)
        if ds:
            out["x_ba2"], out["x_ab2"] = xs_a[2], xs_b[2]
        if self.cycle:
            out["x_aba"] = self.gen_a.decode(c_a_recon, s_a_prime)
            out["x_bab"] = self.gen_b.decode(c_b_recon, s_b_prime)
        return out


class DisPair(nn.Module):
    """Both discriminators; `forward` returns the D loss on (real, fake) for a and b.
    `augment` (DiffAugment) transforms every image a discriminator sees, real and fake."""

    def __init__(self, dis_a: MultiScaleDiscriminator, dis_b: MultiScaleDiscriminator, gan_type: str = "lsgan",
                 augment: DiffAugment | None = None):
        super().__init__()
        self.dis_a, self.dis_b, self.gan_type, self.augment = dis_a, dis_b, gan_type, augment

    def judge(self, dis: nn.Module, x: Tensor) -> list[Tensor]:
        """D's outputs on x, augmented first when DiffAugment is on."""
        return dis(x if self.augment is None else self.augment(x))

    def forward(self, x_a: Tensor, x_ba: Tensor, x_b: Tensor, x_ab: Tensor) -> tuple[Tensor, Tensor]:
        n = x_a.shape[0]
        # fakes and reals in one D call per domain (D outputs are per-sample); one DiffAugment
        # pipeline over the whole batch, each image with its own draw
        outs_a = self.judge(self.dis_a, torch.cat([x_ba, x_a]))
        outs_b = self.judge(self.dis_b, torch.cat([x_ab, x_b]))
        loss_a = dis_loss([o[:n] for o in outs_a], [o[n:] for o in outs_a], self.gan_type)
        loss_b = dis_loss([o[:n] for o in outs_b], [o[n:] for o in outs_b], self.gan_type)
        return loss_a, loss_b


def _ddp(module: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


class Trainer:
    """Networks, EMA generators, optimisers and RNG of a run; `train_step` does one iteration."""

    def __init__(self, model: ModelConfig, train: TrainConfig, device: torch.device, *, rank: int = 0,
                 world: int = 1, vgg_weights: str | None = None, channels_last: bool | None = None,
                 compile: bool = False):
        if train.precision == "auto":  # resolved for this device; the run's own config keeps "auto"
            train = dataclasses.replace(train, precision=check_precision("auto", device))
        self.model_cfg, self.cfg, self.device, self.rank, self.world = model, train, device, rank, world
        torch.manual_seed(train.seed)  # identical init on every rank
        self.gen_a, self.gen_b = (build_generator(model, scheme=train.init).to(device) for _ in "ab")
        self.dis_a, self.dis_b = (build_discriminator(model, scheme=train.init).to(device) for _ in "ab")
        speed_settings(device)
        self.channels_last = channels_last_ok(device) if channels_last is None else channels_last
        if self.channels_last:
            for m in (self.gen_a, self.gen_b, self.dis_a, self.dis_b):
                m.to(memory_format=torch.channels_last)
        self.gens = GenPair(self.gen_a, self.gen_b, cycle=train.recon_x_cyc_w > 0)
        self.aug_rng = None
        if train.diffaug:
            self.aug_rng = torch.Generator().manual_seed(stable_seed(train.seed, "diffaug", rank))
        self.dis = DisPair(self.dis_a, self.dis_b, model.dis.gan_type,
                           DiffAugment(train.diffaug, self.aug_rng) if train.diffaug else None)
        self.gens_fwd: nn.Module = _ddp(self.gens, device) if world > 1 else self.gens
        self.dis_fwd: nn.Module = _ddp(self.dis, device) if world > 1 else self.dis
        if compile:
            self.gens_fwd = torch.compile(self.gens_fwd)
        self.ema_a = self.ema_b = None
        if train.ema:
            self.ema_a, self.ema_b = copy.deepcopy(self.gen_a).eval(), copy.deepcopy(self.gen_b).eval()
            for p in [*self.ema_a.parameters(), *self.ema_b.parameters()]:
                p.requires_grad_(False)
        fused = device.type == "cuda"
        adam = dict(betas=(train.beta1, train.beta2), weight_decay=train.weight_decay)
        adam.update(fused=True) if fused else adam.update(foreach=True)
        self.opt_gen = torch.optim.Adam(self.gens.parameters(), lr=train.lr, **adam)
        self.opt_dis = torch.optim.Adam(self.dis.parameters(), lr=train.lr_dis, **adam)
        self.scaler = torch.amp.GradScaler(device.type, enabled=train.precision == "fp16")
        self.style_rng = torch.Generator().manual_seed(stable_seed(train.seed, "styles", rank))
        self.vgg = PerceptualLoss(vgg_weights).to(device) if train.vgg_w > 0 else None
        self.step = 0

    # --- one iteration -------------------------------------------------------------------

    def _styles(self, n: int) -> tuple[Tensor, ...]:
        """s_a, s_b, and with the diversity-sensitive loss on, s_a2, s_b2. Drawn on the CPU so
        runs on any device draw the same codes."""
        k = 4 if self.cfg.ds_w > 0 else 2
        s = torch.randn(k, n, self.model_cfg.gen.style_dim, 1, 1, generator=self.style_rng)
        return tuple(s.to(self.device, non_blocking=True).unbind(0))

    def ds_weight(self) -> float:
        """The diversity-sensitive loss weight at this step (linear decay to 0 over ds_decay)."""
        if self.cfg.ds_decay <= 0:
            return self.cfg.ds_w
        return self.cfg.ds_w * max(0.0, 1.0 - self.step / self.cfg.ds_decay)

    def ref_step(self) -> bool:
        """Whether this step is reference-guided: `ref_p` of the steps, spread evenly
        (no random draw, so a resumed run keeps the schedule)."""
        p = self.cfg.ref_p
        return p > 0 and math.floor((self.step + 1) * p) > math.floor(self.step * p)

    def _set_lr(self) -> None:
        k = 1.0 if self.cfg.lr_policy == "constant" else self.cfg.lr_gamma ** (self.step // self.cfg.lr_step)
        for g in self.opt_gen.param_groups:
            g["lr"] = self.cfg.lr * k
        for g in self.opt_dis.param_groups:
            g["lr"] = self.cfg.lr_dis * k

    def _prep(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _dis_update(self, x_a: Tensor, x_b: Tensor, x_ba: Tensor, x_ab: Tensor) -> tuple[Tensor, Tensor]:
        self.dis.requires_grad_(True)
        with autocast(self.device, self.cfg.precision):
            loss_a, loss_b = self.dis_fwd(x_a, x_ba.detach(), x_b, x_ab.detach())
            total = self.cfg.gan_w * (loss_a + loss_b)
        self.opt_dis.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt_dis)
        return loss_a.detach(), loss_b.detach()

    def _gen_losses(self, x_a: Tensor, x_b: Tensor, out: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg, dis, gan = self.cfg, self.dis, self.model_cfg.dis.gan_type
        L = {
            "loss_gan_a": gen_adv_loss(dis.judge(dis.dis_a, out["x_ba"]), gan),
            "loss_gan_b": gen_adv_loss(dis.judge(dis.dis_b, out["x_ab"]), gan),
            "loss_recon_x_a": recon(out["x_a_recon"], x_a),
            "loss_recon_x_b": recon(out["x_b_recon"], x_b),
            "loss_recon_s_a": recon(out["s_a_recon"], out["s_a_cross"].detach()),  # random codes: no-op detach
            "loss_recon_s_b": recon(out["s_b_recon"], out["s_b_cross"].detach()),
            "loss_recon_c_a": recon(out["c_a_recon"], out["c_a"]),  # target not detached, as the reference
            "loss_recon_c_b": recon(out["c_b_recon"], out["c_b"]),
        }
        w = {"gan": cfg.gan_w, "recon_x": cfg.recon_x_w, "recon_s": cfg.recon_s_w, "recon_c": cfg.recon_c_w}
        if "x_aba" in out:
            L["loss_cyc_x_a"] = recon(out["x_aba"], x_a)
            L["loss_cyc_x_b"] = recon(out["x_bab"], x_b)
            w["cyc_x"] = cfg.recon_x_cyc_w
        if self.vgg is not None:
            L["loss_vgg_a"] = self.vgg(out["x_ba"], x_b)
            L["loss_vgg_b"] = self.vgg(out["x_ab"], x_a)
            w["vgg"] = cfg.vgg_w
        if "x_ba2" in out:  # minus the distance between two styles' outputs: maximised
            L["loss_ds_a"] = -recon(out["x_ba"].float(), out["x_ba2"].float())
            L["loss_ds_b"] = -recon(out["x_ab"].float(), out["x_ab2"].float())
            w["ds"] = self.ds_weight()
        total = sum(w[k[5:-2]] * v.float() for k, v in L.items())
        L["loss_gen_total"] = total
        return L

    def train_step(self, x_a: Tensor, x_b: Tensor) -> dict[str, Tensor]:
        """One D update and one G update. Returns detached loss tensors (no host sync)."""
        self.gens.train()  # `inference_generators` may have left them in eval mode
        self._set_lr()
        x_a, x_b = self._prep(x_a), self._prep(x_b)
        s_a, s_b, *s2 = self._styles(x_a.shape[0])
        ref = self.ref_step()
        if self.cfg.shared_fakes:
            with autocast(self.device, self.cfg.precision):
                out = self.gens_fwd(x_a, x_b, s_a, s_b, *s2, ref=ref)
            loss_dis_a, loss_dis_b = self._dis_update(x_a, x_b, out["x_ba"], out["x_ab"])
            self.dis.requires_grad_(False)  # G step: gradients flow through D to G only
        else:  # the reference: fakes for D, then a second full generator pass for G
            with torch.no_grad(), autocast(self.device, self.cfg.precision):
                c_a, s_a_prime = self.gen_a.encode(x_a)
                c_b, s_b_prime = self.gen_b.encode(x_b)
                if ref:
                    s_a, s_b = s_a_prime, s_b_prime
                x_ba, x_ab = self.gen_a.decode(c_b, s_a), self.gen_b.decode(c_a, s_b)
            loss_dis_a, loss_dis_b = self._dis_update(x_a, x_b, x_ba, x_ab)
            s_a, s_b, *s2 = self._styles(x_a.shape[0])
            with autocast(self.device, self.cfg.precision):
                out = self.gens_fwd(x_a, x_b, s_a, s_b, *s2, ref=ref)
        with autocast(self.device, self.cfg.precision):
            L = self._gen_losses(x_a, x_b, out)
        self.opt_gen.zero_grad(set_to_none=True)
        self.scaler.scale(L["loss_gen_total"]).backward()
        self.scaler.step(self.opt_gen)
        self.scaler.update()
        self.dis.requires_grad_(True)
        self._update_ema()
        self.step += 1
        L = {k: v.detach() for k, v in L.items()}
        L["loss_dis_a"], L["loss_dis_b"] = loss_dis_a, loss_dis_b
        return L

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema_a is None:
            return
        ema = [*self.ema_a.parameters(), *self.ema_b.parameters()]
        cur = [*self.gen_a.parameters(), *self.gen_b.parameters()]
        k = self.step - self.cfg.ema_start  # updates since averaging started
        if self.cfg.init_from:  # warm start: the copies already hold trained weights, so no start delay or warm-up
            torch._foreach_lerp_(ema, cur, 1.0 - self.cfg.ema_beta)
        elif k < 0:  # not started: the average is the weights
            torch._foreach_copy_(ema, cur)
        else:  # warm-up: early on the average follows the weights closely (TF-style num_updates)
            beta = min(self.cfg.ema_beta, (1 + k) / (10 + k))
            torch._foreach_lerp_(ema, cur, 1.0 - beta)
        ema_buf = [*self.ema_a.buffers(), *self.ema_b.buffers()]  # spectral norm's u, v (none in the paper model)
        if ema_buf:
            torch._foreach_copy_(ema_buf, [*self.gen_a.buffers(), *self.gen_b.buffers()])

    def inference_generators(self) -> tuple[Generator, Generator]:
        """EMA generators when kept, else the raw ones (for samples and export), in eval mode:
        spectral norm then runs no power iteration, so sampling leaves training untouched."""
        if self.ema_a is not None:
            return self.ema_a, self.ema_b
        return self.gen_a.eval(), self.gen_b.eval()

    # --- state <-> checkpoint ------------------------------------------------------------

    def state(self) -> tuple[dict[str, Tensor], dict[str, str]]:
        """Everything needed to resume exactly: tensors and string metadata."""
        t: dict[str, Tensor] = {}
        for name in ("gen_a", "gen_b", "dis_a", "dis_b"):
            t.update(module_tensors(getattr(self, name), name))
        if self.ema_a is not None:
            t.update(module_tensors(self.ema_a, "gen_a_ema"))
            t.update(module_tensors(self.ema_b, "gen_b_ema"))
        og, og_meta = flatten_optimizer(self.opt_gen, "opt_gen")
        od, od_meta = flatten_optimizer(self.opt_dis, "opt_dis")
        t.update(og)
        t.update(od)
        t["rng.torch"] = torch.get_rng_state()
        t["rng.style"] = self.style_rng.get_state()
        if self.aug_rng is not None:
            t["rng.diffaug"] = self.aug_rng.get_state()
        if self.device.type == "cuda":
            t["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {
            "opt_gen": og_meta,
            "opt_dis": od_meta,
            "scheduler": json.dumps({"type": self.cfg.lr_policy, "lr_step": self.cfg.lr_step, "gamma": self.cfg.lr_gamma,
                                     "last_step": self.step}),
            "grad_scaler": json.dumps(self.scaler.state_dict()),
            "rng_python": json.dumps(random.getstate()),
        }
        return t, meta

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, str], step: int, path: str) -> None:
        for name in ("gen_a", "gen_b", "dis_a", "dis_b"):
            load_module(getattr(self, name), tensors, name, path)
        if self.ema_a is not None:
            if any(k.startswith("gen_a_ema.") for k in tensors):
                load_module(self.ema_a, tensors, "gen_a_ema", path)
                load_module(self.ema_b, tensors, "gen_b_ema", path)
            else:  # EMA switched on at resume: start the average from the current weights
                self.ema_a.load_state_dict(self.gen_a.state_dict())
                self.ema_b.load_state_dict(self.gen_b.state_dict())
        restore_optimizer(self.opt_gen, tensors, "opt_gen", meta["opt_gen"])
        restore_optimizer(self.opt_dis, tensors, "opt_dis", meta["opt_dis"])
        torch.set_rng_state(tensors["rng.torch"])
        self.style_rng.set_state(tensors["rng.style"])
        if self.aug_rng is not None and "rng.diffaug" in tensors:
            self.aug_rng.set_state(tensors["rng.diffaug"])
        if self.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        if meta.get("grad_scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(json.loads(meta["grad_scaler"]))
        if "rng_python" in meta:
            v, st, g = json.loads(meta["rng_python"])
            random.setstate((v, tuple(st), g))
        self.step = step

    def warm_start(self, tensors: dict[str, Tensor], path: str) -> list[str]:
        """Weights of another run (`--init-from`): the raw generators into the live nets, EMA
        weights into the EMA copies (else copies of the raw ones), the discriminators when the
        file has them. Optimisers, step and RNG stay fresh. Returns the networks loaded."""
        loaded = ["gen_a", "gen_b"]
        for name in loaded:
            load_module(getattr(self, name), tensors, name, path)
        if self.ema_a is not None:
            if any(k.startswith("gen_a_ema.") for k in tensors):
                load_module(self.ema_a, tensors, "gen_a_ema", path)
                load_module(self.ema_b, tensors, "gen_b_ema", path)
                loaded += ["gen_a_ema", "gen_b_ema"]
            else:
                self.ema_a.load_state_dict(self.gen_a.state_dict())
                self.ema_b.load_state_dict(self.gen_b.state_dict())
        if any(k.startswith("dis_a.") for k in tensors):
            load_module(self.dis_a, tensors, "dis_a", path)
            load_module(self.dis_b, tensors, "dis_b", path)
            loaded += ["dis_a", "dis_b"]
        return loaded
