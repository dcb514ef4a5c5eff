"""Class-per-folder datasets (ImageNet-1k val and its folder-style shift sets) and OOD folders.

Layout: ``<root>/<class folder>/**/<image>`` as torchvision's ImageFolder: class
folders are the root's sub-directories in sorted order (names starting with ``.``
skipped), images are found recursively with the extensions of
:data:`~qclip.data.base.IMAGE_EXTENSIONS` in any case. Other files inside a class
folder are counted in ``exclusions`` (reason ``not an image file: <file>``); files
directly in the root are ignored (``classnames.txt`` etc. live there). Symlinks (class
folders, sub-folders, files) are followed while they stay inside the root
(:class:`~qclip.data.base.DatasetRoot`); one that leads out is excluded as ``path
outside root`` naming the link and its target (an error with ``strict=True``), as are a
dangling link, a folder reached twice (a link loop) and anything not a regular file.

Label space and folder mapping (``meta['label_mapping']`` says which rule applied):

* ``classnames=None`` and no ``<root>/classnames.txt``: the label space is the folders,
  sorted; class names are the folder names with ``_`` turned into spaces
  (``'folders'``).
* otherwise the label space is the given list (``'imagenet'`` = open_clip's 1000
  ``IMAGENET_CLASSNAMES``; a list; a file; or ``<root>/classnames.txt``), and each
  folder is mapped, first rule that covers *every* folder wins (the ImageNet-1k wnid
  list ships as ``qclip/data/prompts/imagenet_wnids.txt``, source in its header):
  ``'index'`` (all folder names are integers 0..K-1), ``'wnid'`` (all folders are in the
  wnid list: the shipped ImageNet-1k list for ``'imagenet'``, else the ``wnids`` option
  or ``<root>/wnids.txt``), ``'name'`` (folder names equal class names, compared
  case-insensitively with ``_`` = space), ``'position'`` (as many folders as classes:
  i-th sorted folder = class i, torchvision's behaviour). Anything else is a
  :class:`~qclip.errors.DataFormatError` naming the folders that did not map.
  Shift sets with a class subset (ImageNet-R/-A: 200 wnid folders) thus keep the
  1000-class label space; ``ClassificationSet.present_labels`` lists the 200.

Templates: ``templates=None`` uses ``<root>/templates.txt`` if present, else the 80
OpenAI templates for ``classnames='imagenet'``, else ``["a photo of a {}."]``.

:func:`read_ood_folder` reads any folder recursively (every image file, any depth)
into a plain :class:`~qclip.data.base.ImageTable` with columns ``path, relpath``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from qclip.data.base import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ClassificationSet,
    DatasetRoot,
    Exclusions,
    ImageTable,
    announce,
    is_image_file,
    pixel_limit,
)
from qclip.data.prompts import imagenet_classnames, imagenet_wnids, resolve_names, resolve_templates
from qclip.errors import DataFormatError, DatasetUnavailable

__all__ = ["read_imagefolder", "read_ood_folder", "LAYOUT", "OOD_LAYOUT", "layout_problem", "ood_layout_problem"]

LAYOUT = "<root>/<class folder: wnid, index or name>/<image>.jpg (torchvision ImageFolder)"
OOD_LAYOUT = "<root>/**/<image> (any image files, any depth)"


def layout_problem(root: Path, **_options) -> str | None:
    """None when ``root`` looks like an ImageFolder, else what is missing."""
    root = Path(root)
    if not root.is_dir():
        return f"root {root} does not exist or is not a folder"
    if not DatasetRoot(root).folders():
        return f"root {root} has no class sub-folders (inside the root)"
    return None


def ood_layout_problem(root: Path, **_options) -> str | None:
    root = Path(root)
    if not root.is_dir():
        return f"root {root} does not exist or is not a folder"
    return None


def _walk_images(root: DatasetRoot, folder: str, excl: Exclusions) -> list[str]:
    out: list[str] = []
    for fn, path in root.walk(folder, excl):
        if is_image_file(fn):
            out.append(path)
        else:
            excl.add(path, -1, "not an image file", root.relative(path))
    return out


def _norm(s: str) -> str:
    return " ".join(s.replace("_", " ").lower().split())


def _map_folders(folders: list[str], classnames: list[str], wnids: list[str] | None) -> tuple[dict[str, int], str]:
    k = len(classnames)
    if all(f.isdigit() for f in folders):
        bad = [f for f in folders if int(f) >= k]
        if not bad:
            return {f: int(f) for f in folders}, "index"
    if wnids is not None and all(f in wnids for f in folders):
        if len(wnids) != k:
            raise DataFormatError(f"Expected {k} wnids (one per class name), but got {len(wnids)}")
        pos = {w: i for i, w in enumerate(wnids)}
        return {f: pos[f] for f in folders}, "wnid"
    by_name = {_norm(c): i for i, c in enumerate(classnames)}
    if all(_norm(f) in by_name for f in folders):
        return {f: by_name[_norm(f)] for f in folders}, "name"
    if len(folders) == k:
        return {f: i for i, f in enumerate(folders)}, "position"
    unmapped = [f for f in folders if _norm(f) not in by_name][:10]
    raise DataFormatError(
        f"Cannot map the class folders to the {k} class names: {len(folders)} folders, and "
        f"e.g. {unmapped} are neither indices < {k}, known wnids, nor class names"
    )


def read_imagefolder(
    root: str | os.PathLike,
    name: str | None = None,
    classnames: str | os.PathLike | Sequence[str] | None = None,
    templates: str | os.PathLike | Sequence[str] | None = None,
    wnids: str | os.PathLike | Sequence[str] | None = None,
    strict: bool = False,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> ClassificationSet:
    """Read a torchvision ImageFolder tree as a :class:`ClassificationSet`.

    Table columns: ``path`` (real path), ``label`` (int), ``folder`` (class folder name).
    See the module doc for the label-space and template rules; ``strict`` makes a symlink
    leading out of the root an error, ``max_image_pixels`` is the decompression-bomb limit.
    """
    guard = DatasetRoot(root)
    root = guard.path
    name = name or root.name
    problem = layout_problem(root)
    if problem:
        raise DatasetUnavailable(f"{name}: {problem}; expected {LAYOUT}")
    excl = Exclusions(strict)
    real_of = dict(guard.folders(excl=excl))
    folders = sorted(real_of)

    wnid_list = resolve_names(wnids, "wnids")
    if classnames == "imagenet":
        names = imagenet_classnames()
        wnid_list = wnid_list or imagenet_wnids()
        source = "imagenet"
    else:
        names = resolve_names(classnames, "classnames")
        source = "option"
        if names is None and (root / "classnames.txt").is_file():
            names = resolve_names(root / "classnames.txt", "classnames")
            source = "classnames.txt"
    if wnid_list is None and (root / "wnids.txt").is_file():
        wnid_list = resolve_names(root / "wnids.txt", "wnids")

    if names is None:
        names = [f.replace("_", " ") for f in folders]
        mapping, how = {f: i for i, f in enumerate(folders)}, "folders"
        source = "folders"
    else:
        mapping, how = _map_folders(folders, names, wnid_list)

    if templates is None and classnames == "imagenet" and not (root / "templates.txt").is_file():
        tmpl = resolve_templates("openai")
    else:
        tmpl = resolve_templates(templates, root)

    rows = []
    empty = []
    for f in folders:
        paths = _walk_images(guard, real_of[f], excl)
        if not paths:
            empty.append(f)
        rows.extend((p, mapping[f], f) for p in paths)
    table = pd.DataFrame(rows, columns=["path", "label", "folder"]).astype({"label": "int64"})
    meta = {
        "label_mapping": how,
        "classnames_source": source,
        "num_classes": len(names),
        "num_folders": len(folders),
        "empty_folders": len(empty),
    }
    return announce(ClassificationSet(name=name, root=root, table=table, exclusions=excl.frame(), meta=meta,
                                      max_image_pixels=pixel_limit(max_image_pixels),
                                      classnames=list(names), templates=tmpl))


def read_ood_folder(root: str | os.PathLike, name: str | None = None, strict: bool = False,
                    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> ImageTable:
    """Every image under ``root`` (recursive) as an :class:`ImageTable` (``path, relpath``).

    Symlinks follow the rule of :func:`read_imagefolder`; ``relpath`` is the file's place in the tree."""
    guard = DatasetRoot(root)
    root = guard.path
    name = name or root.name
    problem = ood_layout_problem(root)
    if problem:
        raise DatasetUnavailable(f"{name}: {problem}; expected {OOD_LAYOUT}")
    excl = Exclusions(strict)
    paths = _walk_images(guard, guard.real, excl)
    table = pd.DataFrame({"path": paths, "relpath": [os.path.relpath(p, root) for p in paths]})
    return announce(ImageTable(name=name, root=root, table=table, exclusions=excl.frame(),
                               meta={"num_images": len(paths)}, max_image_pixels=pixel_limit(max_image_pixels)))
