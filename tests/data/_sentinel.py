"""A sentinel beside a dataset root that no reader may touch, and the hostile files of the reader tests.

:func:`watch` patches every way Python code reaches a file -- ``builtins.open``/``io.open``,
``os.open``, ``os.stat``/``lstat``, ``os.scandir``/``listdir``/``readlink`` and ``PIL.Image.open``
(what ``pathlib``, ``os.path``, pandas, ``json`` and PIL go through) -- and records each call whose
target lies in the sentinel folder. Following calls (open, stat, scandir) are judged by the real path
they reach, so a symlink inside the root that points at the sentinel counts; non-following ones (lstat,
readlink) by the link's own place, so reading a link inside the root to learn where it points does not.
"""

from __future__ import annotations

import builtins
import io
import os
import struct
import threading
import zlib
from pathlib import Path

from PIL import Image

SENTINEL = "QCLIP_SENTINEL_never_read"

_NOT_FOLLOWING = ("lstat", "readlink")


def make_outside(tmp_path: Path) -> Path:
    """``tmp_path/outside`` holding valid images named after :data:`SENTINEL` (they would decode fine)."""
    out = tmp_path / "outside"
    (out / "deeper").mkdir(parents=True)
    for p in (out / f"{SENTINEL}.jpg", out / f"{SENTINEL}.png", out / "deeper" / f"{SENTINEL}.jpg"):
        Image.new("RGB", (16, 16), (200, 10, 10)).save(p)
    return out


def watch(monkeypatch, outside: Path) -> list[tuple[str, str]]:
    """Patch the file-system entry points; return the list that collects ``(call, path)`` of every
    touch of ``outside`` (empty at the end of a test that read nothing there)."""
    touched: list[tuple[str, str]] = []
    fence = os.path.realpath(outside)
    local = threading.local()
    real_os = {name: getattr(os, name) for name in ("open", "stat", "lstat", "scandir", "listdir", "readlink")}
    real_open, real_image_open = builtins.open, Image.open

    def target(path, follow: bool) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        try:
            text = os.fsdecode(os.fspath(path))
        except TypeError:
            return None
        local.busy = True
        try:
            if follow:
                return os.path.realpath(text)
            head, tail = os.path.split(os.path.abspath(text))
            return os.path.join(os.path.realpath(head), tail)
        finally:
            local.busy = False

    def record(call: str, path, follow: bool) -> None:
        if getattr(local, "busy", False):
            return
        t = target(path, follow)
        if t is not None and (t == fence or t.startswith(fence + os.sep)):
            touched.append((call, t))

    def wrap(call: str, fn, follow: bool):
        def wrapper(path=None, *args, **kwargs):
            follows = follow and kwargs.get("follow_symlinks", True)
            if path is None and call in ("scandir", "listdir"):
                path = "."
            record(call, path, follows)
            return fn(path, *args, **kwargs)
        return wrapper

    for name in ("stat", "scandir", "listdir"):
        monkeypatch.setattr(os, name, wrap(name, real_os[name], True))
    for name in _NOT_FOLLOWING:
        monkeypatch.setattr(os, name, wrap(name, real_os[name], False))
    monkeypatch.setattr(os, "open", wrap("os.open", real_os["open"], True))
    opener = wrap("open", real_open, True)
    monkeypatch.setattr(builtins, "open", opener)
    monkeypatch.setattr(io, "open", opener)
    monkeypatch.setattr(Image, "open", wrap("PIL.Image.open", real_image_open, True))
    return touched


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb to PIL)."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", width, height)  # IHDR data starts after signature(8) + length(4) + type(4)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(b))
    return path


def truncate(path: Path) -> Path:
    """Cut the last tenth of an image file: its header survives, its pixels do not (PIL opens it and fails
    to load it)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(data) // 10])
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path
