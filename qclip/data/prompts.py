"""Class names, prompt templates and prompt lists: the text side of every dataset.

Conventions:

* A template is a ``str`` with one ``{}`` placeholder (``"a photo of a {}."``);
  :func:`format_prompts` substitutes with ``str.replace``, so other braces in a
  template are kept literally. Callables (``classname -> str``) are accepted too.
* open_clip's ``OPENAI_IMAGENET_TEMPLATES`` / ``SIMPLE_IMAGENET_TEMPLATES`` are
  lambdas; :func:`resolve_templates` turns them into format strings by calling each
  with ``"{}"`` (this reproduces every one of them exactly). The lists themselves are
  read from the installed open_clip at run time (its ``zero_shot_metadata.py`` is
  executed on its own, so torch is not imported just for names), never copied.
* Text files (class names, templates, wnids) hold one entry per line; blank lines and
  lines starting with ``#`` are skipped; a UTF-8 BOM and CRLF endings are tolerated.
* Shipped data (``qclip/data/prompts/``): ``facet_classes.txt`` (52 FACET classes),
  ``imagenet_wnids.txt`` (the 1000 sorted ImageNet-1k wnids) and
  ``fairface_prompts.csv`` (Berg et al. 2022); each file's header names its source.
"""

from __future__ import annotations

import csv
import functools
import importlib
import importlib.util
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from qclip.errors import DataFormatError

__all__ = [
    "PROMPTS_DIR",
    "DEFAULT_TEMPLATES",
    "read_lines",
    "format_prompts",
    "resolve_templates",
    "resolve_names",
    "imagenet_classnames",
    "imagenet_wnids",
    "facet_classes",
    "load_fairface_prompts",
]

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
#: used when a dataset names no templates and its root has no ``templates.txt``.
DEFAULT_TEMPLATES = ["a photo of a {}."]

Template = str | Callable[[str], str]


@functools.lru_cache(maxsize=1)
def _zero_shot_metadata():
    """open_clip's ``zero_shot_metadata`` module, without importing torch when possible.

    The module has no imports of its own, so it is executed from open_clip's installed
    file directly (importing the ``open_clip`` package would pull in torch: seconds).
    Falls back to a plain import when open_clip is already loaded or laid out otherwise.
    """
    loaded = sys.modules.get("open_clip.zero_shot_metadata")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / "zero_shot_metadata.py"
        if path.is_file():
            sub = importlib.util.spec_from_file_location("_qclip_open_clip_zero_shot_metadata", path)
            if sub is not None and sub.loader is not None:
                module = importlib.util.module_from_spec(sub)
                sub.loader.exec_module(module)
                return module
    return importlib.import_module("open_clip.zero_shot_metadata")


def read_lines(path: str | os.PathLike) -> list[str]:
    """Non-blank, non-``#`` lines of a UTF-8 text file, stripped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc})") from exc
    return [s.strip() for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")]


def format_prompts(templates: Sequence[Template], classname: str) -> list[str]:
    """One prompt per template for ``classname`` (``{}`` replaced; callables called)."""
    return [t(classname) if callable(t) else t.replace("{}", classname) for t in templates]


def _check_templates(templates: list[str], origin: str) -> list[str]:
    if not templates:
        raise DataFormatError(f"{origin}: no templates")
    for t in templates:
        if "{}" not in t:
            raise DataFormatError(f"{origin}: expected each template to contain '{{}}', but got {t!r}")
    return templates


def resolve_templates(spec: str | os.PathLike | Sequence[str] | None, root: Path | None = None,
                      default: Sequence[str] = DEFAULT_TEMPLATES) -> list[str]:
    """Templates from a spec: ``'openai'`` (80), ``'simple'`` (7), a list, or a file path.

    ``None`` means ``<root>/templates.txt`` when it exists, else ``default``.
    """
    if spec is None:
        if root is not None and (Path(root) / "templates.txt").is_file():
            return _check_templates(read_lines(Path(root) / "templates.txt"), str(Path(root) / "templates.txt"))
        return list(default)
    if isinstance(spec, str) and spec in ("openai", "simple"):
        zsm = _zero_shot_metadata()
        src = zsm.OPENAI_IMAGENET_TEMPLATES if spec == "openai" else zsm.SIMPLE_IMAGENET_TEMPLATES
        return [t("{}") if callable(t) else str(t) for t in src]
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if not path.is_file():
            raise DataFormatError(
                f"Expected templates to be 'openai', 'simple', a list or an existing file, but got {str(spec)!r}"
            )
        return _check_templates(read_lines(path), str(path))
    return _check_templates([str(t) for t in spec], "templates option")


def resolve_names(spec: str | os.PathLike | Sequence[str] | None, what: str) -> list[str] | None:
    """A list of names from a list or a text file path (``None`` stays ``None``)."""
    if spec is None:
        return None
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if not path.is_file():
            raise DataFormatError(f"Expected {what} to be a list or an existing file, but got {str(spec)!r}")
        names = read_lines(path)
        if not names:
            raise DataFormatError(f"{path}: no {what}")
        return names
    return [str(n) for n in spec]


def imagenet_classnames() -> list[str]:
    """open_clip's 1000 ImageNet class names (index order)."""
    return list(_zero_shot_metadata().IMAGENET_CLASSNAMES)


def imagenet_wnids(path: str | os.PathLike | None = None) -> list[str]:
    """The 1000 sorted ImageNet-1k wnids (shipped list, or ``path``)."""
    wnids = read_lines(path or PROMPTS_DIR / "imagenet_wnids.txt")
    if path is None and len(wnids) != 1000:  # pragma: no cover - guards the shipped file
        raise DataFormatError(f"{PROMPTS_DIR / 'imagenet_wnids.txt'}: expected 1000 wnids, got {len(wnids)}")
    return wnids


def facet_classes(path: str | os.PathLike | None = None) -> list[str]:
    """FACET class keys (underscored) from the shipped list, or ``path``."""
    return read_lines(path or PROMPTS_DIR / "facet_classes.txt")


_VALENCES = ("favourable", "unfavourable")


def load_fairface_prompts(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The FairFace prompt list: columns ``template, concept, valence, prompt``.

    File format (see the shipped ``fairface_prompts.csv``): leading ``#`` lines are
    comments, then a CSV with columns ``template, concept`` and optional ``valence``
    (``favourable``/``unfavourable``, empty when unknown). If any row lacks a template
    or a concept, the file is two lists and the prompts are their cross product
    (template-major order); otherwise each row is one prompt.
    """
    path = Path(path) if path is not None else PROMPTS_DIR / "fairface_prompts.csv"
    raw = path.read_text(encoding="utf-8-sig").splitlines()
    body = [line for line in raw if not line.lstrip().startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(body))))
    fields = [f.strip() for f in (csv.DictReader(io.StringIO("\n".join(body))).fieldnames or [])]
    for col in ("template", "concept"):
        if col not in fields:
            raise DataFormatError(f"{path}: missing required column {col!r}; found columns: {', '.join(fields)}")
    clean = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in rows]
    for i, r in enumerate(clean):
        if r.get("valence", "") not in ("", *_VALENCES):
            raise DataFormatError(
                f"{path}: row {i} column 'valence': expected one of {_VALENCES} or empty, but got {r['valence']!r}"
            )
        if r["template"] and "{}" not in r["template"]:
            raise DataFormatError(f"{path}: row {i} column 'template': expected a '{{}}' placeholder, got {r['template']!r}")
    if all(r["template"] and r["concept"] for r in clean):
        out = [(r["template"], r["concept"], r.get("valence", "")) for r in clean]
    else:
        templates = [r["template"] for r in clean if r["template"]]
        concepts = [(r["concept"], r.get("valence", "")) for r in clean if r["concept"]]
        out = [(t, c, v) for t in templates for c, v in concepts]
    if not out:
        raise DataFormatError(f"{path}: no prompts")
    df = pd.DataFrame(out, columns=["template", "concept", "valence"])
    df["prompt"] = [t.replace("{}", c) for t, c in zip(df["template"], df["concept"], strict=True)]
    return df
