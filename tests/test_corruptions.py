"""qclip.tasks.corruptions: seeded, batch-size independent, ordered by severity, shape- and dtype-preserving
corruptions of normalised pixel batches (the robustness cells' inputs)."""

from __future__ import annotations

import pytest
import torch

from qclip.tasks.corruptions import CORRUPTIONS, Corruption, make_corruption

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # CLIP's
M = torch.tensor(MEAN).view(1, 3, 1, 1)
S = torch.tensor(STD).view(1, 3, 1, 1)
LEVELS = [(name, sev) for name, params in CORRUPTIONS.items() for sev in range(1, len(params) + 1)]


def _pixels(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Images in [0.25, 0.75] (so clipping to [0, 1] rarely bites), with detail at every scale."""
    g = torch.Generator().manual_seed(seed)
    return 0.25 + 0.5 * torch.rand(n, 3, size, size, generator=g)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x - M) / S


def _unnorm(x: torch.Tensor) -> torch.Tensor:
    return x.float() * S + M


def test_the_table_and_the_ids():
    assert set(CORRUPTIONS) == {"gaussian_noise", "gaussian_blur"}
    for params in CORRUPTIONS.values():
        assert len(params) == 3 and list(params) == sorted(params) and params[0] > 0
    c = Corruption("gaussian_noise", 2, seed=7)
    assert c.param == CORRUPTIONS["gaussian_noise"][1]
    assert c.id == "gaussian_noise:s2:seed7:v1"
    # the id names everything the output depends on: it is part of the embedding cache key
    assert len({Corruption(n, s, seed).id for n, s in LEVELS for seed in (0, 1)}) == 2 * len(LEVELS)


@pytest.mark.parametrize("bad", [Corruption("gaussian_noise", 0), Corruption("gaussian_blur", 4),
                                 Corruption("gaussian_noise", -1), Corruption("fog", 1)],
                         ids=["severity-0", "severity-past-the-table", "negative", "unknown-name"])
def test_there_is_no_severity_0_and_no_unknown_corruption(bad):
    """Levels are 1-based: the clean reference is the uncorrupted cell, never a 'severity 0' call."""
    with pytest.raises(ValueError, match="Expected"):
        make_corruption(bad, MEAN, STD)


@pytest.mark.parametrize("name, severity", LEVELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_shape_dtype_and_the_unit_pixel_range_are_kept(name, severity, dtype):
    x = _norm(_pixels(3, 24)).to(dtype)
    y = make_corruption(Corruption(name, severity), MEAN, STD)(x)
    assert y.shape == x.shape and y.dtype == dtype
    assert torch.isfinite(y.float()).all()
    px = _unnorm(y)
    tol = 1e-6 if dtype == torch.float32 else 2e-2  # the half types round the normalised values
    assert px.min() >= -tol and px.max() <= 1 + tol
    assert not torch.equal(y, x)  # every level changes the image


def test_a_constant_image_is_left_alone_by_the_blur_so_the_normalisation_round_trips():
    x = _norm(torch.full((2, 3, 16, 16), 0.5))
    for sev in range(1, 4):
        y = make_corruption(Corruption("gaussian_blur", sev), MEAN, STD)(x)
        torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_pixels_outside_the_unit_range_are_clipped():
    x = _norm(torch.cat([torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)]))
    y = _unnorm(make_corruption(Corruption("gaussian_noise", 3), MEAN, STD)(x))
    assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6
    assert (y[0] <= 1e-5).float().mean() > 0.3  # about half the noise pushed black below 0
    assert (y[1] >= 1 - 1e-5).float().mean() > 0.3


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_the_same_seed_gives_the_same_output(name):
    x = _norm(_pixels())
    a = make_corruption(Corruption(name, 2, seed=3), MEAN, STD)(x)
    b = make_corruption(Corruption(name, 2, seed=3), MEAN, STD)(x.clone())
    assert torch.equal(a, b)


def test_the_noise_depends_on_the_seed():
    x = _norm(_pixels())
    a = make_corruption(Corruption("gaussian_noise", 2, seed=0), MEAN, STD)(x)
    b = make_corruption(Corruption("gaussian_noise", 2, seed=1), MEAN, STD)(x)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_the_result_does_not_depend_on_the_batch_size(name):
    """Noise is drawn per sample index: one batch of 6 equals batches of 1, 2 and 3 through one function."""
    x = _norm(_pixels(6))
    whole = make_corruption(Corruption(name, 3, seed=5), MEAN, STD)(x)
    fn = make_corruption(Corruption(name, 3, seed=5), MEAN, STD)
    parts = torch.cat([fn(x[:1]), fn(x[1:3]), fn(x[3:])])
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=0)


def test_each_sample_index_gets_its_own_noise():
    """The batch counter moves on: the same image at index 0 and index 1 is corrupted differently, and a
    new function starts again at index 0."""
    x = _norm(_pixels(1)).repeat(2, 1, 1, 1)
    fn = make_corruption(Corruption("gaussian_noise", 2), MEAN, STD)
    both = fn(x)
    assert not torch.allclose(both[0], both[1])
    assert not torch.allclose(fn(x[:1]), both[0])  # this call is at indices 2.. now
    assert torch.equal(make_corruption(Corruption("gaussian_noise", 2), MEAN, STD)(x[:1]), both[:1])


def _noise_size(sev: int) -> float:
    x = _pixels(4, 32)
    y = _unnorm(make_corruption(Corruption("gaussian_noise", sev), MEAN, STD)(_norm(x)))
    return float((y - x).std())


def _detail(x: torch.Tensor) -> float:
    """Mean absolute difference of horizontal neighbours: what a blur removes."""
    return float((x[..., 1:] - x[..., :-1]).abs().mean())


def test_a_higher_severity_corrupts_more():
    sizes = [_noise_size(s) for s in (1, 2, 3)]
    assert sizes[0] < sizes[1] < sizes[2], sizes
    for s, (got, sigma) in enumerate(zip(sizes, CORRUPTIONS["gaussian_noise"], strict=True), 1):
        # the added noise has the table's sigma (a little less where clipping at 0 and 1 cuts it off)
        assert 0.6 * sigma < got <= 1.05 * sigma, (s, got, sigma)

    x = _pixels(4, 32)
    details = [_detail(x)] + [_detail(_unnorm(make_corruption(Corruption("gaussian_blur", s), MEAN, STD)(_norm(x))))
                              for s in (1, 2, 3)]
    assert details[0] > details[1] > details[2] > details[3], details


def test_the_blur_is_in_pixels_of_the_input_resolution():
    """The same severity blurs a 32-pixel and a 96-pixel input by the same number of pixels: a one-pixel
    impulse spreads to the same width (up to the image border)."""
    widths = []
    for size in (32, 96):
        x = torch.zeros(1, 3, size, size)
        x[..., size // 2, size // 2] = 1.0
        y = _unnorm(make_corruption(Corruption("gaussian_blur", 2), MEAN, STD)(_norm(x)))[0, 0]
        widths.append(int((y[size // 2] > 1e-3).sum()))
    assert widths[0] == widths[1] > 1
