"""Shared helpers of the data-reader tests: copy a checked-in sample, edit CSVs in place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def copy_sample(name: str, dest: Path) -> Path:
    """Copy ``fixtures/<name>`` to ``dest/<name>`` and return the copy."""
    out = dest / name
    shutil.copytree(FIXTURES / name, out)
    return out


def edit_csv(path: Path, fn, line_end: str = "\n", bom: bool = False) -> None:
    """Rewrite a CSV through ``fn(DataFrame) -> DataFrame`` (all values as strings)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    df = fn(df)
    text = df.to_csv(index=False, lineterminator=line_end)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def corrupt(path: Path) -> None:
    """Overwrite an image file with bytes no decoder accepts."""
    path.write_bytes(b"this is not an image\x00\x01\x02")
