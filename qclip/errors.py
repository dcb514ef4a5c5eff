"""Error types of qclip. Lookups that fail suggest the closest known names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "QclipError",
    "UnknownQuantizerError",
    "UnknownModelError",
    "UnknownDatasetError",
    "ModelUnavailable",
    "DatasetUnavailable",
    "DataFormatError",
    "CacheCorruptError",
    "suggest",
]


def suggest(name: str, known: Iterable[str], n: int = 3) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Known: {', '.join(known)}."


class QclipError(Exception):
    """Base class of qclip's own errors."""


class UnknownQuantizerError(QclipError, KeyError):
    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        super().__init__(f"Unknown quantizer {name!r}.{suggest(name, known)}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class UnknownModelError(QclipError, KeyError):
    def __init__(self, spec: str, message: str):
        self.spec = spec
        super().__init__(message)

    def __str__(self) -> str:
        return self.args[0]


class UnknownDatasetError(QclipError, KeyError):
    def __init__(self, name: str, known: Iterable[str]):
        super().__init__(f"Unknown dataset {name!r}.{suggest(name, known)}")

    def __str__(self) -> str:
        return self.args[0]


class ModelUnavailable(QclipError):
    """A model spec whose weights are not on this machine; cells using it are skipped with this reason."""


class DatasetUnavailable(QclipError):
    """A dataset whose root is not configured or absent; cells using it are skipped with this reason."""


class DataFormatError(QclipError, ValueError):
    """Malformed input data; the message names the file and the column or row."""


class CacheCorruptError(QclipError):
    """A cache entry failed its checksum or could not be read; it is recomputed."""
