"""Argument conversion and checks shared by the ``qclip.metrics`` modules (private).

Every public metric converts its inputs with :func:`to_numpy` (numpy arrays,
lists, and torch tensors, without importing torch) and, when its
``validate_args`` switch is on, checks them here. Messages follow the house
wording: "Expected `arg` to be ..., but got ...".
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__: list[str] = []


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; a torch tensor is detached and moved to the CPU first."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):  # a torch.Tensor
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _shape_words(ndim: int | tuple[int, ...]) -> str:
    if isinstance(ndim, tuple):
        return " or ".join(f"{d}-D" for d in ndim)
    return f"{ndim}-D"


def float_array(
    x: Any,
    name: str,
    ndim: int | tuple[int, ...],
    validate: bool,
    *,
    finite: bool = True,
    dtype: Any = np.float64,
    nonempty: bool = True,
) -> np.ndarray:
    """Convert ``x`` to a float array of ``dtype``; check its rank, type and finiteness if ``validate``."""
    arr = to_numpy(x)
    if validate:
        allowed = ndim if isinstance(ndim, tuple) else (ndim,)
        if arr.ndim not in allowed:
            raise ValueError(
                f"Expected `{name}` to be a {_shape_words(ndim)} array, but got shape {tuple(arr.shape)}."
            )
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"Expected `{name}` to hold real numbers, but got dtype {arr.dtype}.")
        if nonempty and arr.size == 0:
            raise ValueError(f"Expected `{name}` to be non-empty, but got shape {tuple(arr.shape)}.")
    if dtype is None:  # keep a floating dtype, promote anything else to float64
        dtype = arr.dtype if arr.dtype.kind == "f" else np.float64
    arr = arr.astype(dtype, copy=False)
    if validate and finite and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"Expected `{name}` to be finite, but got {bad} NaN or infinite value(s).")
    return arr


def label_array(
    x: Any, name: str, validate: bool, *, n: int | None = None, n_classes: int | None = None
) -> np.ndarray:
    """Convert ``x`` to a 1-D int64 array of class ids; check length ``n`` and range ``[0, n_classes)``."""
    arr = to_numpy(x)
    if validate:
        if arr.ndim != 1:
            raise ValueError(f"Expected `{name}` to be a 1-D array, but got shape {tuple(arr.shape)}.")
        if arr.dtype.kind not in "iu":
            if (
                arr.dtype.kind == "f"
                and arr.size
                and np.all(np.isfinite(arr))
                and np.all(arr == np.round(arr))
            ):
                pass  # integral floats (e.g. labels that went through a float tensor) are accepted
            elif arr.size:
                raise TypeError(f"Expected `{name}` to hold integer class ids, but got dtype {arr.dtype}.")
        if n is not None and arr.shape[0] != n:
            raise ValueError(f"Expected `{name}` to have length {n}, but got length {arr.shape[0]}.")
    arr = arr.astype(np.int64, copy=False)
    if validate and n_classes is not None and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"Expected `{name}` to lie in [0, {n_classes - 1}], but got values in [{lo}, {hi}]."
            )
    return arr


def bool_array(x: Any, name: str, validate: bool, *, n: int | None = None) -> np.ndarray:
    """Convert ``x`` (bool or 0/1) to a 1-D bool array; check its length and values if ``validate``."""
    arr = to_numpy(x)
    if validate:
        if arr.ndim != 1:
            raise ValueError(f"Expected `{name}` to be a 1-D array, but got shape {tuple(arr.shape)}.")
        if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"Expected `{name}` to hold booleans or 0/1, but got values other than 0 and 1.")
        if n is not None and arr.shape[0] != n:
            raise ValueError(f"Expected `{name}` to have length {n}, but got length {arr.shape[0]}.")
    return arr.astype(bool, copy=False)


def any_array(x: Any, name: str, validate: bool, *, n: int | None = None) -> np.ndarray:
    """Convert ``x`` (group labels of any dtype) to a 1-D array; check its length if ``validate``."""
    arr = to_numpy(x)
    if validate:
        if arr.ndim != 1:
            raise ValueError(f"Expected `{name}` to be a 1-D array, but got shape {tuple(arr.shape)}.")
        if n is not None and arr.shape[0] != n:
            raise ValueError(f"Expected `{name}` to have length {n}, but got length {arr.shape[0]}.")
    return arr


def check_int(value: Any, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """Check that ``value`` is an integer in ``[lo, hi]`` and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Expected `{name}` to be an integer, but got {value!r} ({type(value).__name__}).")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else str(lo)
        hi_s = "inf" if hi is None else str(hi)
        raise ValueError(f"Expected `{name}` to be an integer in [{lo_s}, {hi_s}], but got {value}.")
    return value


def check_float(
    value: Any, name: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> float:
    """Check that ``value`` is a finite real number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"Expected `{name}` to be a finite real number, but got {value!r}.")
    value = float(value)
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and value > hi
    if below or above:
        left = "(" if lo_open else "["
        raise ValueError(f"Expected `{name}` to lie in {left}{lo}, {hi}], but got {value}.")
    return value


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """Check that ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"Expected `{name}` to be one of {choices}, but got {value!r}.")
    return value


def check_same_length(*pairs: tuple[str, np.ndarray]) -> None:
    """Check that all named arrays share their first dimension."""
    lengths = {name: arr.shape[0] for name, arr in pairs}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"`{k}` has {v}" for k, v in lengths.items())
        raise ValueError(
            f"Expected the same number of rows in {', '.join(f'`{k}`' for k in lengths)}, but got: {desc}."
        )


def is_mapping(x: Any) -> bool:
    return isinstance(x, Mapping)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Divide by the L2 norm along ``axis``; an all-zero vector stays all zero (no NaN)."""
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(norm == 0, 1.0, norm)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (max subtracted first)."""
    z = x - np.max(x, axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= np.sum(z, axis=axis, keepdims=True)
    return z


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log-sum-exp along ``axis`` (keeps no dimension)."""
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))
