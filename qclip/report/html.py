"""Render the report's sections as one self-contained HTML file.

Inline CSS, images embedded as ``data:image/png;base64`` URIs, no script and no
network reference: the file can be mailed or archived as is. Significance cells
are shaded like the paper's tables: yellow for p < .10, green for p < .05.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from qclip.report.document import Bullets, Image, Para, Section, Table

__all__ = ["png_data_uri", "render_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
td.sig10 { background: #fff4b3 !important; }
td.sig05 { background: #c9f0c0 !important; }
.caption { color: #555; font-size: 13px; margin-bottom: .2em; }
img { max-width: 100%; border: 1px solid #ddd; margin: .5em 0; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
"""
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_MARK = re.compile(r"(?:^|\bp=|\bp(?=<))<?\.\d{3}(\*{1,2})")


def png_data_uri(path: Path) -> str:
    """The PNG at ``path`` as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the report's prose uses: `code` and **bold**."""
    out = html.escape(str(text), quote=False)
    out = _CODE.sub(lambda m: f"<code>{m[1]}</code>", out)
    return _BOLD.sub(lambda m: f"<strong>{m[1]}</strong>", out)


def _td(value) -> str:
    text = str(value)
    mark = _MARK.search(text)
    cls = "" if not mark else (' class="sig05"' if mark[1] == "**" else ' class="sig10"')
    return f"<td{cls}>{html.escape(text, quote=False)}</td>"


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c), quote=False)}</th>" for c in df.columns)
    body = "\n".join("<tr>" + "".join(_td(x) for x in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def render_html(title: str, sections: list[Section], folder: Path) -> str:
    """The page; images are read from ``folder`` and embedded."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for sec in sections:
        parts.append(f"<h2>{_inline(sec.title)}</h2>")
        for block in sec.blocks:
            if isinstance(block, Para):
                parts.append(f"<p>{_inline(block.text)}</p>")
            elif isinstance(block, Bullets):
                parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
            elif isinstance(block, Table):
                if block.caption:
                    parts.append(f'<p class="caption">{_inline(block.caption)}</p>')
                parts.append(_table(block.df))
            elif isinstance(block, Image):
                src = png_data_uri(Path(folder) / block.filename)
                parts.append(f'<img alt="{html.escape(block.alt)}" src="{src}">')
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
