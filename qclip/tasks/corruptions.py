"""Evaluation-time corruptions of preprocessed pixel batches, with a fixed seed (robustness cells).

Corruptions act in [0, 1] pixel space: a batch normalised with the model's (mean, std) is
un-normalised, corrupted, clipped to [0, 1] and normalised again. Severities follow the spirit of
ImageNet-C (Hendrycks & Dietterich 2019) at three levels:

* ``gaussian_noise``: additive N(0, σ²) with σ ∈ {0.08, 0.18, 0.38} (ImageNet-C severities 1, 3, 5);
* ``gaussian_blur``: σ ∈ {0.5, 1.0, 2.0} pixels *at the model's input resolution* (so the same
  severity blurs a 32-pixel tiny model's input and a 224-pixel ViT's input by the same number of
  pixels; ImageNet-C applies σ 1..6 at 224).

Noise is drawn per sample from a generator seeded by (seed, sample index), so results do not depend
on the batch size or on which worker computes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["CORRUPTIONS", "Corruption", "make_corruption"]

CORRUPTIONS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.18, 0.38),
    "gaussian_blur": (0.5, 1.0, 2.0),
}


@dataclass(frozen=True)
class Corruption:
    name: str
    severity: int  # 1-based level
    seed: int = 0

    @property
    def param(self) -> float:
        return CORRUPTIONS[self.name][self.severity - 1]

    @property
    def id(self) -> str:
        return f"{self.name}:s{self.severity}:seed{self.seed}:v1"


def make_corruption(c: Corruption, mean, std) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function corrupting a normalised batch ``[B, 3, H, W]`` (stateful only in its batch counter)."""
    if c.name not in CORRUPTIONS:
        raise ValueError(f"Expected a corruption in {sorted(CORRUPTIONS)}, but got {c.name!r}")
    if not 1 <= c.severity <= len(CORRUPTIONS[c.name]):
        raise ValueError(f"Expected severity in 1..{len(CORRUPTIONS[c.name])}, but got {c.severity}")
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    state = {"offset": 0}

    def apply(batch: torch.Tensor) -> torch.Tensor:
        x = batch.float() * s + m
        if c.name == "gaussian_noise":
            noise = torch.empty_like(x)
            for i in range(x.shape[0]):  # one generator per sample: independent of the batch size
                g = torch.Generator().manual_seed(c.seed * 1_000_003 + state["offset"] + i)
                noise[i] = torch.randn(x.shape[1:], generator=g)
            x = x + c.param * noise
        else:
            import torchvision.transforms.functional as TF

            radius = max(1, int(3 * c.param + 0.5))
            x = TF.gaussian_blur(x, kernel_size=[2 * radius + 1] * 2, sigma=[c.param] * 2)
        state["offset"] += batch.shape[0]
        return ((x.clamp(0, 1) - m) / s).to(batch.dtype)

    return apply
