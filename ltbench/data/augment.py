"""Batched data augmentation.

:class:`DeviceAugment` — random crop with zero padding plus horizontal flip, for a whole batch
already on the device, in one gather: no Python loop over samples and no host synchronisation,
so it can run inside a CUDA-graph-friendly training step.

:class:`PolicyAugment` — RandAugment / AutoAugment (torchvision.transforms.v2) drawn **per
sample**. torchvision's transforms draw one operation for a whole batch tensor, so this class
calls the transform once per image; it is meant for uint8 batches on the CPU before they go to
the device (measured on 2 CPU cores: about 0.35 ms per 32×32 image for RandAugment and 0.16 ms
for AutoAugment, i.e. 20–45 ms per batch of 128 — small next to a PGD-10 step, but not free).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


class DeviceAugment:
    """Per-sample random crop (zero padding ``crop_padding``) and random horizontal flip.

    Call it on a B×C×H×W batch (float or uint8, any device); it returns a new batch of the same
    shape, dtype, device and memory format. Each sample gets its own offsets and its own coin
    for the flip. Randomness comes from ``generator`` when given — it should live on the batch's
    device, otherwise the draws are made on its device and copied over — else from torch's
    default generator for that device.
    """

    def __init__(self, crop_padding: int = 4, flip: bool = True):
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)

    def __repr__(self) -> str:
        return f"DeviceAugment(crop_padding={self.crop_padding}, flip={self.flip})"

    @property
    def is_identity(self) -> bool:
        return self.crop_padding == 0 and not self.flip

    def sample(self, batch: int, device: torch.device | str,
               generator: Optional[torch.Generator] = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw per-sample ``(dy, dx, flip)``: offsets in ``[0, 2·padding]`` and flip flags."""
        draw_on = generator.device if generator is not None else torch.device(device)
        span = 2 * self.crop_padding + 1
        dy = torch.randint(0, span, (batch,), generator=generator, device=draw_on)
        dx = torch.randint(0, span, (batch,), generator=generator, device=draw_on)
        if self.flip:
            flip = torch.rand(batch, generator=generator, device=draw_on) < 0.5
        else:
            flip = torch.zeros(batch, dtype=torch.bool, device=draw_on)
        return tuple(t.to(device, non_blocking=True) for t in (dy, dx, flip))  # type: ignore

    def apply(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
              flip: torch.Tensor) -> torch.Tensor:
        """Crop/flip ``x`` with given per-sample parameters (deterministic; see :meth:`sample`).

        Sample ``b`` of the output is rows ``dy[b] … dy[b]+H-1`` and columns
        ``dx[b] … dx[b]+W-1`` of the zero-padded input, mirrored left-right where ``flip[b]``.
        """
        if x.dim() != 4:
            raise ValueError(f"expected a B×C×H×W batch, got shape {tuple(x.shape)}")
        B, C, H, W = x.shape
        p = self.crop_padding
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        padded = F.pad(x, (p, p, p, p)) if p else x
        dev = x.device
        rows = dy.view(B, 1) + torch.arange(H, device=dev).view(1, H)           # B×H
        cols_fwd = torch.arange(W, device=dev).view(1, W)
        cols = dx.view(B, 1) + torch.where(flip.view(B, 1), (W - 1) - cols_fwd, cols_fwd)  # B×W
        out = padded[torch.arange(B, device=dev).view(B, 1, 1, 1),
                     torch.arange(C, device=dev).view(1, C, 1, 1),
                     rows.view(B, 1, H, 1),
                     cols.view(B, 1, 1, W)]
        if channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if self.is_identity:
            return x
        dy, dx, flip = self.sample(x.shape[0], x.device, generator)
        return self.apply(x, dy, dx, flip)


POLICIES = ("randaugment", "autoaugment")


class PolicyAugment:
    """RandAugment or AutoAugment applied independently to every image of a uint8 batch.

    ``kind`` is ``"randaugment"`` (``num_ops``, ``magnitude`` as in Cubuk et al. 2020) or
    ``"autoaugment"`` (``policy``: ``"cifar10"``, ``"imagenet"`` or ``"svhn"``; Cubuk et al.
    2019). The torchvision transforms use torch's global random state; pass ``generator`` to the
    call to make a batch reproducible (a seed is drawn from it and the global state is restored
    afterwards). Cost: one transform call per image (see the module docstring).
    """

    def __init__(self, kind: str = "randaugment", num_ops: int = 2, magnitude: int = 9,
                 policy: str = "cifar10"):
        from torchvision.transforms import v2

        from ltbench.errors import LtbenchError

        if kind == "randaugment":
            self.transform = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
        elif kind == "autoaugment":
            try:
                pol = v2.AutoAugmentPolicy(policy)
            except ValueError:
                known = ", ".join(p.value for p in v2.AutoAugmentPolicy)
                raise LtbenchError(f"unknown AutoAugment policy {policy!r}; known: {known}") from None
            self.transform = v2.AutoAugment(pol)
        else:
            raise LtbenchError(f"unknown augmentation policy {kind!r}; known: {', '.join(POLICIES)}")
        self.kind = kind

    def __repr__(self) -> str:
        return f"PolicyAugment({self.kind!r}: {self.transform!r})"

    def _each(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(img) for img in x.unbind(0)])

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if x.dim() != 4 or x.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 B×C×H×W batch, got {x.dtype} {tuple(x.shape)}")
        if x.shape[0] == 0:
            return x.clone()
        if generator is None:
            return self._each(x)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self._each(x)
