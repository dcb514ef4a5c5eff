"""FACET (Gustafson et al., ICCV 2023): person crops with class and perceived attributes.

Layout: ``<root>/annotations/annotations.csv`` (one row per annotated person; several
rows may share a ``filename``) and images flat in ``<root>/imgs_1/``, ``imgs_2/``,
``imgs_3/`` (any other ``imgs_*`` folder present is searched too, in sorted order; a
file found in several counts in ``meta['duplicate_files']`` and the first wins).
``filename`` is resolved inside each folder by :class:`~qclip.data.base.DatasetRoot`: a
name that leads out of the root (absolute, ``..``, a symlink, in any ``imgs_*``
folder) is an error naming file, row and value, or with ``strict=False`` an exclusion
(``path outside root``); an ``imgs_*`` folder that is itself a link out of the root is
not searched (an exclusion with row -1, or the error).

Columns read (by name; every other column -- hair, lighting, visibility, accessories
-- is tolerated and ignored): ``person_id, filename, class1, class2 (optional),
bounding_box, gender_presentation_{masc,fem,non_binary,na},
skin_tone_1..skin_tone_10, skin_tone_na, age_presentation_{young,middle,older,na}``.
A missing one raises :class:`~qclip.errors.DataFormatError` naming file and column.

Conventions chosen by qclip:

* ``class1`` is matched case-insensitively after stripping; an unknown value raises
  ``DataFormatError`` naming file, row and value (``strict=False``: excluded instead).
  ``classnames=`` (list or file) replaces the shipped 52 classes, so a synthetic
  FACET-format world with its own person classes reads through the same code.
  ``label`` = index of ``class1``; ``FacetSet.classnames`` has ``_`` -> space.
* ``bounding_box`` is a JSON object (single quotes tolerated) with ``x, y, width,
  height`` (floats tolerated, extra keys such as ``dummy`` ignored). The crop is
  ``floor(x) .. ceil(x + width)`` (same for y), clipped to the image (whose size is
  read from the file header only). A clipped box counts in ``meta['box_clipped']``;
  ``width`` or ``height`` <= 0 is excluded as ``degenerate box``, a box with no
  overlap with the image as ``box outside image``, and a clipped box narrower or
  lower than ``min_box`` pixels as ``box too small``, each reason naming the box. An
  unparsable box is an error (``strict=False``: excluded). An image whose header cannot
  be read (empty, not an image, a decompression bomb over ``max_image_pixels``) is an
  error naming file, row and image (``strict=False``: excluded as ``unreadable image``,
  every row of that image); pixels are decoded later, by :meth:`load_image`.
* a ``person_id`` seen before is excluded (``duplicate person_id``, naming the id and
  the row that had it first); a missing image as ``image file not found in imgs_*/``
  naming the file name.
* gender: exactly one of the four 0/1 columns set -> ``masc``/``fem``/``non_binary``/
  ``na``; none or several -> ``'na'`` (counted in ``meta['gender_ambiguous']``).
  age likewise (``young``/``middle``/``older``/``na``, ``meta['age_ambiguous']``).
* skin tone (``skin_rule``), from the annotator vote counts: ``'plurality'`` (default)
  = the Monk tone with the most votes; a tie for the most, no tone vote at all, or
  ``skin_tone_na`` votes >= the top tone's votes give 0 (unknown). ``'median'`` = the
  lower median tone of all tone votes (na votes ignored; 0 when none). A callable
  ``(votes: list[int] of 10, na: int) -> int`` is accepted too.
  ``skin_group``: ``'lighter'`` for tones in ``lighter`` (default Monk 1-4),
  ``'darker'`` for ``darker`` (default 6-10), else ``''`` (tone 5 and unknown).
"""

from __future__ import annotations

import ast
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from qclip.data.base import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DatasetRoot,
    Exclusions,
    FacetSet,
    PathProblem,
    UnreadableImage,
    announce,
    image_size,
    pixel_limit,
    read_csv,
)
from qclip.data.prompts import DEFAULT_TEMPLATES, facet_classes, resolve_names, resolve_templates
from qclip.errors import DataFormatError, DatasetUnavailable, suggest

__all__ = ["read_facet", "skin_tone_from_votes", "LAYOUT", "layout_problem", "GENDERS", "AGES", "REQUIRED_COLUMNS"]

LAYOUT = "<root>/annotations/annotations.csv and images in <root>/imgs_1/, imgs_2/, imgs_3/"
GENDERS = ("masc", "fem", "non_binary", "na")
AGES = ("young", "middle", "older", "na")
TONES = tuple(range(1, 11))
REQUIRED_COLUMNS = (
    "person_id", "filename", "class1", "bounding_box",
    *(f"gender_presentation_{g}" for g in GENDERS),
    *(f"skin_tone_{t}" for t in TONES), "skin_tone_na",
    *(f"age_presentation_{a}" for a in AGES),
)


def layout_problem(root: Path, annotation: str | os.PathLike | None = None, **_options) -> str | None:
    root = Path(root)
    if not root.is_dir():
        return f"root {root} does not exist or is not a folder"
    csv_path = _csv_path(root, annotation)
    if not csv_path.is_file():
        return f"no annotation file {csv_path}"
    if not _image_dirs(DatasetRoot(root)):
        return f"no image folders {root}/imgs_1..3/ (inside the root)"
    return None


def _csv_path(root: Path, annotation: str | os.PathLike | None) -> Path:
    if annotation is None:
        return root / "annotations" / "annotations.csv"
    p = Path(annotation)
    return p if p.is_absolute() else root / p


def _image_dirs(root: DatasetRoot, excl: Exclusions | None = None) -> list[str]:
    """The names of the ``imgs_*`` folders that stay inside the root, sorted."""
    return [name for name, _ in root.folders(excl=excl) if name.startswith("imgs_")]


def skin_tone_from_votes(votes: Sequence[int], na: int, rule: str | Callable = "plurality") -> int:
    """The Monk tone (1..10) for one person's vote counts, or 0 when unknown (see module doc)."""
    if callable(rule):
        return int(rule(list(votes), na))
    if rule == "plurality":
        top = max(votes)
        if top <= 0 or na >= top or sum(1 for v in votes if v == top) > 1:
            return 0
        return votes.index(top) + 1
    if rule == "median":
        expanded = [t for t, v in zip(TONES, votes, strict=True) for _ in range(max(int(v), 0))]
        return expanded[(len(expanded) - 1) // 2] if expanded else 0
    raise ValueError(f"Expected skin_rule 'plurality', 'median' or a callable, but got {rule!r}")


def _int(value: str, path: Path, i: int, col: str) -> int:
    try:
        f = float(value)
    except ValueError:
        raise DataFormatError(f"{path}: row {i} (line {i + 2}) column {col!r}: expected a number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise DataFormatError(f"{path}: row {i} (line {i + 2}) column {col!r}: expected an integer, got {value!r}")
    return int(f)


def _one_hot(row, prefix: str, values: Sequence[str], path: Path, i: int) -> str | None:
    flags = [_int(row[f"{prefix}_{v}"], path, i, f"{prefix}_{v}") for v in values]
    on = [v for v, f in zip(values, flags, strict=True) if f == 1]
    return on[0] if len(on) == 1 else None


def _parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = ast.literal_eval(text)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    return tuple(float(obj[k]) for k in ("x", "y", "width", "height"))  # type: ignore[return-value]


def _num(v: float) -> str:
    return str(int(v)) if v == int(v) else str(v)


def _range(spec: Sequence[int] | tuple[int, int]) -> set[int]:
    spec = list(spec)
    if len(spec) == 2 and spec[0] <= spec[1]:
        return set(range(int(spec[0]), int(spec[1]) + 1))
    return {int(s) for s in spec}


def read_facet(
    root: str | os.PathLike,
    name: str = "facet",
    classnames: str | os.PathLike | Sequence[str] | None = None,
    templates: str | os.PathLike | Sequence[str] | None = None,
    skin_rule: str | Callable = "plurality",
    lighter: Sequence[int] = (1, 4),
    darker: Sequence[int] = (6, 10),
    min_box: int = 1,
    strict: bool = True,
    annotation: str | os.PathLike | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> FacetSet:
    """Read FACET (or a FACET-format world) as a :class:`FacetSet`; see the module doc.

    ``lighter``/``darker`` are inclusive ``(lo, hi)`` Monk ranges or explicit tone lists;
    ``max_image_pixels`` is the decompression-bomb limit (of the header reads here, and of
    :meth:`load_image`).
    """
    guard = DatasetRoot(root)
    root = guard.path
    limit = pixel_limit(max_image_pixels)
    problem = layout_problem(root, annotation)
    if problem:
        raise DatasetUnavailable(f"{name}: {problem}; expected {LAYOUT}")
    if not callable(skin_rule) and skin_rule not in ("plurality", "median"):
        raise ValueError(f"Expected skin_rule 'plurality', 'median' or a callable, but got {skin_rule!r}")
    csv_path = _csv_path(root, annotation)
    df = read_csv(csv_path, required=REQUIRED_COLUMNS)
    keys = [k.strip().lower() for k in (resolve_names(classnames, "classnames") or facet_classes())]
    index = {k: i for i, k in enumerate(keys)}
    light, dark = _range(lighter), _range(darker)

    excl = Exclusions(strict)
    dirs = _image_dirs(guard, excl)
    located: dict[str, str | PathProblem | None] = {}
    sizes: dict[str, tuple[int, int] | UnreadableImage] = {}
    counts = {"box_clipped": 0, "gender_ambiguous": 0, "age_ambiguous": 0, "skin_unknown": 0,
              "duplicate_files": 0}
    seen_ids: dict[str, int] = {}
    out: list[dict] = []

    def fail(i: int, category: str, detail: str) -> None:
        excl.reject(csv_path, i, category, detail, where=f"row {i} (line {i + 2})")

    def locate(fname: str) -> str | PathProblem | None:
        hits = []
        for d in dirs:
            try:
                path = guard.locate(fname, under=d)
            except PathProblem as prob:  # one folder's way out is enough: the row is not read at all
                return prob
            if os.path.isfile(path):
                hits.append(path)
        counts["duplicate_files"] += len(hits) > 1
        return hits[0] if hits else None

    for i, row in enumerate(df.to_dict("records")):
        pid = row["person_id"].strip()
        fname = row["filename"].strip()
        cls = row["class1"].strip().lower()
        if cls not in index:
            fail(i, "unknown class1", f"{row['class1']!r} is not one of the {len(keys)} classes.{suggest(cls, keys)}")
            continue
        try:
            bx, by, bw, bh = _parse_box(row["bounding_box"])
        except (ValueError, SyntaxError, KeyError, TypeError):
            fail(i, "unparsable bounding_box", f"{row['bounding_box']!r} is not an object with x, y, width, height")
            continue
        gender = _one_hot(row, "gender_presentation", GENDERS, csv_path, i)
        age = _one_hot(row, "age_presentation", AGES, csv_path, i)
        votes = [_int(row[f"skin_tone_{t}"], csv_path, i, f"skin_tone_{t}") for t in TONES]
        na_votes = _int(row["skin_tone_na"], csv_path, i, "skin_tone_na")
        if pid in seen_ids:
            excl.add(csv_path, i, "duplicate person_id", f"{pid!r} (first at row {seen_ids[pid]})")
            continue
        if fname not in located:
            located[fname] = locate(fname)
        path = located[fname]
        if isinstance(path, PathProblem):
            fail(i, path.category, path.detail)
            continue
        if path is None:
            excl.add(csv_path, i, "image file not found in imgs_*/", repr(fname))
            continue
        box = f"x={_num(bx)}, y={_num(by)}, width={_num(bw)}, height={_num(bh)}"
        if bw <= 0 or bh <= 0:
            excl.add(csv_path, i, "degenerate box", box)
            continue
        x0, y0 = math.floor(bx), math.floor(by)
        x1, y1 = math.ceil(bx + bw), math.ceil(by + bh)
        if path not in sizes:
            try:
                sizes[path] = image_size(path, limit)
            except UnreadableImage as exc:
                sizes[path] = exc
        size = sizes[path]
        if isinstance(size, UnreadableImage):
            fail(i, "unreadable image", f"{fname!r}: {size}")
            continue
        w, h = size
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if cx1 <= cx0 or cy1 <= cy0:
            excl.add(csv_path, i, "box outside image", f"{box} on the {w}x{h} image {fname!r}")
            continue
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            counts["box_clipped"] += 1
        x0, y0, x1, y1 = cx0, cy0, cx1, cy1
        if x1 - x0 < min_box or y1 - y0 < min_box:
            excl.add(csv_path, i, "box too small", f"{x1 - x0}x{y1 - y0} px after clipping ({box}), "
                                                   f"min_box {min_box}")
            continue
        seen_ids[pid] = i
        tone = skin_tone_from_votes(votes, na_votes, skin_rule)
        counts["gender_ambiguous"] += gender is None
        counts["age_ambiguous"] += age is None
        counts["skin_unknown"] += tone == 0
        out.append({
            "path": path, "person_id": pid, "filename": fname,
            "class1": cls, "class2": row.get("class2", "").strip().lower(), "label": index[cls],
            "gender": gender or "na", "skin_tone": tone,
            "skin_group": "lighter" if tone in light else "darker" if tone in dark else "",
            "age": age or "na",
            "box_x": x0, "box_y": y0, "box_w": x1 - x0, "box_h": y1 - y0,
        })

    cols = ["path", "person_id", "filename", "class1", "class2", "label", "gender", "skin_tone",
            "skin_group", "age", "box_x", "box_y", "box_w", "box_h"]
    table = pd.DataFrame(out, columns=cols)
    ints = ["label", "skin_tone", "box_x", "box_y", "box_w", "box_h"]
    table[ints] = table[ints].astype("int64")
    if len(table) and table["person_id"].str.fullmatch(r"-?\d+").all():
        table["person_id"] = table["person_id"].astype("int64")
    meta = {"annotation": str(csv_path), "skin_rule": skin_rule if isinstance(skin_rule, str) else "callable",
            "num_classes": len(keys), **counts}
    tmpl = resolve_templates(templates, root, default=DEFAULT_TEMPLATES)
    return announce(FacetSet(name=name, root=root, table=table, exclusions=excl.frame(), meta=meta,
                             max_image_pixels=limit, classnames=[k.replace("_", " ") for k in keys],
                             templates=tmpl, class_keys=keys))
