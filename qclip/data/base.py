"""The dataset types every reader returns, and the small helpers they share.

Conventions (all readers):

* ``ImageTable.table`` has one row per sample, in a fresh ``RangeIndex``. Column
  ``path`` is the absolute image path as a ``str``. FACET adds ``box_x, box_y,
  box_w, box_h`` (ints, already clipped to the image): :meth:`ImageTable.load_image`
  crops ``x .. x+w, y .. y+h``.
* ``ImageTable.exclusions`` has columns ``source`` (the file the record came from,
  as a ``str``), ``row`` (0-based index of the record among the source's data
  records -- CSV: data row after the header, JSON: index in its list; ``-1`` when the
  exclusion concerns no single record) and ``reason``. Nothing is dropped silently:
  every record a reader skips lands there.
* An unreadable image is not detected while reading a table (that would mean
  opening every file); :meth:`ImageTable.load_image` raises
  :class:`~qclip.errors.DataFormatError` naming the file.
* CSV files are read by column name, as strings, with a UTF-8 BOM tolerated and CRLF
  or LF line endings; extra columns are kept out of the way, never an error.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from qclip.errors import DataFormatError

__all__ = [
    "IMAGE_EXTENSIONS",
    "BOX_COLUMNS",
    "EXCLUSION_COLUMNS",
    "ImageTable",
    "ClassificationSet",
    "RetrievalSet",
    "FacetSet",
    "FairFaceSet",
    "SpuriousSet",
    "Exclusions",
    "read_csv",
    "is_image_file",
]

#: torchvision's ImageFolder extensions, matched case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")
EXCLUSION_COLUMNS = ("source", "row", "reason")


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name ends with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


class Exclusions:
    """Accumulates ``(source, row, reason)`` records; :meth:`frame` gives the DataFrame."""

    def __init__(self) -> None:
        self._rows: list[tuple[str, int, str]] = []

    def add(self, source: str | os.PathLike, row: int, reason: str) -> None:
        self._rows.append((str(source), int(row), reason))

    def __len__(self) -> int:
        return len(self._rows)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._rows, columns=list(EXCLUSION_COLUMNS)).astype({"row": "int64"})


def _empty_exclusions() -> pd.DataFrame:
    return Exclusions().frame()


def read_csv(path: Path, required: Iterable[str] = (), aliases: dict[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Read a CSV as strings (BOM and CRLF tolerated), checking columns by name.

    ``aliases`` maps a canonical column to accepted alternatives (first present wins);
    the returned frame has the canonical name. A missing required column raises
    :class:`DataFormatError` naming the file and the column. Empty cells are ``""``.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot parse as CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    for canonical, alternatives in (aliases or {}).items():
        if canonical in df.columns:
            continue
        for alt in alternatives:
            if alt in df.columns:
                df = df.rename(columns={alt: canonical})
                break
    for col in required:
        if col not in df.columns:
            alts = (aliases or {}).get(col, ())
            also = f" (or {', '.join(repr(a) for a in alts)})" if alts else ""
            raise DataFormatError(
                f"{path}: missing required column {col!r}{also}; found columns: {', '.join(df.columns)}"
            )
    return df.reset_index(drop=True)


@dataclass
class ImageTable:
    """A table of images on disk, one row per sample (see the module doc for columns).

    Attributes:
        name: the dataset's name (config key), part of :meth:`fingerprint`.
        root: the dataset root folder.
        table: one row per sample; ``path`` (absolute ``str``), optional box columns,
            plus the dataset's label/metadata columns.
        exclusions: ``source, row, reason`` for every skipped record.
        meta: counts and choices made while reading (reported, never needed to score).
    """

    name: str
    root: Path
    table: pd.DataFrame
    exclusions: pd.DataFrame = field(default_factory=_empty_exclusions)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if "path" not in self.table.columns:
            raise DataFormatError(f"{self.name}: the image table has no 'path' column")
        self.table = self.table.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def has_boxes(self) -> bool:
        return all(c in self.table.columns for c in BOX_COLUMNS)

    def box(self, i: int) -> tuple[int, int, int, int] | None:
        """``(x, y, w, h)`` of row ``i``, or None when the table has no boxes."""
        if not self.has_boxes:
            return None
        row = self.table.iloc[i]
        return tuple(int(row[c]) for c in BOX_COLUMNS)  # type: ignore[return-value]

    def load_image(self, i: int) -> Image.Image:
        """Row ``i``'s image as RGB, cropped to its box if any.

        Raises :class:`DataFormatError` naming the file if it cannot be decoded.
        """
        path = self.table.at[i, "path"]
        try:
            with Image.open(path) as im:
                im.load()
                img = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataFormatError(f"{self.name}: cannot read image {path}: {exc}") from exc
        box = self.box(i)
        if box is not None:
            x, y, w, h = box
            img = img.crop((x, y, x + w, y + h))
        return img

    def fingerprint(self) -> str:
        """sha256 over the name, each row's path (and box) and the file's size and mtime.

        Cheap (one ``stat`` per distinct file, no pixel is read); a missing file counts
        as size and mtime -1. Labels are not part of it: it keys the image embeddings.
        Computed once per loaded table (a session loads each dataset once).
        """
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return cached
        h = hashlib.sha256()
        h.update(f"qclip-images-v1\0{self.name}\0{len(self.table)}\0".encode())
        stats: dict[str, tuple[int, int]] = {}
        boxes = self.table[list(BOX_COLUMNS)].to_numpy().tolist() if self.has_boxes else None
        for i, path in enumerate(self.table["path"].tolist()):
            st = stats.get(path)
            if st is None:
                try:
                    s = os.stat(path)
                    st = (s.st_size, s.st_mtime_ns)
                except OSError:
                    st = (-1, -1)
                stats[path] = st
            box = "" if boxes is None else ",".join(str(int(v)) for v in boxes[i])
            h.update(f"{path}\0{box}\0{st[0]}\0{st[1]}\n".encode())
        self.__dict__["_fingerprint"] = h.hexdigest()
        return self.__dict__["_fingerprint"]

    def summary(self) -> str:
        """One paragraph: name, rows, root, exclusions by reason, and notable meta counts."""
        kind = type(self).__name__
        lines = [f"{self.name} ({kind}): {len(self)} samples from {self.root}"]
        if len(self.exclusions):
            counts = self.exclusions["reason"].value_counts()
            parts = ", ".join(f"{n} {reason}" for reason, n in counts.items())
            lines.append(f"  excluded {len(self.exclusions)}: {parts}")
        else:
            lines.append("  excluded 0")
        extras = [f"{k}={v}" for k, v in self.meta.items() if isinstance(v, (int, str, float, bool))]
        if extras:
            lines.append("  " + ", ".join(extras))
        return "\n".join(lines)


@dataclass
class ClassificationSet(ImageTable):
    """Zero-shot classification: ``label`` (int index into ``classnames``) per row.

    ``templates`` are format strings with one ``{}`` placeholder (see
    :func:`qclip.data.prompts.format_prompts`). Shift sets with a subset of classes keep
    the full label space; :attr:`present_labels` lists the classes that have images.
    """

    classnames: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)

    @property
    def present_labels(self) -> list[int]:
        return sorted(int(v) for v in self.table["label"].unique())


@dataclass
class RetrievalSet(ImageTable):
    """Image-text retrieval: images in ``table`` (with ``image_id``), texts in ``captions``.

    ``captions`` columns: ``caption`` (str), ``image_index`` (row of ``table``),
    ``image_id`` and ``caption_id`` (the source's ids).
    """

    captions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["caption", "image_index"]))


@dataclass
class FacetSet(ImageTable):
    """FACET persons (one row per annotated person, cropped by its box).

    Columns: ``person_id, filename, class1, class2, label, gender, skin_tone,
    skin_group, age`` plus ``path`` and the box. ``classnames`` are the class keys with
    underscores turned to spaces (prompt-ready); ``class_keys`` the raw keys.
    """

    classnames: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    class_keys: list[str] = field(default_factory=list)


@dataclass
class FairFaceSet(ImageTable):
    """FairFace faces: ``file, age, age_bin, gender, race`` (+ ``service_test``).

    ``prompts`` are the formatted prompt strings; ``prompt_table`` has one row per
    prompt with ``template, concept, valence, prompt``.
    """

    prompts: list[str] = field(default_factory=list)
    prompt_table: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class SpuriousSet(ImageTable):
    """Group-annotated classification (Waterbirds-style): ``label, place, group``.

    ``groups`` maps each group id to its ``(label, place)`` pair.
    """

    classnames: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    groups: dict[int, tuple[int, int | str]] = field(default_factory=dict)
