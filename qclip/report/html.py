"""Render the report's sections as one self-contained HTML file.

Inline CSS, images embedded as ``data:image/png;base64`` URIs, no script and no
network reference: the file can be mailed or archived as is. Significance cells
are shaded like the paper's tables: yellow for p < .10, green for p < .05. Detail
tables sit in ``<details>`` elements, collapsed until clicked; a table of contents
links to each section.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from qclip.report.blocks import Bullets, Cell, Details, Heading, Image, Para, Section, Table

__all__ = ["png_data_uri", "render_html"]

_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --rule: #d1d9e0; --head: #f6f8fa; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 1.5em 1.5em 4em; color: var(--ink); line-height: 1.5; font-size: 15px; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; margin-bottom: .3em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid var(--rule); padding-bottom: .15em; }
h3 { margin: 1.4em 0 .4em; font-size: 1.05em; }
nav.toc { background: var(--head); border: 1px solid var(--rule); border-radius: 6px; padding: .5em 1em;
          font-size: 14px; columns: 3; column-gap: 2em; }
nav.toc a { color: #0969da; text-decoration: none; display: block; }
.scroll { overflow-x: auto; margin: .3em 0 1.4em; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--rule); padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: var(--head); }
tr:nth-child(even) td { background: #fbfcfd; }
tr.grp td { border-top: 2px solid #8c959f; }
td b { font-weight: 600; }
td .s { display: block; color: var(--muted); font-size: 11.5px; white-space: nowrap; }
td.sig10 { background: #fff4b3 !important; }
td.sig05 { background: #c9f0c0 !important; }
td.muted { color: var(--muted); }
td.vequiv { background: #dcebfb !important; }
td.vdiff { background: #fbe3dc !important; }
.caption { color: var(--muted); font-size: 13px; margin: .8em 0 .2em; }
figure { margin: .8em 0 1.6em; }
figure img { max-width: 100%; border: 1px solid var(--rule); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: .2em; max-width: 70em; }
details { border: 1px solid var(--rule); border-radius: 6px; padding: .3em .9em; margin: .6em 0 1.2em;
          background: #fcfcfd; }
details > summary { cursor: pointer; font-weight: 600; color: #0b4f9c; }
details[open] > summary { margin-bottom: .4em; }
code { background: #eff1f3; padding: 0 4px; border-radius: 3px; font-size: 90%; }
p { max-width: 75em; }
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
    if isinstance(value, Cell):
        cls = f' class="{value.css}"' if value.css else ""
        return f"<td{cls}>{value.markup()}</td>"
    text = str(value)
    mark = _MARK.search(text)
    cls = "" if not mark else (' class="sig05"' if mark[1] == "**" else ' class="sig10"')
    return f"<td{cls}>{html.escape(text, quote=False)}</td>"


def _table(df: pd.DataFrame, group_col: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c), quote=False)}</th>" for c in df.columns)
    gi = list(df.columns).index(group_col) if group_col in df.columns else None
    lines, prev = [], object()
    for i, row in enumerate(df.itertuples(index=False)):
        cells = list(row)
        cls = ""
        if gi is not None:
            key = str(cells[gi])
            if key == prev:
                cells[gi] = ""
            elif i:
                cls = ' class="grp"'
            prev = key
        lines.append(f"<tr{cls}>" + "".join(_td(x) for x in cells) + "</tr>")
    body = "\n".join(lines)
    return f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'


def _blocks(blocks: list, folder: Path) -> list[str]:
    parts = []
    for block in blocks:
        if isinstance(block, Para):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Heading):
            parts.append(f"<h3>{_inline(block.text)}</h3>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            if block.caption:
                parts.append(f'<p class="caption">{_inline(block.caption)}</p>')
            parts.append(_table(block.df, block.group_col))
        elif isinstance(block, Image):
            src = png_data_uri(Path(folder) / block.filename)
            cap = f"<figcaption>{_inline(block.caption)}</figcaption>" if block.caption else ""
            parts.append(f'<figure><img alt="{html.escape(block.alt)}" src="{src}">{cap}</figure>')
        elif isinstance(block, Details):
            inner = "\n".join(_blocks(block.blocks, folder))
            parts.append(f"<details><summary>{_inline(block.summary)}</summary>\n{inner}\n</details>")
    return parts


def render_html(title: str, sections: list[Section], folder: Path) -> str:
    """The page; images are read from ``folder`` and embedded."""
    toc = "".join(f'<a href="#s{i}">{_inline(sec.title)}</a>' for i, sec in enumerate(sections))
    parts = [f"<h1>{html.escape(title)}</h1>", f'<nav class="toc">{toc}</nav>']
    for i, sec in enumerate(sections):
        parts.append(f'<h2 id="s{i}">{_inline(sec.title)}</h2>')
        parts += _blocks(sec.blocks, folder)
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
