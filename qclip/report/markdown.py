"""Render the report's sections as GitHub-flavoured Markdown (images by relative file name)."""

from __future__ import annotations

import pandas as pd

from qclip.report.document import Bullets, Image, Para, Section, Table

__all__ = ["df_to_markdown", "render_markdown"]


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def df_to_markdown(df: pd.DataFrame) -> str:
    """A pipe table (no external dependency such as tabulate)."""
    header = [_cell(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        for block in sec.blocks:
            if isinstance(block, Para):
                out += [block.text, ""]
            elif isinstance(block, Bullets):
                out += [f"- {item}" for item in block.items] + [""]
            elif isinstance(block, Table):
                if block.caption:
                    out += [block.caption, ""]
                out += [df_to_markdown(block.df), ""]
            elif isinstance(block, Image):
                out += [f"![{block.alt}]({block.filename})", ""]
    return "\n".join(out).rstrip() + "\n"
