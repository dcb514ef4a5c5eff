"""Group-annotated classification for worst-group accuracy (Waterbirds-style metadata).

Layout: ``<root>/metadata.csv`` (name configurable) and the images at paths relative
to the root. Columns, by name (the first present of each alias list):

* image: ``img_filename`` | ``image`` | ``filename``;
* label: ``y`` | ``label`` (integers 0..K-1);
* spurious attribute: ``place`` | ``group`` (a ``group`` column is only used when there
  is no ``place``; Waterbirds' own columns are ``img_id, img_filename, y, split, place,
  place_filename``);
* optional ``split``: integers (Waterbirds: 0 train, 1 val, 2 test) or the names
  ``train``/``val``/``valid``/``validation``/``test``.

Conventions:

* ``split='test'`` (default) keeps the rows whose split is 2/test when the column exists;
  ``'train'``/``'val'``/an int select another; ``None`` or ``'all'`` keeps every row.
  Rows of other splits are a selection, not an exclusion: they are counted in
  ``meta['split_filtered']``.
* group id = ``label * P + place_index`` with P the number of distinct attribute values
  in the whole file and ``place_index`` their sorted position, so Waterbirds gets the
  usual 0 landbird/land, 1 landbird/water, 2 waterbird/land, 3 waterbird/water.
  ``SpuriousSet.groups`` maps id -> ``(label, place)``. ``place`` stays an int when
  every value is an integer, else a string.
* normal / counter split (CounterAnimal's common / counter backgrounds, for the relative spurious gap):
  a class's *common* place is the attribute value it carries most often over every row of the file,
  all splits (Waterbirds' training split pairs landbirds with land and waterbirds with water, its test
  split balances them within each class); ties go to the first value in sorted order.
  ``meta['common_place']`` maps label -> place, ``meta['normal_groups']`` lists the groups of a label on
  its common place (Waterbirds: 0 and 3); the other groups are the counter split.
* class names: the ``classnames`` option (list or file), else ``<root>/classnames.txt``,
  else the label values as strings (``meta['classnames_source'] = 'labels'``).
  Templates: the option, else ``<root>/templates.txt``, else ``["a photo of a {}."]``.
* an image missing on disk is excluded (``image file missing``, naming it), as is an
  image listed a second time (``duplicate image``, naming the first row) and an image
  path that leads out of the root -- absolute, ``..``, a symlink; resolved by
  :class:`~qclip.data.base.DatasetRoot`, backslashes counting as separators -- (``path
  outside root``; an error with ``strict=True``); a non-integer label or an unknown
  split name raises :class:`~qclip.errors.DataFormatError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from qclip.data.base import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DatasetRoot,
    Exclusions,
    PathProblem,
    SpuriousSet,
    announce,
    pixel_limit,
    read_csv,
)
from qclip.data.prompts import resolve_names, resolve_templates
from qclip.errors import DataFormatError, DatasetUnavailable

__all__ = ["read_spurious", "LAYOUT", "layout_problem", "SPLITS"]

LAYOUT = "<root>/metadata.csv with columns img_filename, y, place (optional split) and the images under <root>/"
SPLITS = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
_ALIASES = {"img_filename": ("image", "filename"), "y": ("label",), "place": ("group",)}


def layout_problem(root: Path, metadata: str = "metadata.csv", **_options) -> str | None:
    root = Path(root)
    if not root.is_dir():
        return f"root {root} does not exist or is not a folder"
    meta = Path(metadata) if Path(metadata).is_absolute() else root / metadata
    if not meta.is_file():
        return f"no metadata file {meta}"
    return None


def _split_id(value: str | int, path: Path | str, i: int) -> int:
    v = str(value).strip().lower()
    if v.lstrip("-").isdigit():
        return int(v)
    if v in SPLITS:
        return SPLITS[v]
    where = f"row {i} (line {i + 2}) column 'split'" if i >= 0 else "split option"
    raise DataFormatError(f"{path}: {where}: unknown split {value!r}; expected an integer or one of {', '.join(SPLITS)}")


def _common_places(labels: list[int], places: list, distinct: list) -> dict[int, int | str]:
    """label -> its most frequent place over every row of the file (ties: the first in sorted order)."""
    counts: dict[int, dict] = {}
    for y, p in zip(labels, places, strict=True):
        counts.setdefault(y, dict.fromkeys(distinct, 0))[p] += 1
    return {y: max(distinct, key=lambda p, c=c: (c[p], -distinct.index(p))) for y, c in sorted(counts.items())}


def read_spurious(
    root: str | os.PathLike,
    name: str = "waterbirds",
    metadata: str = "metadata.csv",
    split: str | int | None = "test",
    classnames: str | os.PathLike | Sequence[str] | None = None,
    templates: str | os.PathLike | Sequence[str] | None = None,
    strict: bool = False,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> SpuriousSet:
    """Read a Waterbirds-style metadata CSV as a :class:`SpuriousSet` (see the module doc).

    Table columns: ``path, image, label, place, group`` (+ ``split`` when present).
    ``strict``: an image path leading out of the root is an error; ``max_image_pixels``: the bomb limit.
    """
    guard = DatasetRoot(root)
    root = guard.path
    problem = layout_problem(root, metadata)
    if problem:
        raise DatasetUnavailable(f"{name}: {problem}; expected {LAYOUT}")
    csv_path = Path(metadata) if Path(metadata).is_absolute() else root / metadata
    df = read_csv(csv_path, required=("img_filename", "y", "place"), aliases=_ALIASES)

    labels = []
    for i, v in enumerate(df["y"]):
        s = v.strip()
        if not s.lstrip("-").isdigit():
            raise DataFormatError(f"{csv_path}: row {i} (line {i + 2}) column 'y': expected an integer label, got {v!r}")
        labels.append(int(s))
    places_raw = [p.strip() for p in df["place"]]
    numeric = all(p.lstrip("-").isdigit() for p in places_raw)
    places: list[int | str] = [int(p) for p in places_raw] if numeric else places_raw
    distinct = sorted(set(places))
    place_index = {p: k for k, p in enumerate(distinct)}
    n_places = len(distinct)

    names = resolve_names(classnames, "classnames")
    source = "option"
    if names is None and (root / "classnames.txt").is_file():
        names, source = resolve_names(root / "classnames.txt", "classnames"), "classnames.txt"
    if names is None:
        names, source = [str(v) for v in range(max(labels, default=-1) + 1)], "labels"
    bad = [v for v in set(labels) if not 0 <= v < len(names)]
    if bad:
        raise DataFormatError(f"{csv_path}: labels {sorted(bad)} are outside 0..{len(names) - 1} ({len(names)} class names)")

    want = None if split is None or str(split).lower() == "all" else _split_id(split, "read_spurious", -1)
    has_split = "split" in df.columns
    excl = Exclusions(strict)
    rows = []
    first: dict[str, int] = {}
    filtered = 0
    for i, rec in enumerate(df.to_dict("records")):
        sid = _split_id(rec["split"], csv_path, i) if has_split else None
        if want is not None and has_split and sid != want:
            filtered += 1
            continue
        image = rec["img_filename"].strip()
        try:
            path = guard.locate(image)
        except PathProblem as prob:
            excl.reject(csv_path, i, prob.category, prob.detail, where=f"row {i} (line {i + 2})")
            continue
        if path in first:
            excl.add(csv_path, i, "duplicate image", f"{image!r} (first at row {first[path]})")
            continue
        if not os.path.isfile(path):
            excl.add(csv_path, i, "image file missing", repr(image))
            continue
        first[path] = i
        row = {"path": path, "image": image, "label": labels[i], "place": places[i],
               "group": labels[i] * n_places + place_index[places[i]]}
        if has_split:
            row["split"] = sid
        rows.append(row)
    cols = ["path", "image", "label", "place", "group"] + (["split"] if has_split else [])
    table = pd.DataFrame(rows, columns=cols).astype({"label": "int64", "group": "int64"})
    groups = {y * n_places + k: (y, p) for y in range(len(names)) for k, p in enumerate(distinct)}
    common = _common_places(labels, places, distinct)
    normal = sorted(y * n_places + place_index[p] for y, p in common.items())
    meta = {"metadata": str(csv_path), "split": "all" if want is None else want, "split_filtered": filtered,
            "classnames_source": source, "num_groups": len(groups), "common_place": common,
            "normal_groups": normal}
    return announce(SpuriousSet(name=name, root=root, table=table, exclusions=excl.frame(), meta=meta,
                                max_image_pixels=pixel_limit(max_image_pixels), classnames=list(names),
                                templates=resolve_templates(templates, root), groups=groups))
