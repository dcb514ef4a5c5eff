"""Per-sample agreement of a quantized model with its fp32 model: prediction flips, KL divergence, cosine.

Accuracy is a count: a quantizer can keep top-1 to the last sample while changing many individual
predictions, right→wrong on some and wrong→right on as many others. These metrics compare the two models
sample by sample on the same inputs, in the same order (sample ``i`` of both arrays is the same image):

* flip rate: the share of samples whose top-1 prediction changes (argmax, lowest index on ties, as
  :mod:`qclip.metrics.zeroshot`), split into right→wrong and wrong→right (a wrong→other-wrong change is a
  flip in neither part, so the parts sum to at most the flip rate);
* mean KL divergence ``KL(p_fp32 ‖ p_q)`` of the predictive distributions ``softmax(logits)``;
* mean cosine similarity of the two models' embeddings of each sample.

Source: the "churn" / prediction-flip measures of model-compression studies (e.g. Hooker et al. 2019,
"What Do Compressed Deep Neural Networks Forget?", and the KL-divergence and flip evaluations of LLM
quantization, Dutta et al. 2024, "Accuracy is Not All You Need").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import float_array, label_array, logsumexp

__all__ = ["prediction_flips", "mean_kl_divergence", "mean_cosine_similarity", "agreement_metrics"]


def _pair(ref: Any, quant: Any, name: str, validate: bool) -> tuple[np.ndarray, np.ndarray]:
    a = float_array(ref, f"ref_{name}", 2, validate)
    b = float_array(quant, f"quant_{name}", 2, validate)
    if validate and a.shape != b.shape:
        raise ValueError(f"Expected `ref_{name}` and `quant_{name}` of the same shape, but got {a.shape} and {b.shape}.")
    return a, b


def prediction_flips(ref_logits: Any, quant_logits: Any, labels: Any, validate_args: bool = True) -> dict[str, float]:
    r"""Share of samples whose top-1 prediction changes, and the right→wrong and wrong→right parts.

    With :math:`\hat y^{r}_i = \arg\max_c r_{ic}`, :math:`\hat y^{q}_i = \arg\max_c q_{ic}` (lowest index on
    ties) and labels :math:`y_i`:

    .. math::
        \mathrm{flip} = \frac1N\sum_i [\hat y^{r}_i \ne \hat y^{q}_i], \quad
        \mathrm{r{\to}w} = \frac1N\sum_i [\hat y^{r}_i = y_i \ne \hat y^{q}_i], \quad
        \mathrm{w{\to}r} = \frac1N\sum_i [\hat y^{r}_i \ne y_i = \hat y^{q}_i]

    so ``top1_q − top1_fp32 = w→r − r→w``. Source: module docstring.

    Args:
        ref_logits: ``[N, C]`` fp32 scores (logits, probabilities or cosines: only the argmax counts).
        quant_logits: ``[N, C]`` the quantized model's scores for the same samples.
        labels: ``[N]`` true classes.

    Returns:
        ``{"flip_rate", "flip_right_to_wrong", "flip_wrong_to_right"}``, each a share of N.

    Example:
        >>> r = np.array([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
        >>> q = np.array([[1.0, 2.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
        >>> prediction_flips(r, q, np.array([0, 0, 0, 1]))
        {'flip_rate': 0.5, 'flip_right_to_wrong': 0.25, 'flip_wrong_to_right': 0.25}
    """
    r, q = _pair(ref_logits, quant_logits, "logits", validate_args)
    y = label_array(labels, "labels", validate_args, n=r.shape[0], n_classes=r.shape[1])
    if r.shape[0] == 0:
        return {"flip_rate": float("nan"), "flip_right_to_wrong": float("nan"), "flip_wrong_to_right": float("nan")}
    pr, pq = np.argmax(r, axis=1), np.argmax(q, axis=1)
    changed = pr != pq
    return {
        "flip_rate": float(np.mean(changed)),
        "flip_right_to_wrong": float(np.mean(changed & (pr == y))),
        "flip_wrong_to_right": float(np.mean(changed & (pq == y))),
    }


def mean_kl_divergence(ref_logits: Any, quant_logits: Any, validate_args: bool = True) -> float:
    r"""Mean KL divergence of the quantized model's predictive distribution from the fp32 model's, in nats.

    .. math::
        \overline{\mathrm{KL}} = \frac1N \sum_i \sum_c p_{ic} (\log p_{ic} - \log q_{ic}), \qquad
        p_i = \mathrm{softmax}(r_i),\ q_i = \mathrm{softmax}(s_i)

    from log-softmax (``x − logsumexp(x)``, exact for large logits), terms with :math:`p_{ic} = 0` counted as
    0. Pass the logits the model predicts with (``logit_scale · cosine`` for CLIP). Source: Kullback & Leibler
    1951; the per-token KL evaluation of quantized models (Dutta et al. 2024).

    Example:
        >>> round(mean_kl_divergence(np.array([[0.0, 0.0]]), np.array([[np.log(3.0), 0.0]])), 4)
        0.1438
    """
    r, q = _pair(ref_logits, quant_logits, "logits", validate_args)
    if r.shape[0] == 0:
        return float("nan")
    log_p = r - logsumexp(r, axis=1)[:, None]
    log_q = q - logsumexp(q, axis=1)[:, None]
    p = np.exp(log_p)
    terms = np.where(p > 0, p * (log_p - log_q), 0.0)
    return float(np.mean(np.maximum(terms.sum(axis=1), 0.0)))  # clamp the rounding below 0 of equal rows


def mean_cosine_similarity(ref_emb: Any, quant_emb: Any, validate_args: bool = True) -> float:
    r"""Mean cosine similarity of each sample's fp32 and quantized embeddings.

    .. math:: \bar c = \frac1N \sum_i \frac{a_i \cdot b_i}{\lVert a_i\rVert\,\lVert b_i\rVert}

    A zero vector has cosine 0 with anything. Source: the embedding-similarity check of quantized
    encoders (cosine between the reference and the quantized representation of the same input).

    Example:
        >>> mean_cosine_similarity(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[2.0, 0.0], [1.0, 0.0]]))
        0.5
    """
    a, b = _pair(ref_emb, quant_emb, "emb", validate_args)
    if a.shape[0] == 0:
        return float("nan")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return float(np.mean(np.clip(cos, -1.0, 1.0)))


def agreement_metrics(ref_logits: Any, quant_logits: Any, labels: Any, ref_emb: Any, quant_emb: Any,
                      validate_args: bool = True) -> dict[str, float]:
    """:func:`prediction_flips`, ``mean_kl`` (:func:`mean_kl_divergence`) and ``embedding_cosine``
    (:func:`mean_cosine_similarity`) in one dict, the zero-shot cells' agreement metrics.

    Example:
        >>> x = np.array([[2.0, 1.0], [0.0, 1.0]])
        >>> agreement_metrics(x, x, np.array([0, 0]), x, x)["flip_rate"]
        0.0
    """
    out = prediction_flips(ref_logits, quant_logits, labels, validate_args)
    out["mean_kl"] = mean_kl_divergence(ref_logits, quant_logits, validate_args)
    out["embedding_cosine"] = mean_cosine_similarity(ref_emb, quant_emb, validate_args)
    return out
