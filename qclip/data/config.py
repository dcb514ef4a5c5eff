"""Where the datasets are: the ``[datasets.<name>]`` tables of ``qclip.toml``.

Example::

    [datasets.imagenet]
    kind = "imagefolder"          # imagefolder | coco | facet | fairface | ood | spurious | cifar-c | counteranimal
    root = "/data/imagenet/val"   # relative roots resolve against this file's folder
    classnames = "imagenet"
    templates = "openai"

    [datasets.facet]
    kind = "facet"
    root = "facet"
    skin_rule = "plurality"
    lighter = [1, 4]

Every other key of a dataset table is a reader option (see :data:`KINDS` for the ones
each kind accepts, :data:`OPTION_TYPES` for their types); every kind takes ``strict``
(a path leading out of the root is an error rather than an exclusion; FACET's default
is true, the others' false) and ``max_image_pixels`` (the decompression-bomb limit,
default PIL's 89,478,485; 0 for none). An unknown key or a value of the wrong type is a
:class:`DataConfigError` of one line naming the file, the dataset and the key. File-valued options
``classnames``, ``templates``, ``wnids``, ``prompts`` resolve like ``root``, against
the config file's folder (keywords ``imagenet``, ``openai``, ``simple`` excepted);
``annotation``, ``labels`` and ``metadata`` are relative to the dataset root, as the
readers take them. ``~`` and ``$VARS`` are expanded in roots and paths. Top-level
tables other than ``[datasets]`` are left for other parts of qclip.

:meth:`DataConfig.load` with no path reads ``$QCLIP_DATA`` if set, else
``./qclip.toml`` if present, else gives an empty config. A configured dataset whose
root is absent is not an error: :meth:`DatasetEntry.available` returns ``False`` and
a reason of one line that names the file, the key (``root``), the root and the expected
layout, and cells are skipped with it; :meth:`DatasetEntry.load` raises it as a
:class:`DatasetRootMissing`, which is both a :class:`DataConfigError` and a
:class:`~qclip.errors.DatasetUnavailable`.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from qclip.data import cifar_c, coco, counteranimal, facet, fairface, imagefolder, spurious
from qclip.errors import DataFormatError, DatasetUnavailable, UnknownDatasetError, suggest

__all__ = ["DataConfig", "DatasetEntry", "DataConfigError", "DatasetRootMissing", "KINDS", "Kind", "OPTION_TYPES"]


class DataConfigError(DataFormatError):
    """A malformed data config (TOML syntax, unknown kind or option, wrong type); one line naming the file
    and the key."""


class DatasetRootMissing(DataConfigError, DatasetUnavailable):
    """A configured root that does not exist (or is no folder): a config error naming the file and the key,
    and an unavailable dataset, so its cells are skipped with this reason."""


class Kind(NamedTuple):
    reader: Callable[..., Any]
    layout: str
    problem: Callable[..., str | None]
    options: frozenset[str]


_COMMON = frozenset({"strict", "max_image_pixels"})
KINDS: dict[str, Kind] = {
    "imagefolder": Kind(imagefolder.read_imagefolder, imagefolder.LAYOUT, imagefolder.layout_problem,
                        _COMMON | {"classnames", "templates", "wnids"}),
    "coco": Kind(coco.read_coco_captions, coco.LAYOUT, coco.layout_problem, _COMMON | {"annotation"}),
    "facet": Kind(facet.read_facet, facet.LAYOUT, facet.layout_problem,
                  _COMMON | {"classnames", "templates", "skin_rule", "lighter", "darker", "min_box", "annotation"}),
    "fairface": Kind(fairface.read_fairface, fairface.LAYOUT, fairface.layout_problem,
                     _COMMON | {"prompts", "labels"}),
    "ood": Kind(imagefolder.read_ood_folder, imagefolder.OOD_LAYOUT, imagefolder.ood_layout_problem, _COMMON),
    "spurious": Kind(spurious.read_spurious, spurious.LAYOUT, spurious.layout_problem,
                     _COMMON | {"metadata", "split", "classnames", "templates"}),
    "cifar-c": Kind(cifar_c.read_cifar_c, cifar_c.LAYOUT, cifar_c.layout_problem,
                    _COMMON | {"corruptions", "severities", "classnames", "templates"}),
    "counteranimal": Kind(counteranimal.read_counteranimal, counteranimal.LAYOUT, counteranimal.layout_problem,
                          _COMMON | {"split", "classnames", "templates"}),
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _names(v) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _tones(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(_is_int(x) and 1 <= x <= 10 for x in v)


#: option -> (what it must be, in words; the check)
OPTION_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "classnames": ("a string (a file, or 'imagenet') or a list of strings", _names),
    "templates": ("a string (a file, or 'openai' / 'simple') or a list of strings", _names),
    "wnids": ("a string (a file) or a list of strings", _names),
    "annotation": ("a string (a path)", lambda v: isinstance(v, str)),
    "labels": ("a string (a path)", lambda v: isinstance(v, str)),
    "prompts": ("a string (a path)", lambda v: isinstance(v, str)),
    "metadata": ("a string (a path)", lambda v: isinstance(v, str)),
    "skin_rule": ("'plurality' or 'median'", lambda v: v in ("plurality", "median")),
    "lighter": ("a list of Monk tones 1..10 ([lo, hi] or the tones)", _tones),
    "darker": ("a list of Monk tones 1..10 ([lo, hi] or the tones)", _tones),
    "min_box": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "strict": ("true or false", lambda v: isinstance(v, bool)),
    "split": ("a split name or an integer", lambda v: isinstance(v, str) or _is_int(v)),
    "max_image_pixels": ("an integer >= 0 (0: no limit)", lambda v: _is_int(v) and v >= 0),
    "corruptions": ("a list of corruption names (their .npy files' stems)",
                    lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) for x in v)),
    "severities": ("a list of severities 1..5",
                   lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(x) and 1 <= x <= 5 for x in v)),
}


def _short(value) -> str:
    """The value as the TOML file wrote it (near enough: JSON), cut at 80 characters."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


_FILE_OPTIONS = ("classnames", "templates", "wnids", "prompts")
_KEYWORDS = ("imagenet", "openai", "simple", "folders")  # "folders": counteranimal's label space


def _expand(value: str, base: Path) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return p if p.is_absolute() else (base / p).resolve()


@dataclass(frozen=True)
class DatasetEntry:
    """One configured dataset: its name, kind, root (None when unset) and reader options."""

    name: str
    kind: str
    root: Path | None
    options: dict = field(default_factory=dict, hash=False)
    source: str = "<code>"

    @property
    def layout(self) -> str:
        """The expected on-disk layout, with ``<root>`` replaced by the configured root."""
        text = KINDS[self.kind].layout
        return text.replace("<root>", str(self.root)) if self.root is not None else text

    def _root_missing(self) -> str | None:
        if self.root.is_dir():
            return None
        what = "is not a folder" if self.root.exists() else "does not exist"
        return f"{self.source}: [datasets.{self.name}] root: {self.root} {what}; expected {self.layout}"

    def available(self) -> tuple[bool, str]:
        """``(True, "")`` when the layout is on disk, else ``(False, reason)``."""
        if self.root is None:
            return False, f"dataset {self.name!r} ({self.kind}) has no root in {self.source}; expected {self.layout}"
        missing = self._root_missing()
        if missing:
            return False, missing
        problem = KINDS[self.kind].problem(self.root, **self.options)
        if problem:
            return False, f"dataset {self.name!r} ({self.kind}): {problem}; expected {self.layout}"
        return True, ""

    def load(self):
        """Read the dataset with its kind's reader; :class:`DatasetUnavailable` if absent."""
        ok, reason = self.available()
        if not ok:
            missing = self.root is not None and self._root_missing() is not None
            raise (DatasetRootMissing if missing else DatasetUnavailable)(reason)
        return KINDS[self.kind].reader(self.root, name=self.name, **self.options)


class DataConfig:
    """The configured datasets, by name."""

    def __init__(self, entries: dict[str, DatasetEntry] | None = None, sources: tuple[str, ...] = ()):
        self._entries: dict[str, DatasetEntry] = dict(entries or {})
        self.sources = tuple(sources)

    # ----- construction -----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> DataConfig:
        """Read a TOML file (see the module doc for the lookup when ``path`` is None)."""
        if path is None:
            env = os.environ.get("QCLIP_DATA")
            if env:
                path = env
            elif Path("qclip.toml").is_file():
                path = "qclip.toml"
            else:
                return cls()
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise DataConfigError(f"data config {path} does not exist")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DataConfigError(f"{path}: not valid TOML ({exc})") from exc
        return cls.from_dict(data, base_dir=path.parent, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, base_dir: str | os.PathLike = ".", source: str = "<dict>") -> DataConfig:
        """Build from a parsed TOML document (its ``datasets`` table)."""
        base = Path(base_dir).resolve()
        datasets = data.get("datasets", {})
        if not isinstance(datasets, dict):
            raise DataConfigError(f"{source}: expected [datasets] to be a table, but got {type(datasets).__name__}")
        entries = {}
        for name, table in datasets.items():
            if not isinstance(table, dict):
                raise DataConfigError(f"{source}: expected [datasets.{name}] to be a table")
            entries[name] = cls._entry(name, dict(table), base, source)
        return cls(entries, (source,))

    @staticmethod
    def _entry(name: str, table: dict, base: Path, source: str) -> DatasetEntry:
        kind = table.pop("kind", None)
        if kind not in KINDS:
            got = "no kind" if kind is None else repr(kind)
            raise DataConfigError(
                f"{source}: [datasets.{name}] expected kind to be one of {', '.join(KINDS)}, but got {got}."
                + (suggest(str(kind), KINDS) if kind is not None else "")
            )
        root = table.pop("root", None)
        if root is not None and not isinstance(root, str):
            raise DataConfigError(f"{source}: [datasets.{name}] root: expected a string, but got {_short(root)}")
        unknown = sorted(set(table) - KINDS[kind].options)
        if unknown:
            keys = ", ".join(repr(k) for k in unknown)
            raise DataConfigError(
                f"{source}: [datasets.{name}] unknown key{'s' if len(unknown) > 1 else ''} {keys} for kind "
                f"{kind!r}.{suggest(unknown[0], KINDS[kind].options | {'kind', 'root'})}"
            )
        for key, value in table.items():
            what, ok = OPTION_TYPES[key]
            if not ok(value):
                raise DataConfigError(f"{source}: [datasets.{name}] {key}: expected {what}, but got {_short(value)}")
        for key in _FILE_OPTIONS:
            value = table.get(key)
            if isinstance(value, str) and value not in _KEYWORDS:
                table[key] = str(_expand(value, base))
        return DatasetEntry(name=name, kind=kind, root=_expand(root, base) if root is not None else None,
                            options=table, source=source)

    def merge(self, other: DataConfig, on_conflict: str = "error") -> DataConfig:
        """A new config with ``other``'s datasets added.

        ``on_conflict``: ``'error'`` (a name defined in both raises
        :class:`DataConfigError`), ``'keep'`` (this config's entry wins) or ``'replace'``.
        """
        if on_conflict not in ("error", "keep", "replace"):
            raise ValueError(f"Expected on_conflict 'error', 'keep' or 'replace', but got {on_conflict!r}")
        entries = dict(self._entries)
        for name, entry in other._entries.items():
            if name in entries:
                if on_conflict == "error":
                    raise DataConfigError(
                        f"dataset {name!r} is defined in both {entries[name].source} and {entry.source}"
                    )
                if on_conflict == "keep":
                    continue
            entries[name] = entry
        return DataConfig(entries, self.sources + other.sources)

    # ----- lookup -----------------------------------------------------------------------------
    def names(self, kind: str | None = None) -> list[str]:
        """Sorted dataset names, optionally only those of one kind."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"Expected kind among {', '.join(KINDS)}, but got {kind!r}")
        return sorted(n for n, e in self._entries.items() if kind is None or e.kind == kind)

    def get(self, name: str) -> DatasetEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownDatasetError(name, self._entries) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[DatasetEntry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"DataConfig({', '.join(f'{n}:{self._entries[n].kind}' for n in self.names())})"
