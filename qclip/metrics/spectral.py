"""Spectral view of quantization noise in embeddings: where, in the reference's principal directions, the noise lands.

Given reference features ``X`` [N, D] (fp32 model) and quantized features ``Y``
[N, D] of the same inputs:

1. Centre both by their own mean: ``Xc = X − mean(X)``, ``Yc = Y − mean(Y)``.
   The mean shift ``‖mean(Y) − mean(X)‖²`` is reported separately, relative to
   the reference's mean squared norm per sample (``‖Xc‖²_F / N``).
2. SVD ``Xc = U S Vᵀ`` (min(N, D) singular values, descending). Singular values
   ``s_i <= eps · s_max · max(N, D)`` (numpy's ``matrix_rank`` tolerance, ``eps`` the
   float64 machine epsilon) are rounding noise and count as zero: centring alone
   makes ``Xc`` rank-deficient when N <= D. ``r`` is the number left, the numerical
   rank. Energy per rank ``e_i = s_i² / Σ_j s_j²``.
3. Noise ``E = Yc − Xc``, projected on the reference's right singular vectors:
   ``n_i = ‖E v_i‖²``. Per rank, noise-to-signal ``NSR_i = n_i / s_i²`` for the
   ``r`` non-zero ranks, NaN for the zero ones (a ratio over a zero singular value
   is undefined, not huge); per band of ranks B, ``NSR_B = Σ_{i∈B} n_i / Σ_{i∈B} s_i²``.
   Bands are fractions of the numerical rank, ``(lo, hi)`` → ranks
   ``ceil(lo·r) .. ceil(hi·r) − 1``; the default splits the top 10%, 10–50% and
   50–100% of ranks. An empty band gives NaN.
4. Effective rank (Roy & Vetterli 2007, "The effective rank: a measure of
   effective dimensionality"): ``erank = exp(H(p))``, ``p_i = s_i / Σ_j s_j``,
   ``H = −Σ p_i ln p_i``; ``1 <= erank <= rank``.

Noise outside the span of the reference's ``r`` non-zero singular directions
(possible when N <= D) is reported as ``noise_outside_span`` (share of ``‖E‖²_F``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validation import float_array

__all__ = ["effective_rank", "spectral_analysis", "per_rank_sqnr", "sqnr_from_analysis", "band_means",
           "rank_band_accuracy", "DEFAULT_BANDS"]

DEFAULT_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.5), (0.5, 1.0))


def _nonzero(s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.where(s > _rank_tolerance(s, shape), s, 0.0)


def _erank(s: np.ndarray) -> float:
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def effective_rank(feats: Any, center: bool = True, validate_args: bool = True) -> float:
    r"""Effective rank of a feature matrix (Roy & Vetterli 2007).

    .. math:: \mathrm{erank} = \exp\Big(-\sum_i p_i \ln p_i\Big), \quad p_i = \frac{s_i}{\sum_j s_j}

    with ``s`` the singular values of the (by default centred) ``feats`` [N, D], those at or below
    ``eps · s_max · max(N, D)`` counted as zero. It lies in ``[1, rank]`` (0 for an all-zero matrix).

    Example:
        >>> round(effective_rank(np.diag([1.0, 1.0, 0.0]), center=False), 6)
        2.0
    """
    x = float_array(feats, "feats", 2, validate_args)
    if center:
        x = x - x.mean(axis=0, keepdims=True)
    return _erank(_nonzero(np.linalg.svd(x, compute_uv=False), x.shape))


def _rank_tolerance(s: np.ndarray, shape: tuple[int, int]) -> float:
    """``eps · s_max · max(N, D)``: singular values at or below it count as zero (numpy's matrix_rank)."""
    return float(np.finfo(np.float64).eps * (s.max() if s.size else 0.0) * max(shape))


def _band_slices(bands: Sequence[tuple[float, float]], r: int) -> list[slice]:
    return [slice(int(np.ceil(lo * r)), int(np.ceil(hi * r))) for lo, hi in bands]


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return float(num / den)
    return float("inf") if num > 0 else float("nan")


def spectral_analysis(
    ref_feats: Any,
    q_feats: Any,
    bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
    validate_args: bool = True,
) -> dict[str, Any]:
    r"""Noise-to-signal ratio of quantization noise per band of the reference's principal ranks.

    .. math:: \mathrm{NSR}_B = \frac{\sum_{i \in B} \lVert (Y_c - X_c) v_i \rVert^2}{\sum_{i \in B} s_i^2}

    See the module docstring for the steps. Source: PCA/SVD noise analysis; effective
    rank of Roy & Vetterli 2007.

    Args:
        ref_feats: ``[N, D]`` reference (fp32) features.
        q_feats: ``[N, D]`` quantized features of the same inputs.
        bands: ``(lo, hi)`` rank fractions with ``0 <= lo < hi <= 1``.

    Returns:
        dict with arrays ``singular_values`` [r], ``energy`` [r] (``s²/Σs²``),
        ``noise_energy`` [r] (``n_i``), ``nsr_per_rank`` [r] (NaN at numerically zero
        singular values), ``band_nsr`` [len(bands)],
        ``bands`` (as given) and floats ``nsr_total`` (``‖E‖²_F / ‖Xc‖²_F``),
        ``noise_outside_span``, ``mean_shift``, ``effective_rank_ref``,
        ``effective_rank_q``, plus ``nsr_band_<i>`` = ``band_nsr[i]``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(50, 4)) * np.array([10.0, 3.0, 1.0, 0.1])
        >>> r = spectral_analysis(x, x)
        >>> r["nsr_total"], r["band_nsr"].tolist()
        (0.0, [0.0, 0.0, 0.0])
    """
    x = float_array(ref_feats, "ref_feats", 2, validate_args)
    y = float_array(q_feats, "q_feats", 2, validate_args)
    bands = tuple((float(lo), float(hi)) for lo, hi in bands)
    if validate_args:
        if x.shape != y.shape:
            raise ValueError(
                f"Expected `q_feats` to have the shape of `ref_feats` {tuple(x.shape)}, but got {tuple(y.shape)}."
            )
        for lo, hi in bands:
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"Expected every band to satisfy 0 <= lo < hi <= 1, but got ({lo}, {hi}).")
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    noise = yc - xc
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    s = np.where(s > _rank_tolerance(s, x.shape), s, 0.0)
    rank = int(np.count_nonzero(s))
    signal = s**2
    total_signal = float(signal.sum())
    noise_energy = np.sum((noise @ vt.T) ** 2, axis=0)
    total_noise = float(np.sum(noise**2))
    with np.errstate(divide="ignore", invalid="ignore"):
        energy = signal / total_signal if total_signal > 0 else np.full_like(signal, np.nan)
        nsr_rank = np.where(signal > 0, noise_energy / np.where(signal > 0, signal, 1.0), np.nan)
    band_nsr = np.array(
        [
            _ratio(float(noise_energy[sl].sum()), float(signal[sl].sum()))
            if sl.stop > sl.start
            else float("nan")
            for sl in _band_slices(bands, rank)
        ]
    )
    out: dict[str, Any] = {
        "singular_values": s,
        "energy": energy,
        "noise_energy": noise_energy,
        "nsr_per_rank": nsr_rank,
        "band_nsr": band_nsr,
        "bands": bands,
        "nsr_total": _ratio(total_noise, total_signal),
        "noise_outside_span": float(max(0.0, 1.0 - noise_energy[:rank].sum() / total_noise))
        if total_noise > 0
        else 0.0,
        "mean_shift": _ratio(float(np.sum((my - mx) ** 2)), total_signal / x.shape[0]),
        "effective_rank_ref": _erank(s),
        "effective_rank_q": _erank(_nonzero(np.linalg.svd(yc, compute_uv=False), y.shape)),
    }
    for i, value in enumerate(band_nsr):
        out[f"nsr_band_{i}"] = float(value)
    return out


def per_rank_sqnr(ref_feats: Any, q_feats: Any, validate_args: bool = True) -> np.ndarray:
    r"""Signal-to-quantization-noise ratio per principal rank of the reference, in dB.

    .. math:: \mathrm{SQNR}_i = 10 \log_{10} \frac{s_i^2}{\lVert (Y_c - X_c) v_i \rVert^2}

    The steps of :func:`spectral_analysis` (centre both, SVD of the reference ``X_c = U S V^T``, noise
    projected on its right singular vectors ``v_i``), as in "Less Precise Can Be More Reliable"
    (Bouguerra et al. 2026, spectral analysis: the quantized features projected on the fp32 basis; an
    SQNR that decays with rank means quantization acts as a low-pass filter). ``+inf`` where a rank
    carries no noise (identical features), NaN at numerically zero singular values. Returns ``[r]``.

    Example:
        >>> x = np.diag([4.0, 2.0, 1.0]).repeat(2, axis=0) * np.array([1, -1] * 3)[:, None]
        >>> per_rank_sqnr(x, x).tolist()
        [inf, inf, inf]
    """
    return sqnr_from_analysis(spectral_analysis(ref_feats, q_feats, bands=((0.0, 1.0),), validate_args=validate_args))


def sqnr_from_analysis(analysis: dict, validate_args: bool = True) -> np.ndarray:
    """:func:`per_rank_sqnr` from an existing :func:`spectral_analysis` result (its ``singular_values`` and
    ``noise_energy``), so a caller that has one does not decompose the features again.

    Example:
        >>> sqnr_from_analysis({"singular_values": np.array([10.0, 1.0]), "noise_energy": np.array([1.0, 1.0])}).tolist()
        [20.0, 0.0]
    """
    if validate_args and not {"singular_values", "noise_energy"} <= set(analysis):
        raise ValueError(f"Expected a spectral_analysis result with singular_values and noise_energy, but got "
                         f"the keys {sorted(analysis)}")
    s2, n = np.asarray(analysis["singular_values"]) ** 2, np.asarray(analysis["noise_energy"])
    with np.errstate(divide="ignore", invalid="ignore"):
        sqnr = np.where(n > 0, 10.0 * np.log10(np.where(n > 0, s2 / np.where(n > 0, n, 1.0), 1.0)), np.inf)
    return np.where(s2 > 0, sqnr, np.nan)[: int(np.count_nonzero(s2))]


def band_means(per_rank: Any, bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
               validate_args: bool = True) -> np.ndarray:
    r"""Mean of the finite values of a per-rank array within each band of ranks.

    .. math:: \bar x_B = \frac{1}{|B_f|} \sum_{i \in B_f} x_i, \quad B_f = \{i \in B : x_i \text{ finite}\}

    Bands are rank fractions as in :func:`spectral_analysis` (``[ceil(lo r), ceil(hi r))`` of the ``r``
    ranks); a band with no finite value (empty, or every rank noise-free: SQNR ``+inf``) gives NaN. Used for
    the per-band SQNR in dB (Bouguerra et al. 2026, spectral analysis). Returns ``[len(bands)]``.

    Example:
        >>> band_means([30.0, 20.0, 10.0, np.inf], bands=((0.0, 0.5), (0.5, 1.0))).tolist()
        [25.0, 10.0]
    """
    x = np.asarray(per_rank, dtype=np.float64)
    if validate_args and x.ndim != 1:
        raise ValueError(f"Expected per_rank to be 1-D, but got shape {x.shape}")
    x = x.reshape(-1)
    out = []
    for sl in _band_slices(tuple((float(lo), float(hi)) for lo, hi in bands), len(x)):
        part = x[sl]
        part = part[np.isfinite(part)]
        out.append(float(part.mean()) if len(part) else float("nan"))
    return np.asarray(out)


def rank_band_accuracy(
    ref_feats: Any,
    feats: Any,
    class_embeds: Any,
    labels: Any,
    bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
    validate_args: bool = True,
) -> np.ndarray:
    r"""Zero-shot top-1 accuracy of ``feats`` restricted to bands of the reference's principal ranks.

    For each band ``B`` (rank fractions as in :func:`spectral_analysis`): project the features on the span
    of the reference's right singular vectors ``V_B`` (of the centred ``ref_feats``),
    :math:`\hat y = \arg\max_k (F V_B V_B^T) w_k`, and score against ``labels``. The accuracy of the top
    ranks against the tail shows where the class information of a (quantized) model lives (Bouguerra et
    al. 2026, spectral analysis). An empty band gives NaN. Returns ``[len(bands)]``.

    Args:
        ref_feats: ``[N, D]`` reference (fp32) features: they define the basis.
        feats: ``[M, D]`` features to classify (the reference's own, or a quantized model's).
        class_embeds: ``[K, D]`` class embeddings (text classifier).
        labels: ``[M]`` class ids.

    Example:
        >>> x = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
        >>> f = [[2.0, 1.0], [1.0, 2.0]]  # both of class 0: the top rank (x) says so, the tail (y) does not
        >>> rank_band_accuracy(x, f, np.eye(2), [0, 0], bands=((0.0, 0.5), (0.5, 1.0))).tolist()
        [1.0, 0.0]
    """
    from ._validation import label_array

    x = float_array(ref_feats, "ref_feats", 2, validate_args)
    f = float_array(feats, "feats", 2, validate_args)
    w = float_array(class_embeds, "class_embeds", 2, validate_args)
    y = label_array(labels, "labels", validate_args, n=f.shape[0], n_classes=w.shape[0])
    if validate_args and not (x.shape[1] == f.shape[1] == w.shape[1]):
        raise ValueError(f"Expected one feature width, but got ref_feats {x.shape}, feats {f.shape}, "
                         f"class_embeds {w.shape}.")
    _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    rank = int(np.count_nonzero(s > _rank_tolerance(s, x.shape)))
    out = []
    for sl in _band_slices(tuple((float(lo), float(hi)) for lo, hi in bands), rank):
        if sl.stop <= sl.start:
            out.append(float("nan"))
            continue
        v = vt[sl]
        logits = (f @ v.T) @ (v @ w.T)
        out.append(float(np.mean(np.argmax(logits, axis=1) == y)))
    return np.array(out)
