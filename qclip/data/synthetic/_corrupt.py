"""CIFAR-10-C's corruptions, in numpy, for the synthetic world's ``synth-cifar-c`` arrays.

Three of the release's 19 (Hendrycks & Dietterich, ICLR 2019, ``make_cifar_c.py``), at its five CIFAR
severities, on uint8 ``[H, W, 3]`` images:

* ``gaussian_noise``: ``x + N(0, c²)`` on [0, 1], c = 0.04, 0.06, 0.08, 0.09, 0.10;
* ``defocus_blur``: a disk kernel of radius r = 0.3, 0.4, 0.5, 1, 1.5, its aliasing smoothed by a Gaussian
  of σ = 0.4, 0.5, 0.6, 0.2, 0.1 (the release does this with OpenCV; here scipy.ndimage);
* ``contrast``: ``(x − mean) · c + mean`` per image, c = 0.75, 0.5, 0.4, 0.3, 0.15.

Each returns uint8 (clipped to [0, 255], rounded as the release's ``np.uint8`` cast truncates).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["CORRUPTIONS", "corrupt"]

_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)
_DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))
_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
CORRUPTIONS = ("contrast", "defocus_blur", "gaussian_noise")


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    size = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    x, y = np.meshgrid(size, size)
    k = ((x ** 2 + y ** 2) <= radius ** 2).astype(np.float64)
    k /= k.sum()
    k = ndimage.gaussian_filter(k, sigma=alias_blur, truncate=1.0 / max(alias_blur, 1e-6))  # OpenCV's 3x3
    return k / k.sum()


def corrupt(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8 [H, W, 3]) under corruption ``name`` at ``severity`` (1..5)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"Expected a corruption in {CORRUPTIONS}, but got {name!r}")
    if severity not in range(1, 6):
        raise ValueError(f"Expected a severity in 1..5, but got {severity!r}")
    x = image.astype(np.float64) / 255.0
    if name == "gaussian_noise":
        x = x + rng.normal(scale=_NOISE[severity - 1], size=x.shape)
    elif name == "defocus_blur":
        k = _disk(*_DEFOCUS[severity - 1])
        x = np.stack([ndimage.correlate(x[..., ch], k, mode="reflect") for ch in range(x.shape[-1])], axis=-1)
    else:
        c = _CONTRAST[severity - 1]
        means = x.mean(axis=(0, 1), keepdims=True)
        x = (x - means) * c + means
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
