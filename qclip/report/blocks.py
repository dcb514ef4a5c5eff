"""The report's building blocks: sections of paragraphs, lists, tables, figures and collapsed details.

:mod:`.markdown` and :mod:`.html` render the same blocks, so both formats carry the
same content; where they differ on purpose (a collapsed detail table in HTML, a
short list in Markdown) the block carries both forms.
"""

from __future__ import annotations

import html as _html
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["Bullets", "Cell", "Details", "Heading", "Image", "Para", "Section", "Table"]


@dataclass
class Para:
    text: str


@dataclass
class Heading:
    """A sub-heading inside a section (``###`` / ``<h3>``)."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Cell:
    """A table cell with a plain-text form (Markdown, CSV) and a richer HTML form.

    ``html`` is already escaped markup; ``css`` is the ``<td>`` class (``sig05``,
    ``sig10``, ``up``, ``down``, ``muted``; a verdict's ``vequiv``, ``vdiff``).
    """

    text: str
    html: str | None = None
    css: str = ""

    def __str__(self) -> str:
        return self.text

    def markup(self) -> str:
        return self.html if self.html is not None else _html.escape(self.text, quote=False)


@dataclass
class Table:
    """A table of display values (str or :class:`Cell`).

    ``group_col``: a column whose repeated values are blanked (the paper's layout,
    a quantizer written once per block of rows); HTML also rules a line above each block.
    """

    df: pd.DataFrame
    caption: str = ""
    group_col: str | None = None


@dataclass
class Image:
    filename: str
    alt: str
    caption: str = ""


@dataclass
class Details:
    """Collapsed in HTML (``<details>``); in Markdown ``markdown`` is written instead,
    or ``blocks`` themselves when ``markdown`` is None."""

    summary: str
    blocks: list = field(default_factory=list)
    markdown: list | None = None


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
