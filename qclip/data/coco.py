"""COCO captions (Karpathy 5k test) for image-text retrieval.

Layout: ``<root>/val2014/COCO_val2014_*.jpg`` and an annotation JSON. Three schemas are
read, recognised by their content (not their name):

* the official COCO captions schema: ``images`` (``id``, ``file_name``, optional
  ``height``, ``width``) and ``annotations`` (``id``, ``image_id``, ``caption``); other
  keys (``info``, ``licenses``, ...) are ignored. clip_benchmark's
  ``coco_test_karpathy.json`` (kept beside ``val2014/``) is this schema.
* the LAVIS/BLIP list (``coco_karpathy_test.json``): ``[{"image": "val2014/...jpg",
  "caption": [...] or "..."}, ...]``; an image is its ``image`` path, entries naming the
  same image add captions to it (the training files list one caption per entry).
* Karpathy's own ``dataset_coco.json``: ``{"images": [{"filepath", "filename", "split",
  "cocoid", "sentences": [{"raw", "sentid"}]}]}``, of which the ``split == "test"``
  images are read (5,000).

Annotation file: the ``annotation`` option (relative paths resolve against the root),
else the first of :data:`ANNOTATION_CANDIDATES` that exists; when none does, the
unavailable reason lists every name tried. qclip expects the Karpathy test split; when it
falls back to the full ``captions_val2014.json`` it says so in
``meta['karpathy_filtered'] = False`` rather than guessing the split.

Image files: ``file_name`` relative to ``<root>/val2014/`` (or to the root when it has
a folder part, e.g. ``val2014/COCO_val2014_...jpg``; backslashes count as separators),
resolved by :class:`~qclip.data.base.DatasetRoot`: a name that leads out of the root
(absolute, ``..``, a symlink) is excluded as ``path outside root`` (an error with
``strict=True``). Exclusions, all counted and each naming its value: an image listed but
missing on disk (``image file missing``; its captions follow it as ``image
excluded``), a duplicate image id, an image without captions (it would count as a
never-retrievable text target), a caption whose ``image_id`` is not in ``images``
(``unknown image_id``), an empty caption. Rows keep the JSON order; an exclusion's
``row`` is the record's index in its list (Karpathy: the image's index, for its
sentences too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from qclip.data.base import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DatasetRoot,
    Exclusions,
    PathProblem,
    RetrievalSet,
    announce,
    pixel_limit,
)
from qclip.errors import DataFormatError, DatasetUnavailable

__all__ = ["read_coco_captions", "ANNOTATION_CANDIDATES", "LAYOUT", "layout_problem", "find_annotation"]

#: looked up in this order under the root when no ``annotation`` is given: COCO-schema files of the
#: Karpathy test split first, then the LAVIS/BLIP list, Karpathy's own splits, and last the unfiltered
#: official val2014 captions.
ANNOTATION_CANDIDATES = (
    "annotations/captions_karpathy_test.json",
    "captions_karpathy_test.json",
    "annotations/coco_karpathy_test_captions.json",
    "coco_test_karpathy.json",  # clip_benchmark (mehdidc/retrieval_annotations), beside val2014/
    "annotations/coco_test_karpathy.json",
    "annotations/coco_karpathy_test.json",  # LAVIS / BLIP
    "coco_karpathy_test.json",
    "dataset_coco.json",  # Karpathy's splits
    "annotations/dataset_coco.json",
    "caption_datasets/dataset_coco.json",
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
        if annotation is not None:
            p = Path(annotation)
            return f"no annotation file {p if p.is_absolute() else root / p} (option annotation)"
        return f"no annotation file under {root}; tried {', '.join(ANNOTATION_CANDIDATES)}"
    if not (root / "val2014").is_dir():
        return f"no image folder {root / 'val2014'}"
    return None


def _need(record: dict, key: str, path: Path, where: str):
    if not isinstance(record, dict) or key not in record:
        raise DataFormatError(f"{path}: {where} has no {key!r} key")
    return record[key]


_SCHEMAS = ("the COCO captions schema (an object with 'images' and 'annotations'), a LAVIS/BLIP list of "
            "{image, caption} or Karpathy's dataset_coco.json (an object with 'images' holding 'sentences')")


def _parse(data, path: Path) -> tuple[str, list, list]:
    """``(schema, images, captions)`` of any of the three schemas: images ``(row, id, file_name, extra)``,
    captions ``(row, image id, caption id, text)``, rows being indices in the source's lists."""
    images: list[tuple[int, object, str, dict]] = []
    caps: list[tuple[int, object, object, str]] = []
    if isinstance(data, dict) and "annotations" in data:
        for i, rec in enumerate(_need(data, "images", path, "the top-level object")):
            iid = _need(rec, "id", path, f"images[{i}]")
            fname = str(_need(rec, "file_name", path, f"images[{i}]"))
            images.append((i, iid, fname, {k: rec[k] for k in ("height", "width") if k in rec}))
        for j, rec in enumerate(data["annotations"]):
            iid = _need(rec, "image_id", path, f"annotations[{j}]")
            caps.append((j, iid, rec.get("id", j), str(_need(rec, "caption", path, f"annotations[{j}]"))))
        return "coco", images, caps
    if isinstance(data, dict) and isinstance(data.get("images"), list) and all(
            isinstance(r, dict) and "sentences" in r for r in data["images"][:1]):
        for i, rec in enumerate(data["images"]):
            if _need(rec, "split", path, f"images[{i}]") != "test":
                continue
            fname = str(_need(rec, "filename", path, f"images[{i}]"))
            folder = str(rec.get("filepath", "") or "")
            iid = rec.get("cocoid", rec.get("imgid", i))
            images.append((i, iid, f"{folder}/{fname}" if folder else fname, {}))
            for k, sent in enumerate(_need(rec, "sentences", path, f"images[{i}]")):
                text = _need(sent, "raw", path, f"images[{i}].sentences[{k}]")
                caps.append((i, iid, sent.get("sentid", f"{i}.{k}"), str(text)))
        return "karpathy", images, caps
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        seen: set[str] = set()
        for i, rec in enumerate(data):
            image = str(_need(rec, "image", path, f"[{i}]"))
            texts = _need(rec, "caption", path, f"[{i}]")
            key = image.replace("\\", "/")
            if key not in seen:  # an image is its path; later entries only add captions
                seen.add(key)
                images.append((i, key, image, {}))
            for k, text in enumerate(texts if isinstance(texts, list) else [texts]):
                caps.append((i, key, f"{i}.{k}", str(text)))
        return "lavis", images, caps
    raise DataFormatError(f"{path}: expected {_SCHEMAS}, but got a {type(data).__name__}"
                          + (f" with keys {', '.join(map(str, list(data)[:8]))}" if isinstance(data, dict) else ""))


def read_coco_captions(root: str | os.PathLike, annotation: str | os.PathLike | None = None,
                       name: str = "coco", strict: bool = False,
                       max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> RetrievalSet:
    """Read COCO-format captions and images as a :class:`RetrievalSet`.

    ``table``: ``path, image_id, file_name`` (+ ``height, width`` when given);
    ``captions``: ``caption, image_index, image_id, caption_id``. ``strict``: a file name leading
    out of the root is an error instead of an exclusion; ``max_image_pixels``: the bomb limit.
    """
    guard = DatasetRoot(root)
    root = guard.path
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
    schema, images, anns = _parse(data, ann_path)
    where = "[{}]" if schema == "lavis" else "images[{}]"

    excl = Exclusions(strict)
    rows: list[dict] = []
    index_of: dict = {}
    first_row: dict = {}
    dropped: dict = {}
    for i, iid, fname, extra in images:
        if iid in index_of or iid in dropped:
            excl.add(ann_path, i, "duplicate image id", f"{iid!r} (first at {where.format(first_row[iid])})")
            continue
        first_row[iid] = i
        try:
            path = guard.locate(fname, under="" if "/" in fname.replace("\\", "/") else "val2014")
        except PathProblem as prob:
            excl.reject(ann_path, i, prob.category, prob.detail, where=where.format(i))
            dropped[iid] = prob.category
            continue
        if not os.path.isfile(path):
            excl.add(ann_path, i, "image file missing", repr(fname))
            dropped[iid] = "image file missing"
            continue
        index_of[iid] = len(rows)
        rows.append({"path": path, "image_id": iid, "file_name": fname, **extra})

    caps: list[tuple[str, int, object, object]] = []
    for j, iid, cid, text in anns:
        text = text.strip()
        if iid in dropped:
            excl.add(ann_path, j, "image excluded", f"caption {cid!r} of image_id {iid!r} ({dropped[iid]})")
        elif iid not in index_of:
            excl.add(ann_path, j, "unknown image_id", f"{iid!r} (caption {cid!r})")
        elif not text:
            excl.add(ann_path, j, "empty caption", f"caption {cid!r} of image_id {iid!r}")
        else:
            caps.append((" ".join(text.split()), index_of[iid], iid, cid))

    # images without any caption leave the set (and the caption indices are remapped)
    has_caption = {c[1] for c in caps}
    keep = [k for k in range(len(rows)) if k in has_caption]
    if len(keep) != len(rows):
        for k in range(len(rows)):
            if k not in has_caption:
                iid = rows[k]["image_id"]
                excl.add(ann_path, first_row.get(iid, -1), "no captions",
                         f"image_id {iid!r} ({rows[k]['file_name']!r})")
        new_index = {old: new for new, old in enumerate(keep)}
        rows = [rows[k] for k in keep]
        caps = [(c, new_index[ix], iid, cid) for c, ix, iid, cid in caps]

    table = pd.DataFrame(rows, columns=["path", "image_id", "file_name"] if not rows else None)
    captions = pd.DataFrame(caps, columns=["caption", "image_index", "image_id", "caption_id"])
    captions["image_index"] = captions["image_index"].astype("int64")
    meta = {
        "annotation": str(ann_path),
        "schema": schema,
        "karpathy_filtered": schema == "karpathy" or "karpathy" in ann_path.name,
        "num_captions": len(captions),
    }
    return announce(RetrievalSet(name=name, root=root, table=table, exclusions=excl.frame(), meta=meta,
                                 max_image_pixels=pixel_limit(max_image_pixels), captions=captions))
