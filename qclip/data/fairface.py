"""FairFace (Kärkkäinen & Joo, WACV 2021) validation faces, for retrieval skew.

Layout: ``<root>/fairface_label_val.csv`` with columns ``file, age, gender, race``
and optionally ``service_test`` (read by name, others tolerated); ``file`` is relative
to the root (``val/1.jpg``). The images come in two paddings (``fairface-img-margin025-
trainval`` and ``...margin125...``): the root is either padding folder. The label CSV is
distributed separately from the images, so it is looked up in the root first and then
in the root's parent (``meta['labels']`` says which file was used); the ``labels``
option names another file (relative to the root).

Values (compared exactly, after stripping spaces):

* ``age`` in ``0-2, 3-9, 10-19, 20-29, 30-39, 40-49, 50-59, 60-69, more than 70``;
  ``age_bin``: ``younger`` (0-19), ``middle`` (20-49), ``older`` (50+, "more than 70"
  included).
* ``gender`` in ``Male, Female``; ``race`` in ``White, Black, Latino_Hispanic, East
  Asian, Southeast Asian, Indian, Middle Eastern``.
* Any other value raises :class:`~qclip.errors.DataFormatError` naming file, row,
  column and value. ``service_test`` (``True``/``False``) becomes a bool column.

A file listed in the CSV but missing on disk is excluded (``image file missing``), as is a
file listed a second time (``duplicate file``, naming the row that had it first) and a
``file`` that leads out of the root -- absolute, ``..``, a symlink; resolved by
:class:`~qclip.data.base.DatasetRoot` -- (``path outside root``; an error with
``strict=True``). Backslashes in ``file`` count as separators.
Prompts: :func:`qclip.data.prompts.load_fairface_prompts` (the shipped Berg et al.
2022 list unless ``prompts`` names another file): 11 templates x 29 concepts, copied
from the authors' repository (oxai/debias-vision-lang, ``data/prompt_templates.csv``);
the favourable/unfavourable labels are qclip's. Where FORMATS.md quotes "A photo of a
{} person" as a template, the source has "This is a photo of a {} person" and "Photo
of a {}"; qclip ships the source's wording.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from qclip.data.base import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DatasetRoot,
    Exclusions,
    FairFaceSet,
    PathProblem,
    announce,
    pixel_limit,
    read_csv,
)
from qclip.data.prompts import load_fairface_prompts
from qclip.errors import DataFormatError, DatasetUnavailable

__all__ = ["read_fairface", "AGE_BINS", "GENDERS", "RACES", "LABELS_FILE", "LAYOUT", "layout_problem"]

LABELS_FILE = "fairface_label_val.csv"
LAYOUT = f"<root>/{LABELS_FILE} (or in the root's parent) with columns file,age,gender,race and images <root>/val/N.jpg"
AGE_BINS = {
    "0-2": "younger", "3-9": "younger", "10-19": "younger",
    "20-29": "middle", "30-39": "middle", "40-49": "middle",
    "50-59": "older", "60-69": "older", "more than 70": "older",
}
GENDERS = ("Male", "Female")
RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")


def _labels_path(root: Path, labels: str | os.PathLike | None) -> Path | None:
    if labels is not None:
        p = Path(labels)
        p = p if p.is_absolute() else root / p
        return p if p.is_file() else None
    for cand in (root / LABELS_FILE, root.parent / LABELS_FILE):
        if cand.is_file():
            return cand
    return None


def layout_problem(root: Path, labels: str | os.PathLike | None = None, **_options) -> str | None:
    root = Path(root)
    if not root.is_dir():
        return f"root {root} does not exist or is not a folder"
    if _labels_path(root, labels) is None:
        return f"no label file {root / (labels or LABELS_FILE)}"
    return None


def _check(value: str, allowed, path: Path, i: int, col: str) -> str:
    if value not in allowed:
        raise DataFormatError(
            f"{path}: row {i} (line {i + 2}) column {col!r}: unknown value {value!r}; "
            f"expected one of {', '.join(allowed)}"
        )
    return value


def read_fairface(
    root: str | os.PathLike,
    name: str = "fairface",
    prompts: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    strict: bool = False,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> FairFaceSet:
    """Read FairFace's validation labels and images as a :class:`FairFaceSet`.

    Table columns: ``path, file, age, age_bin, gender, race`` (+ ``service_test``).
    ``strict``: a ``file`` leading out of the root is an error; ``max_image_pixels``: the bomb limit.
    """
    guard = DatasetRoot(root)
    root = guard.path
    problem = layout_problem(root, labels)
    if problem:
        raise DatasetUnavailable(f"{name}: {problem}; expected {LAYOUT}")
    csv_path = _labels_path(root, labels)
    if csv_path is None:  # pragma: no cover - layout_problem checked it
        raise DatasetUnavailable(f"{name}: no label file; expected {LAYOUT}")
    df = read_csv(csv_path, required=("file", "age", "gender", "race"))
    has_service = "service_test" in df.columns
    excl = Exclusions(strict)
    rows = []
    first: dict[str, int] = {}
    for i, rec in enumerate(df.to_dict("records")):
        file = rec["file"].strip()
        age = _check(rec["age"].strip(), tuple(AGE_BINS), csv_path, i, "age")
        gender = _check(rec["gender"].strip(), GENDERS, csv_path, i, "gender")
        race = _check(rec["race"].strip(), RACES, csv_path, i, "race")
        row = {"file": file, "age": age, "age_bin": AGE_BINS[age], "gender": gender, "race": race}
        if has_service:
            flag = rec["service_test"].strip().lower()
            if flag not in ("true", "false", "1", "0"):
                raise DataFormatError(
                    f"{csv_path}: row {i} (line {i + 2}) column 'service_test': unknown value "
                    f"{rec['service_test']!r}; expected True or False"
                )
            row["service_test"] = flag in ("true", "1")
        try:
            path = guard.locate(file)
        except PathProblem as prob:
            excl.reject(csv_path, i, prob.category, prob.detail, where=f"row {i} (line {i + 2})")
            continue
        if path in first:
            excl.add(csv_path, i, "duplicate file", f"{file!r} (first at row {first[path]})")
            continue
        if not os.path.isfile(path):
            excl.add(csv_path, i, "image file missing", repr(file))
            continue
        first[path] = i
        rows.append({"path": path, **row})
    cols = ["path", "file", "age", "age_bin", "gender", "race"] + (["service_test"] if has_service else [])
    table = pd.DataFrame(rows, columns=cols)
    ptable = load_fairface_prompts(prompts)
    meta = {"labels": str(csv_path), "num_prompts": len(ptable),
            "prompts_file": str(prompts) if prompts is not None else "shipped (Berg et al. 2022)"}
    return announce(FairFaceSet(name=name, root=root, table=table, exclusions=excl.frame(), meta=meta,
                                max_image_pixels=pixel_limit(max_image_pixels),
                                prompts=ptable["prompt"].tolist(), prompt_table=ptable))
