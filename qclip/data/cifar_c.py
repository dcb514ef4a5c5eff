"""CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): corrupted CIFAR-10 test images as numpy arrays.

Layout (the release's ``CIFAR-10-C/`` folder, unchanged): ``<root>/<corruption>.npy``, one uint8 array
``[5 * N, 32, 32, 3]`` per corruption (``gaussian_noise.npy``, ``defocus_blur.npy``, ... 19 in the
release), the five severities stacked in order (rows ``(s - 1) * N .. s * N - 1`` are severity ``s``,
N = 10,000 in the release), and ``<root>/labels.npy``: the ``5 * N`` integer labels (the test labels,
repeated per severity). Any other ``.npy`` file of the root is a corruption; ``labels.npy`` is not.

Conventions:

* ``corruptions``: the names to read (default: every ``.npy`` of the root but ``labels``, sorted); a name
  with no file is a :class:`~qclip.errors.DataFormatError` listing the ones present.
* ``severities``: the levels 1..5 to keep (default all). ``per_severity`` is N, read from
  ``labels.npy`` (its length / 5); every corruption array must have exactly ``5 * N`` rows of
  ``32 x 32 x 3`` (any ``H x W x 3``, the same for all) uint8 pixels, else a DataFormatError naming the
  file and the shape found.
* arrays are opened with ``numpy.load(mmap_mode="r", allow_pickle=False)``: an object array (which would
  need unpickling) is refused, and nothing but the rows a cell embeds is read from disk.
* class names: the ``classnames`` option, else ``<root>/classnames.txt``, else CIFAR-10's ten names in
  label order (``meta['classnames_source']``); templates: the option, else ``<root>/templates.txt``, else
  ``["a photo of a {}."]``.
* table columns: ``path`` (the corruption's ``.npy``), ``index`` (its row), ``corruption``, ``severity``,
  ``label``; :meth:`ArrayClassificationSet.subset` selects one corruption and severity as its own set.
* a ``.npy`` that is a symlink leading out of the root is excluded (``path outside root``; an error with
  ``strict=True``), like every reader's paths (:class:`~qclip.data.base.DatasetRoot`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from qclip.data.base import ClassificationSet, DatasetRoot, Exclusions, PathProblem, announce
from qclip.data.prompts import resolve_names, resolve_templates
from qclip.errors import DataFormatError, DatasetUnavailable

__all__ = ["read_cifar_c", "ArrayClassificationSet", "LAYOUT", "layout_problem", "CIFAR10_CLASSES", "SEVERITIES"]

LAYOUT = ("<root>/<corruption>.npy (uint8 [5*N, H, W, 3], severities 1..5 stacked) and <root>/labels.npy "
          "([5*N] integer labels), as the CIFAR-10-C release")
#: CIFAR-10's classes in label order (Krizhevsky 2009, ``batches.meta``)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SEVERITIES = (1, 2, 3, 4, 5)
_LABELS = "labels.npy"


def layout_problem(root: Path, **_options) -> str | None:
    root = Path(root)
    if not root.is_dir():
        return f"root {root} does not exist or is not a folder"
    if not (root / _LABELS).is_file():
        return f"no {_LABELS} in {root}"
    if not any(p.suffix == ".npy" and p.name != _LABELS for p in root.iterdir()):
        return f"no corruption array (<corruption>.npy) in {root}"
    return None


def _load(path: str, what: str) -> np.ndarray:
    """Memory-map a ``.npy``; its header is read first, so an object array (which numpy could only unpickle)
    is refused before anything else of the file is touched."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)
            _, _, dtype = header(f)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFormatError(f"{path}: {what} cannot be read as a .npy file ({type(exc).__name__}: {exc})") from exc
    if dtype.hasobject:
        raise DataFormatError(f"{path}: {what} is an object array, which only unpickling could read; refused "
                              "(qclip never unpickles data it did not write)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFormatError(f"{path}: {what} cannot be read as a .npy file ({type(exc).__name__}: {exc})") from exc


@dataclass
class ArrayClassificationSet(ClassificationSet):
    """Zero-shot classification whose images are rows of uint8 ``[n, H, W, 3]`` arrays on disk.

    ``table`` columns: ``path`` (the array's file), ``index`` (its row), ``label`` and the dataset's own
    columns (``corruption``, ``severity``). Arrays are memory-mapped on first use.
    """

    _arrays: dict = field(default_factory=dict, repr=False, compare=False)

    def _array(self, path: str) -> np.ndarray:
        arr = self._arrays.get(path)
        if arr is None:
            arr = self._arrays[path] = _load(path, "the image array")
        return arr

    def load_image(self, i: int) -> Image.Image:
        path, index = self.table.at[i, "path"], int(self.table.at[i, "index"])
        try:
            pixels = np.asarray(self._array(path)[index])
        except (OSError, ValueError, IndexError) as exc:
            raise DataFormatError(f"dataset {self.name!r}, row {i}: {path} row {index}: {exc}") from exc
        return Image.fromarray(pixels, mode="RGB")

    def fingerprint(self) -> str:
        """sha256 over each array file's path, size and mtime and the rows selected (no pixel is read)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return cached
        h = hashlib.sha256()
        h.update(f"qclip-arrays-v1\0{self.name}\0{len(self.table)}\0".encode())
        for path in sorted(set(self.table["path"])):
            try:
                st = os.stat(path)
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}\0-1\0-1\n".encode())
        h.update(np.ascontiguousarray(self.table["index"].to_numpy(dtype=np.int64)).tobytes())
        h.update("\0".join(self.table["path"].astype(str)).encode())
        self.__dict__["_fingerprint"] = h.hexdigest()
        return self.__dict__["_fingerprint"]

    def subset(self, corruption: str, severity: int) -> ArrayClassificationSet:
        """The rows of one corruption at one severity, as a set named ``<name>/<corruption>-<severity>``."""
        sel = (self.table["corruption"] == corruption) & (self.table["severity"] == int(severity))
        if not sel.any():
            have = sorted({(c, int(s)) for c, s in zip(self.table["corruption"], self.table["severity"], strict=True)})
            raise KeyError(f"{self.name}: no rows for {corruption!r} at severity {severity}; present: {have}")
        return ArrayClassificationSet(
            name=f"{self.name}/{corruption}-{int(severity)}", root=self.root, table=self.table[sel].copy(),
            meta={**self.meta, "corruption": corruption, "severity": int(severity)},
            max_image_pixels=self.max_image_pixels, classnames=list(self.classnames),
            templates=list(self.templates), _arrays=self._arrays)


def read_cifar_c(
    root: str | os.PathLike,
    name: str = "cifar10c",
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    classnames: str | os.PathLike | Sequence[str] | None = None,
    templates: str | os.PathLike | Sequence[str] | None = None,
    strict: bool = False,
    max_image_pixels: int | None = None,
) -> ArrayClassificationSet:
    """Read a CIFAR-10-C-style folder of corruption arrays (see the module doc).

    ``max_image_pixels`` is accepted for a uniform config and unused: the arrays' shapes are checked
    instead. ``strict``: a corruption file leading out of the root is an error, not an exclusion.
    """
    guard = DatasetRoot(root)
    root = guard.path
    problem = layout_problem(root)
    if problem:
        raise DatasetUnavailable(f"{name}: {problem}; expected {LAYOUT}")
    bad_sev = [s for s in severities if s not in SEVERITIES]
    if bad_sev or not severities:
        raise DataFormatError(f"{name}: severities must be a non-empty subset of 1..5, got {list(severities)}")

    labels_path = guard.locate(_LABELS)
    labels = _load(labels_path, "labels.npy")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(f"{labels_path}: expected a 1-d integer array of labels, got dtype {labels.dtype} "
                              f"and shape {tuple(labels.shape)}")
    if len(labels) == 0 or len(labels) % len(SEVERITIES):
        raise DataFormatError(f"{labels_path}: {len(labels)} labels is not 5 severities x N images")
    per = len(labels) // len(SEVERITIES)

    names = resolve_names(classnames, "classnames")
    source = "option"
    if names is None and (root / "classnames.txt").is_file():
        names, source = resolve_names(root / "classnames.txt", "classnames"), "classnames.txt"
    if names is None:
        names, source = list(CIFAR10_CLASSES), "cifar10"
    lab = np.asarray(labels, dtype=np.int64)
    bad = sorted({int(v) for v in lab if not 0 <= v < len(names)})
    if bad:
        raise DataFormatError(f"{labels_path}: labels {bad[:10]} are outside 0..{len(names) - 1} "
                              f"({len(names)} class names, from {source})")

    present = sorted(p.stem for p in root.iterdir() if p.suffix == ".npy" and p.name != _LABELS)
    wanted = list(corruptions) if corruptions is not None else present
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataFormatError(f"{root}: no array for corruption(s) {missing}; present: {', '.join(present)}")

    excl = Exclusions(strict)
    frames = []
    shape = None
    for corruption in wanted:
        rel = f"{corruption}.npy"
        try:
            path = guard.locate(rel)
        except PathProblem as prob:
            excl.reject(root / rel, -1, prob.category, prob.detail, where=rel)
            continue
        arr = _load(path, f"corruption {corruption!r}")
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] != len(labels):
            raise DataFormatError(f"{path}: expected uint8 [{len(labels)}, H, W, 3] (5 severities x {per} images, "
                                  f"as labels.npy), got dtype {arr.dtype} and shape {tuple(arr.shape)}")
        if shape is None:
            shape = tuple(arr.shape[1:3])
        elif tuple(arr.shape[1:3]) != shape:
            raise DataFormatError(f"{path}: images are {arr.shape[1]}x{arr.shape[2]}, the other corruptions' "
                                  f"{shape[0]}x{shape[1]}")
        for s in severities:
            idx = np.arange((s - 1) * per, s * per)
            frames.append(pd.DataFrame({"path": path, "index": idx, "corruption": corruption, "severity": s,
                                        "label": lab[idx]}))
    cols = ["path", "index", "corruption", "severity", "label"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    table = table.astype({"index": "int64", "severity": "int64", "label": "int64"})
    meta = {"corruptions": ",".join(c for c in wanted if (table["corruption"] == c).any()),
            "severities": ",".join(str(s) for s in severities), "per_severity": per,
            "image_size": "x".join(str(v) for v in shape) if shape else "", "classnames_source": source}
    return announce(ArrayClassificationSet(name=name, root=root, table=table, exclusions=excl.frame(), meta=meta,
                                           max_image_pixels=None, classnames=list(names),
                                           templates=resolve_templates(templates, root)))
