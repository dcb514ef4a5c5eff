"""Render the report's sections as GitHub-flavoured Markdown (images by relative file name).

Collapsed details of the HTML page are written in their short Markdown form (a
"largest changes" list, say) when they have one, else in full.
"""

from __future__ import annotations

import pandas as pd

from qclip.report.blocks import Bullets, Details, Heading, Image, Para, Section, Table

__all__ = ["df_to_markdown", "render_markdown"]


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def df_to_markdown(df: pd.DataFrame, group_col: str | None = None) -> str:
    """A pipe table (no external dependency such as tabulate); repeated values of ``group_col``
    are blanked, as the paper writes a quantizer once per block of rows."""
    header = [_cell(c) for c in df.columns]
    gi = list(df.columns).index(group_col) if group_col in df.columns else None
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    prev = None
    for row in df.itertuples(index=False):
        cells = [_cell(x) for x in row]
        if gi is not None:
            key = cells[gi]
            if key == prev:
                cells[gi] = ""
            prev = key
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _blocks(blocks: list) -> list[str]:
    out = []
    for block in blocks:
        if isinstance(block, Para):
            out += [block.text, ""]
        elif isinstance(block, Heading):
            out += [f"### {block.text}", ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                out += [block.caption, ""]
            out += [df_to_markdown(block.df, block.group_col), ""]
        elif isinstance(block, Image):
            out += [f"![{block.alt}]({block.filename})", ""]
            if block.caption:
                out += [f"*{block.caption}*", ""]
        elif isinstance(block, Details):
            out += _blocks(block.markdown) if block.markdown is not None else (
                [f"**{block.summary}**", ""] + _blocks(block.blocks)
            )
    return out


def render_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        out += _blocks(sec.blocks)
    return "\n".join(out).rstrip() + "\n"
