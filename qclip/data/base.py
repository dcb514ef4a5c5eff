"""The dataset types every reader returns, and the small helpers they share.

Conventions (all readers):

* ``ImageTable.table`` has one row per sample, in a fresh ``RangeIndex``. Column
  ``path`` is the image's real path (symlinks resolved) as a ``str``. FACET adds
  ``box_x, box_y, box_w, box_h`` (ints, already clipped to the image):
  :meth:`ImageTable.load_image` crops ``x .. x+w, y .. y+h``.
* ``ImageTable.exclusions`` has columns ``source`` (the file the record came from,
  as a ``str``), ``row`` (0-based index of the record among the source's data
  records -- CSV: data row after the header, JSON: index in its list; ``-1`` when the
  exclusion concerns no single record), ``reason`` (what was wrong, always with the
  offending value: the file name, the id, the box) and ``category`` (the reason
  without its value, what the counts are per). Nothing is dropped silently: every
  record a reader skips lands there, a reader that excluded anything says so once in
  a :class:`DataExclusionWarning` (counts per category), and the run's report lists
  them in its "Data" section.
* Readers never leave their root: every path that comes from the data (a file name in
  an annotation, a directory entry) goes through :class:`DatasetRoot`, which resolves
  it one component at a time, follows a symlink only while it stays under the root's
  real path and lets ``..`` climb no higher than the root, before anything is opened
  or stat'ed outside. A path that leaves is an exclusion (``path outside root``, naming
  the value and where it leads), or an error where the reader is ``strict``.
  Backslashes in such paths count as separators (annotations written on Windows). The
  annotation files themselves are found by each reader's layout rules or named by the
  dataset config (FairFace's label file may sit beside the root: that is the config's
  choice, not the data's).
* Images are decoded with PIL under a pixel limit (``max_image_pixels``, default
  PIL's own 89,478,485; ``None`` or 0 for none): an image whose header claims more is
  a decompression bomb. Reading a table does not decode images (that would mean
  opening every file; FACET reads image headers to clip its boxes); any decode
  failure -- a bomb, an empty or truncated file, bytes PIL does not know -- raises
  :class:`~qclip.errors.DataFormatError` naming the dataset, the row and the file,
  wherever the file is first read.
* CSV files are read by column name, as strings, with a UTF-8 BOM tolerated and CRLF
  or LF line endings; extra columns are kept out of the way, never an error.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pandas as pd
from PIL import Image

from qclip.errors import DataFormatError

__all__ = [
    "IMAGE_EXTENSIONS",
    "BOX_COLUMNS",
    "EXCLUSION_COLUMNS",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "OUTSIDE_ROOT",
    "ImageTable",
    "ClassificationSet",
    "RetrievalSet",
    "FacetSet",
    "FairFaceSet",
    "SpuriousSet",
    "Exclusions",
    "DatasetRoot",
    "PathProblem",
    "UnreadableImage",
    "DataExclusionWarning",
    "read_csv",
    "read_image",
    "image_size",
    "is_image_file",
    "pixel_limit",
    "announce",
]

#: torchvision's ImageFolder extensions, matched case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")
EXCLUSION_COLUMNS = ("source", "row", "reason", "category")
#: PIL's own default decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``: 1 GiB / 4 bytes / 3).
DEFAULT_MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3
#: the exclusion category of a path that leads out of the dataset root
OUTSIDE_ROOT = "path outside root"
INVALID_PATH = "invalid path"


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name ends with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


class DataExclusionWarning(UserWarning):
    """A dataset was read with excluded records: one per dataset load, with the counts per reason."""


class PathProblem(DataFormatError):
    """A path from the data that leads out of the dataset root, or is no usable path at all."""

    def __init__(self, category: str, detail: str):
        self.category, self.detail = category, detail
        super().__init__(f"{category}: {detail}")


class UnreadableImage(DataFormatError):
    """An image PIL cannot decode or that is over the pixel limit; the message is the cause only
    (callers add the dataset, row and file)."""


class Exclusions:
    """Accumulates ``(source, row, reason, category)`` records; :meth:`frame` gives the DataFrame.

    ``reason`` is ``category`` followed by ``: detail`` (the offending value). With ``strict``,
    :meth:`reject` raises instead of recording.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self._rows: list[tuple[str, int, str, str]] = []

    def add(self, source: str | os.PathLike, row: int, category: str, detail: str = "") -> None:
        reason = f"{category}: {detail}" if detail else category
        self._rows.append((str(source), int(row), reason, category))

    def reject(self, source: str | os.PathLike, row: int, category: str, detail: str = "",
               where: str | None = None) -> None:
        """:meth:`add`, or under ``strict`` a :class:`DataFormatError` naming the file and row
        (``where`` replaces the default ``row N``)."""
        if self.strict:
            where = where or (f"row {row}" if row >= 0 else "")
            raise DataFormatError(f"{source}: {where + ': ' if where else ''}{category}: {detail}")
        self.add(source, row, category, detail)

    def __len__(self) -> int:
        return len(self._rows)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._rows, columns=list(EXCLUSION_COLUMNS)).astype({"row": "int64"})


class DatasetRoot:
    """The real path of one dataset's root: the one place where readers turn data into file paths.

    :meth:`locate` resolves a path from the data one component at a time, starting at the root:
    ``..`` may not climb above the root, an absolute path must lie under it, and a symlink is read
    (``os.readlink`` of a link inside the root) and followed only while its target stays inside. So
    nothing outside the root is ever opened, listed or stat'ed, not even to learn that it exists. The
    result is the real path (no symlink left in it) that the reader then opens. :meth:`folders` and
    :meth:`walk` list directories under the same rule.
    """

    MAX_LINKS = 40

    def __init__(self, root: str | os.PathLike):
        self.given = os.path.abspath(os.fspath(root))
        self.path = Path(os.path.realpath(self.given))
        self.real = str(self.path)

    def __repr__(self) -> str:
        return f"DatasetRoot({self.real!r})"

    def inside(self, path: str) -> bool:
        """True when the (normalised, real) ``path`` is the root or under it."""
        return path == self.real or path.startswith(self.real.rstrip(os.sep) + os.sep)

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the root when it is under it, else as given."""
        path = os.fspath(path)
        for base in (self.real, self.given):
            if path == base or path.startswith(base.rstrip(os.sep) + os.sep):
                return os.path.relpath(path, base)
        return path

    def locate(self, value: str | os.PathLike, under: str = "") -> str:
        """The real path of ``value`` (relative to ``under``, itself relative to the root, or
        absolute); :class:`PathProblem` when it leaves the root or is no path."""
        text = os.fspath(value)
        if not isinstance(text, str) or "\x00" in text:
            raise PathProblem(INVALID_PATH, f"{value!r} is not a file name")
        text = text.replace("\\", "/")
        if os.path.isabs(text):
            for base in (self.real, self.given):
                if text.startswith(base.rstrip("/") + "/"):
                    return self._resolve(text[len(base.rstrip("/")) + 1:].split("/"), value)
            if self.inside(os.path.normpath(text)):
                return self._resolve(os.path.normpath(text)[len(self.real):].split("/"), value)
            raise PathProblem(OUTSIDE_ROOT, f"{value!r} is an absolute path outside the root {self.real}")
        parts = (under.replace("\\", "/").split("/") if under else []) + text.split("/")
        return self._resolve(parts, value)

    def _resolve(self, parts: list[str], value, start: str | None = None) -> str:
        pending = [p for p in reversed(parts) if p not in ("", ".")]
        current = start or self.real
        links = 0
        via = ""
        while pending:
            part = pending.pop()
            if part == "..":
                if current == self.real:
                    raise PathProblem(OUTSIDE_ROOT, f"{value!r} climbs above the root with '..'{via}")
                current = os.path.dirname(current)
                continue
            nxt = os.path.join(current, part)  # a direct child of a real folder inside the root
            try:
                is_link = stat.S_ISLNK(os.lstat(nxt).st_mode)
            except (OSError, ValueError):
                is_link = False
            if not is_link:
                current = nxt
                continue
            links += 1
            if links > self.MAX_LINKS:
                raise PathProblem(INVALID_PATH, f"{value!r}: more than {self.MAX_LINKS} symlinks (a loop?)")
            target = os.readlink(nxt)
            via = f" (through the symlink {self.relative(nxt)} -> {target})"
            if os.path.isabs(target):
                norm = os.path.normpath(target)
                base = next((b for b in (self.real, self.given)
                             if norm == b or norm.startswith(b.rstrip(os.sep) + os.sep)), None)
                if base is None:
                    raise PathProblem(OUTSIDE_ROOT, f"{value!r} leads outside the root{via}")
                current = self.real
                target = norm[len(base.rstrip(os.sep)):]
            pending.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
        return current

    def folders(self, rel: str = "", excl: Exclusions | None = None) -> list[tuple[str, str]]:
        """``(name, real path)`` of the folders in ``rel`` (symlinked ones followed while they stay
        inside; the others go to ``excl``), sorted by name. Names starting with ``.`` are skipped."""
        base = self.locate(rel) if rel else self.real
        out = []
        try:
            with os.scandir(base) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return []
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_symlink():
                try:
                    real = self._resolve([e.name], os.path.join(rel, e.name) if rel else e.name, start=base)
                except PathProblem as prob:
                    if excl is not None:
                        excl.reject(e.path, -1, prob.category, prob.detail)
                    continue
                if os.path.isdir(real):
                    out.append((e.name, real))
            elif e.is_dir(follow_symlinks=False):
                out.append((e.name, e.path))
        return out

    def walk(self, real_dir: str, excl: Exclusions) -> list[tuple[str, str]]:
        """``(name, real path)`` of every regular file under ``real_dir`` (a folder inside the root),
        recursively, in ``sorted(os.walk(...))`` order. Symlinks are followed while they stay inside; a
        link leading out (:meth:`Exclusions.reject`: an error when strict), a dangling link, a folder
        reached a second time (a link loop), a FIFO or device and an unreadable folder are excluded
        (``source`` = the entry, ``row`` -1)."""
        found: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        heap = [(real_dir, real_dir)]
        while heap:
            lex, real = heapq.heappop(heap)
            if real in seen:
                excl.add(lex, -1, "folder read twice", f"{self.relative(lex)} is {self.relative(real)} again")
                continue
            seen.add(real)
            try:
                with os.scandir(real) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                excl.add(lex, -1, "unreadable folder", f"{self.relative(lex)} ({exc.strerror or exc})")
                continue
            for e in entries:
                path = os.path.join(lex, e.name)
                if e.is_symlink():
                    try:
                        target = self._resolve([e.name], self.relative(path), start=real)
                    except PathProblem as prob:
                        excl.reject(path, -1, prob.category, prob.detail)
                        continue
                    try:
                        mode = os.stat(target).st_mode  # a real path inside the root
                    except OSError:
                        excl.add(path, -1, "broken symlink", f"{self.relative(path)} -> {os.readlink(e.path)}")
                        continue
                    is_dir, is_file = stat.S_ISDIR(mode), stat.S_ISREG(mode)
                else:  # the directory entry's own type: no system call on most file systems
                    target = e.path
                    is_dir, is_file = e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)
                if is_dir:
                    heapq.heappush(heap, (path, target))
                elif is_file:
                    found.append((lex, e.name, target))
                else:
                    excl.add(path, -1, "not a regular file", self.relative(path))
        found.sort(key=lambda t: (t[0], t[1]))
        return [(name, target) for _, name, target in found]


# ----- images -----------------------------------------------------------------------------------
_PIL_LIMIT_LOCK = threading.Lock()
_PIXELS = re.compile(r"\((\d+) pixels\)")


def pixel_limit(value) -> int | None:
    """A ``max_image_pixels`` option as PIL's limit: a positive int, or None (0 / None: no limit)."""
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Expected max_image_pixels to be a positive integer or 0 (no limit), but got {value!r}")
    return value


def _cause(path: str, exc: BaseException) -> str:
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
    except OSError:
        pass
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return f"truncated image ({text})"
    return f"cannot decode ({type(exc).__name__}: {text})"


def _open_image(path: str, max_pixels: int | None) -> Image.Image:
    """``PIL.Image.open`` (the header only) with ``max_pixels`` as the decompression-bomb limit.

    PIL reads its limit from a module global, so it is set for the duration of the call (under a lock)
    and restored; PIL's warning for an image between the limit and twice the limit is turned into the
    error, so the limit is exactly ``max_pixels``."""
    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                return Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        m = _PIXELS.search(str(exc))
        claimed = f"{int(m.group(1)):,} pixels" if m else "more pixels"
        raise UnreadableImage(f"decompression bomb: the header claims {claimed}, over the limit of "
                              f"{max_pixels:,} (option max_image_pixels)") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise UnreadableImage(_cause(path, exc)) from exc


def image_size(path: str, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """``(width, height)`` from the file's header; :class:`UnreadableImage` as :func:`read_image`."""
    with _open_image(path, max_pixels) as im:
        return im.size


def read_image(path: str, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """The decoded image as RGB; :class:`UnreadableImage` (the cause) for a bomb over ``max_pixels``
    (None: no limit), an empty or truncated file or anything else PIL cannot decode."""
    im = _open_image(path, max_pixels)
    try:
        with im:
            im.load()
            return im.convert("RGB")
    except MemoryError:
        raise
    except Exception as exc:
        raise UnreadableImage(_cause(path, exc)) from exc


_T = TypeVar("_T", bound="ImageTable")


def announce(ds: _T, stacklevel: int = 3) -> _T:
    """Warn once (:class:`DataExclusionWarning`) when ``ds`` has exclusions; return ``ds``.

    Every reader ends with it, so each load of a dataset with bad records says so, with the counts per
    reason and the first one."""
    if len(ds.exclusions):
        s = ds.exclusion_summary(first=1)
        counts = "; ".join(f"{r['count']} {r['reason']}" for r in s["reasons"])
        head = ds.exclusions.iloc[0]  # the first in reading order (a cause before its consequences)
        first = {"source": DatasetRoot(ds.root).relative(str(head["source"])), "row": int(head["row"]),
                 "reason": str(head["reason"])}
        if first["row"] >= 0:
            where = f" ({first['source']} row {first['row']})"
        else:
            where = "" if first["source"] in first["reason"] else f" ({first['source']})"
        warnings.warn(f"dataset {ds.name!r}: {s['excluded']} record(s) excluded, {s['items']} kept ({counts}); "
                      f"e.g. {first['reason']}{where}. All of them: .exclusions, and the report's Data section.",
                      DataExclusionWarning, stacklevel=stacklevel)
    return ds


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
            seps = [name for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars"))
                    if len(df.columns) == 1 and sep in df.columns[0]]
            hint = f" (the header looks separated by {seps[0]}; expected commas)" if seps else ""
            raise DataFormatError(
                f"{path}: missing required column {col!r}{also}; found columns: {', '.join(df.columns)}{hint}"
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
        exclusions: ``source, row, reason, category`` for every skipped record.
        meta: counts and choices made while reading (reported, never needed to score).
        max_image_pixels: the pixel limit of :meth:`load_image` (see the module doc).
    """

    name: str
    root: Path
    table: pd.DataFrame
    exclusions: pd.DataFrame = field(default_factory=_empty_exclusions)
    meta: dict = field(default_factory=dict)
    #: the decompression-bomb limit of :meth:`load_image` (None: no limit)
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS

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

        Raises :class:`DataFormatError` naming the dataset, the row and the file if it cannot be
        decoded (a decompression bomb over :attr:`max_image_pixels`, an empty or truncated file...).
        """
        path = self.table.at[i, "path"]
        try:
            img = read_image(path, self.max_image_pixels)
        except UnreadableImage as exc:
            raise DataFormatError(f"dataset {self.name!r}, row {i}: image {path}: {exc}") from exc
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

    def exclusion_summary(self, first: int = 5) -> dict:
        """What was read and what was left out, JSON-able (the report's Data section, the load warning).

        ``{"name", "type", "root", "items", "excluded", "reasons": [{"reason", "count", "first": [{"source",
        "row", "reason"}, ...]}]}``: one entry per exclusion category, most frequent first, with its first
        ``first`` records (``source`` relative to the root when under it).
        """
        ex = self.exclusions
        root = DatasetRoot(self.root)
        reasons = []
        if len(ex):
            cats = ex["category"] if "category" in ex.columns else ex["reason"]
            counts = cats.value_counts(sort=False)
            order = sorted(counts.index, key=lambda c: (-int(counts[c]), str(c)))
            for cat in order:
                sel = ex[cats == cat].head(first)
                reasons.append({
                    "reason": str(cat), "count": int(counts[cat]),
                    "first": [{"source": root.relative(str(r.source)), "row": int(r.row), "reason": str(r.reason)}
                              for r in sel.itertuples(index=False)],
                })
        return {"name": self.name, "type": type(self).__name__, "root": str(self.root), "items": len(self),
                "excluded": len(ex), "reasons": reasons}

    def summary(self) -> str:
        """One paragraph: name, rows, root, exclusions by reason, and notable meta counts."""
        kind = type(self).__name__
        lines = [f"{self.name} ({kind}): {len(self)} samples from {self.root}"]
        if len(self.exclusions):
            col = "category" if "category" in self.exclusions.columns else "reason"
            counts = self.exclusions[col].value_counts()
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
