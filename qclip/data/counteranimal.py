"""CounterAnimal (Wang et al., NeurIPS 2024, "Do CLIP Models Always Generalize Better than ImageNet
Models?"): animal photos split by background into a *common* and a *counter* split, for the spurious gap.

Layout (the release's folders, e.g. ``LAION-final/``): ``<root>/<class index> <class name>/`` per class,
the index being the ImageNet-1k class index (``"2 great white shark"``), and inside it one folder per
split and background, ``common-<background>`` (the backgrounds the class is usually photographed on)
and ``counter-<background>`` (unusual ones), holding the images (found recursively, any extension of
:data:`~qclip.data.base.IMAGE_EXTENSIONS`).

Conventions:

* class folders must start with an integer index and a space; one that does not is a
  :class:`~qclip.errors.DataFormatError` naming it. ``classnames='imagenet'`` (default): the label space
  is open_clip's 1000 ImageNet class names and the index is the label (every index must be < 1000);
  ``classnames='folders'``: the label space is the class folders, in index order, named by their folder
  names after the index (``meta['label_mapping']``).
* split folders: the name up to the first ``-`` or ``_`` is ``common`` or ``counter`` (any case), the
  rest is the background (``common-water``, ``counter_grass``); any other folder of a class folder, and
  any file there, is excluded and counted (``not a common-/counter- folder``, ``not in a common-/counter-
  folder``), as is a file that is no image inside a split folder (``not an image file``).
* ``split``: ``'common'``, ``'counter'`` or ``'all'`` (default, both): the rows of the other split are a
  selection (``meta['split_filtered']``), not an exclusion. :meth:`CounterAnimalSet.split_set` gives one
  split of a set read with both as its own :class:`~qclip.data.base.ClassificationSet`.
* templates: the option, else ``<root>/templates.txt``, else the 80 OpenAI ImageNet templates for the
  ImageNet label space and ``["a photo of a {}."]`` for the folders'.
* symlinks are followed while they stay inside the root (:class:`~qclip.data.base.DatasetRoot`); one
  leading out is excluded as ``path outside root`` (an error with ``strict=True``).

Table columns: ``path, label, split, background, folder``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qclip.data.base import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ClassificationSet,
    DatasetRoot,
    Exclusions,
    announce,
    is_image_file,
    pixel_limit,
)
from qclip.data.prompts import imagenet_classnames, resolve_templates
from qclip.errors import DataFormatError, DatasetUnavailable

__all__ = ["read_counteranimal", "CounterAnimalSet", "LAYOUT", "layout_problem", "SPLITS"]

LAYOUT = ("<root>/<ImageNet class index> <class name>/{common,counter}-<background>/<image>, "
          "as the CounterAnimal release")
SPLITS = ("common", "counter")
_CLASS_RE = re.compile(r"^(\d+)\s+(\S.*)$")
_SPLIT_RE = re.compile(r"^(common|counter)[-_](.+)$", re.IGNORECASE)


def layout_problem(root: Path, **_options) -> str | None:
    root = Path(root)
    if not root.is_dir():
        return f"root {root} does not exist or is not a folder"
    if not any(p.is_dir() and _CLASS_RE.match(p.name) for p in root.iterdir()):
        return f"no class folder named '<index> <name>' in {root}"
    return None


@dataclass
class CounterAnimalSet(ClassificationSet):
    """Classification rows with ``split`` (``common``/``counter``) and ``background`` columns."""

    def split_set(self, split: str) -> ClassificationSet:
        """The rows of one split as a :class:`ClassificationSet` named ``<name>/<split>``."""
        if split not in SPLITS:
            raise ValueError(f"Expected split in {SPLITS}, but got {split!r}")
        rows = self.table[self.table["split"] == split]
        if rows.empty:
            raise KeyError(f"{self.name}: no {split!r} rows (read with split={self.meta.get('split')!r})")
        return ClassificationSet(name=f"{self.name}/{split}", root=self.root, table=rows.copy(),
                                 meta={**self.meta, "split": split}, max_image_pixels=self.max_image_pixels,
                                 classnames=list(self.classnames), templates=list(self.templates))


def read_counteranimal(
    root: str | os.PathLike,
    name: str = "counteranimal",
    split: str = "all",
    classnames: str = "imagenet",
    templates: str | os.PathLike | Sequence[str] | None = None,
    strict: bool = False,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> CounterAnimalSet:
    """Read a CounterAnimal-style folder tree as a :class:`CounterAnimalSet` (see the module doc)."""
    guard = DatasetRoot(root)
    root = guard.path
    problem = layout_problem(root)
    if problem:
        raise DatasetUnavailable(f"{name}: {problem}; expected {LAYOUT}")
    if split not in (*SPLITS, "all"):
        raise DataFormatError(f"{name}: split must be 'common', 'counter' or 'all', got {split!r}")
    if classnames not in ("imagenet", "folders"):
        raise DataFormatError(f"{name}: classnames must be 'imagenet' or 'folders', got {classnames!r}")

    excl = Exclusions(strict)
    classes: list[tuple[int, str, str, str]] = []  # (index, name, folder, real path)
    for folder, real in guard.folders(excl=excl):
        m = _CLASS_RE.match(folder)
        if not m:
            raise DataFormatError(f"{root}: class folder {folder!r} does not start with its class index and a "
                                  f"space (e.g. '2 great white shark'); expected {LAYOUT}")
        classes.append((int(m.group(1)), m.group(2).strip(), folder, real))
    classes.sort()
    seen: dict[int, str] = {}
    for idx, _, folder, _ in classes:
        if idx in seen:
            raise DataFormatError(f"{root}: class index {idx} is used by two folders, {seen[idx]!r} and {folder!r}")
        seen[idx] = folder

    if classnames == "imagenet":
        names = imagenet_classnames()
        bad = [f for i, _, f, _ in classes if i >= len(names)]
        if bad:
            raise DataFormatError(f"{root}: class folders {bad[:5]} have an index >= {len(names)} (ImageNet-1k); "
                                  "use classnames = 'folders' for another label space")
        label_of = {folder: idx for idx, _, folder, _ in classes}
        tmpl = resolve_templates(templates if templates is not None or (root / "templates.txt").is_file()
                                 else "openai", root)
    else:
        names = [n for _, n, _, _ in classes]
        label_of = {folder: k for k, (_, _, folder, _) in enumerate(classes)}
        tmpl = resolve_templates(templates, root)

    rows = []
    filtered = 0
    for _, _, folder, real in classes:
        for sub, sub_real in guard.folders(folder, excl=excl):
            m = _SPLIT_RE.match(sub)
            if not m:
                excl.add(sub_real, -1, "not a common-/counter- folder", f"{folder}/{sub}")
                continue
            which, background = m.group(1).lower(), m.group(2)
            for fn, path in guard.walk(sub_real, excl):
                if not is_image_file(fn):
                    excl.add(path, -1, "not an image file", guard.relative(path))
                elif split != "all" and which != split:
                    filtered += 1
                else:
                    rows.append((path, label_of[folder], which, background, folder))
        with os.scandir(real) as it:
            for e in it:
                if e.is_file(follow_symlinks=False):
                    excl.add(e.path, -1, "not in a common-/counter- folder", guard.relative(e.path))
    table = pd.DataFrame(rows, columns=["path", "label", "split", "background", "folder"]).astype({"label": "int64"})
    meta = {"label_mapping": "imagenet-index" if classnames == "imagenet" else "folders", "split": split,
            "split_filtered": filtered, "num_classes": len(names), "num_folders": len(classes),
            "common": int((table["split"] == "common").sum()), "counter": int((table["split"] == "counter").sum())}
    return announce(CounterAnimalSet(name=name, root=root, table=table, exclusions=excl.frame(), meta=meta,
                                     max_image_pixels=pixel_limit(max_image_pixels), classnames=list(names),
                                     templates=tmpl))
