"""COCO captions (Karpathy 5k test) for image-text retrieval.

Layout: ``<root>/val2014/COCO_val2014_*.jpg`` and an annotation JSON in the official
COCO captions schema: ``images`` (``id``, ``file_name``, optional ``height``,
``width``) and ``annotations`` (``id``, ``image_id``, ``caption``); other keys
(``info``, ``licenses``, ...) are ignored.

Annotation file: the ``annotation`` option (relative paths resolve against the root),
else the first of :data:`ANNOTATION_CANDIDATES` that exists. qclip expects the JSON to
be already filtered to the 5,000 Karpathy test images (``captions_karpathy_test.json``);
when it falls back to the full ``captions_val2014.json`` it says so in
``meta['karpathy_filtered'] = False`` rather than guessing the split. (The LAVIS/BLIP
``coco_karpathy_test.json`` is a different schema -- a list of ``{image, caption}`` --
and is rejected with an error naming the expected schema.)

Image files: ``file_name`` relative to ``<root>/val2014/`` (or to the root when it has
a folder part, e.g. ``val2014/COCO_val2014_...jpg``). Exclusions, all counted:
an image listed but missing on disk (``image file missing``; its captions follow it
as ``image excluded``), a duplicate image id, an image without captions (it would
count as a never-retrievable text target), a caption whose ``image_id`` is not in
``images`` (``unknown image_id``), an empty caption. Rows keep the JSON order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from qclip.data.base import Exclusions, RetrievalSet
from qclip.errors import DataFormatError, DatasetUnavailable

__all__ = ["read_coco_captions", "ANNOTATION_CANDIDATES", "LAYOUT", "layout_problem", "find_annotation"]

#: looked up in this order under the root when no ``annotation`` is given.
ANNOTATION_CANDIDATES = (
    "annotations/captions_karpathy_test.json",
    "captions_karpathy_test.json",
    "annotations/coco_karpathy_test_captions.json",
    "annotations/captions_val2014.json",
)
LAYOUT = "<root>/val2014/COCO_val2014_*.jpg and <root>/annotations/captions_karpathy_test.json (COCO captions schema)"


def find_annotation(root: Path, annotation: str | os.PathLike | None = None) -> Path | None:
    """The annotation file to use, or None when none exists."""
    root = Path(root)
    if annotation is not None:
        p = Path(annotation)
        p = p if p.is_absolute() else root / p
        return p if p.is_file() else None
    for cand in ANNOTATION_CANDIDATES:
        if (root / cand).is_file():
            return root / cand
    return None


def layout_problem(root: Path, annotation: str | os.PathLike | None = None, **_options) -> str | None:
    root = Path(root)
    if not root.is_dir():
        return f"root {root} does not exist or is not a folder"
    if find_annotation(root, annotation) is None:
        wanted = annotation if annotation is not None else " or ".join(ANNOTATION_CANDIDATES)
        return f"no annotation file under {root} ({wanted})"
    if not (root / "val2014").is_dir():
        return f"no image folder {root / 'val2014'}"
    return None


def _need(record: dict, key: str, path: Path, where: str):
    if not isinstance(record, dict) or key not in record:
        raise DataFormatError(f"{path}: {where} has no {key!r} key")
    return record[key]


def read_coco_captions(root: str | os.PathLike, annotation: str | os.PathLike | None = None,
                       name: str = "coco") -> RetrievalSet:
    """Read COCO-format captions and images as a :class:`RetrievalSet`.

    ``table``: ``path, image_id, file_name`` (+ ``height, width`` when given);
    ``captions``: ``caption, image_index, image_id, caption_id``.
    """
    root = Path(root).resolve()
    problem = layout_problem(root, annotation)
    if problem:
        raise DatasetUnavailable(f"{name}: {problem}; expected {LAYOUT}")
    ann_path = find_annotation(root, annotation)
    if ann_path is None:  # pragma: no cover - layout_problem checked it
        raise DatasetUnavailable(f"{name}: no annotation file; expected {LAYOUT}")
    try:
        data = json.loads(ann_path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{ann_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataFormatError(
            f"{ann_path}: expected the COCO captions schema (an object with 'images' and 'annotations'), "
            f"but got a {type(data).__name__}"
        )
    images = _need(data, "images", ann_path, "the top-level object")
    anns = _need(data, "annotations", ann_path, "the top-level object")

    excl = Exclusions()
    rows: list[dict] = []
    index_of: dict = {}
    dropped: set = set()
    img_dir = root / "val2014"
    for i, rec in enumerate(images):
        iid = _need(rec, "id", ann_path, f"images[{i}]")
        fname = str(_need(rec, "file_name", ann_path, f"images[{i}]"))
        if iid in index_of or iid in dropped:
            excl.add(ann_path, i, f"duplicate image id {iid}")
            continue
        path = (root / fname) if ("/" in fname or "\\" in fname) else (img_dir / fname)
        if not path.is_file():
            excl.add(ann_path, i, "image file missing")
            dropped.add(iid)
            continue
        row = {"path": str(path), "image_id": iid, "file_name": fname}
        for extra in ("height", "width"):
            if extra in rec:
                row[extra] = rec[extra]
        index_of[iid] = len(rows)
        rows.append(row)

    caps: list[tuple[str, int, object, object]] = []
    for j, rec in enumerate(anns):
        iid = _need(rec, "image_id", ann_path, f"annotations[{j}]")
        text = str(_need(rec, "caption", ann_path, f"annotations[{j}]")).strip()
        if iid in dropped:
            excl.add(ann_path, j, "image excluded")
        elif iid not in index_of:
            excl.add(ann_path, j, "unknown image_id")
        elif not text:
            excl.add(ann_path, j, "empty caption")
        else:
            caps.append((" ".join(text.split()), index_of[iid], iid, rec.get("id", j)))

    # images without any caption leave the set (and the caption indices are remapped)
    has_caption = {c[1] for c in caps}
    keep = [k for k in range(len(rows)) if k in has_caption]
    if len(keep) != len(rows):
        pos_in_json = {rec["id"]: i for i, rec in enumerate(images) if isinstance(rec, dict) and "id" in rec}
        for k in range(len(rows)):
            if k not in has_caption:
                excl.add(ann_path, pos_in_json.get(rows[k]["image_id"], -1), "no captions")
        new_index = {old: new for new, old in enumerate(keep)}
        rows = [rows[k] for k in keep]
        caps = [(c, new_index[ix], iid, cid) for c, ix, iid, cid in caps]

    table = pd.DataFrame(rows, columns=["path", "image_id", "file_name"] if not rows else None)
    captions = pd.DataFrame(caps, columns=["caption", "image_index", "image_id", "caption_id"])
    captions["image_index"] = captions["image_index"].astype("int64")
    meta = {
        "annotation": str(ann_path),
        "karpathy_filtered": "karpathy" in ann_path.name,
        "num_captions": len(captions),
    }
    return RetrievalSet(name=name, root=root, table=table, exclusions=excl.frame(), meta=meta, captions=captions)
