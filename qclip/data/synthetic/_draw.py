"""Rendering for the synthetic world: backgrounds, glyph objects, persons, faces, birds.

Private helper of :mod:`qclip.data.synthetic`. Everything is drawn at 4x with PIL
(premultiplied colour on black plus a coverage mask), reduced to 1x (anti-aliasing)
and composited in numpy over a background. Each renderer takes a
``numpy.random.Generator`` and its parameters and returns ``(fg, alpha)``: ``fg`` is the
premultiplied colour ``float32 [H, W, 3]`` in 0..1, ``alpha`` the coverage ``[H, W]``.
:func:`compose` puts one over a background; :func:`jpeg_roundtrip` gives the pixels a
JPEG file of them decodes to.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "SS", "PANEL", "JPEG_QUALITY", "Layer", "background", "render_object", "render_person",
    "render_face", "render_bird", "pick_hair", "plain_background", "HAIR", "compose", "to_uint8", "jpeg_bytes", "jpeg_roundtrip", "jpeg_roundtrip_batch",
    "OBJECT_SHAPES", "OOD_SHAPES", "OBJECT_COLOURS", "SHIFT_COLOURS", "MONK_TONES",
]

SS = 4  # supersampling factor
PANEL = 32  # side of a training image, a person crop, a face
JPEG_QUALITY = 95


def _rgb(hexstr: str) -> tuple[float, float, float]:
    return tuple(int(hexstr[i:i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


#: object colours named in captions, and the unseen palette of the shifted set
OBJECT_COLOURS = {
    "red": (0.86, 0.14, 0.14), "orange": (0.96, 0.55, 0.10), "yellow": (0.95, 0.86, 0.15),
    "green": (0.15, 0.65, 0.22), "blue": (0.15, 0.30, 0.88), "purple": (0.55, 0.18, 0.72),
    "white": (0.96, 0.96, 0.96), "black": (0.08, 0.08, 0.08),
}
SHIFT_COLOURS = {"pink": (0.98, 0.50, 0.75), "teal": (0.0, 0.58, 0.58), "brown": (0.50, 0.30, 0.14),
                 "lime": (0.65, 0.92, 0.25)}
#: the Monk Skin Tone scale (Monk 2019), tones 1..10
MONK_TONES = [_rgb(h) for h in ("#f6ede4", "#f3e7db", "#f7ead0", "#eadaba", "#d7bd96",
                                "#a07e56", "#825c43", "#604134", "#3a312a", "#292420")]
HAIR = {"black": (0.10, 0.08, 0.07), "dark brown": (0.28, 0.18, 0.11), "brown": (0.47, 0.31, 0.17),
        "blond": (0.86, 0.74, 0.45), "grey": (0.66, 0.66, 0.66), "white": (0.90, 0.90, 0.90)}
YOUNG_HAIR = ("black", "dark brown", "brown", "blond")


def pick_hair(presentation: str, age: str, rng: np.random.Generator) -> tuple[str, bool]:
    """Hair colour name and baldness: grey/white when older (some older masc figures bald)."""
    if age == "older":
        return ("grey", "white")[int(rng.integers(2))], presentation == "masc" and rng.random() < 0.3
    return YOUNG_HAIR[int(rng.integers(len(YOUNG_HAIR)))], False


def plain_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A flat muted colour (portrait backdrops of the faces)."""
    col = rng.uniform(0.3, 0.85, 3).astype(np.float32)
    return np.clip(col + 0.015 * rng.normal(0.0, 1.0, (h, w, 1)).astype(np.float32), 0, 1).astype(np.float32)


# ----- drawing at 4x -------------------------------------------------------------------------
class Layer:
    """A 4x RGB canvas (premultiplied on black) and its coverage mask, drawn in 1x coordinates."""

    def __init__(self, w: int = PANEL, h: int = PANEL):
        self.w, self.h = w, h
        self.fg = Image.new("RGB", (w * SS, h * SS))
        self.mask = Image.new("L", (w * SS, h * SS))
        self._df, self._dm = ImageDraw.Draw(self.fg), ImageDraw.Draw(self.mask)

    @staticmethod
    def _c(colour) -> tuple[int, int, int]:
        return tuple(int(round(255 * min(max(c, 0.0), 1.0))) for c in colour)  # type: ignore[return-value]

    def poly(self, pts, colour, erase: bool = False) -> None:
        p = [(x * SS, y * SS) for x, y in pts]
        self._df.polygon(p, fill=(0, 0, 0) if erase else self._c(colour))
        self._dm.polygon(p, fill=0 if erase else 255)

    def ellipse(self, cx, cy, rx, ry, colour, erase: bool = False) -> None:
        box = [(cx - rx) * SS, (cy - ry) * SS, (cx + rx) * SS, (cy + ry) * SS]
        self._df.ellipse(box, fill=(0, 0, 0) if erase else self._c(colour))
        self._dm.ellipse(box, fill=0 if erase else 255)

    def rect(self, x0, y0, x1, y1, colour) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour)

    def line(self, pts, width, colour) -> None:
        p = [(x * SS, y * SS) for x, y in pts]
        wd = max(int(round(width * SS)), 1)
        self._df.line(p, fill=self._c(colour), width=wd, joint="curve")
        self._dm.line(p, fill=255, width=wd, joint="curve")

    def done(self) -> tuple[np.ndarray, np.ndarray]:
        fg = np.asarray(self.fg.reduce(SS), dtype=np.float32) / 255.0
        alpha = np.asarray(self.mask.reduce(SS), dtype=np.float32) / 255.0
        return fg, alpha


def compose(bg: np.ndarray, fg: np.ndarray, alpha: np.ndarray, x: int = 0, y: int = 0) -> np.ndarray:
    """Put a premultiplied layer over ``bg`` (in place) with its top-left corner at (x, y)."""
    h, w = alpha.shape
    region = bg[y:y + h, x:x + w]
    region *= 1.0 - alpha[..., None]
    region += fg
    return bg


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def jpeg_bytes(img: np.ndarray) -> bytes:
    """JPEG (quality 95, no chroma subsampling) of a uint8 or 0..1 float image."""
    arr = img if img.dtype == np.uint8 else to_uint8(img)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def jpeg_roundtrip(img: np.ndarray) -> np.ndarray:
    """The uint8 pixels a JPEG file of ``img`` decodes to (train/test match)."""
    with Image.open(io.BytesIO(jpeg_bytes(img))) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def jpeg_roundtrip_batch(images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """:func:`jpeg_roundtrip` of every ``[N, S, S, 3]`` uint8 image (S a multiple of 8), in place.

    Images are stacked into one tall strip per chunk: without chroma subsampling, baseline JPEG
    codes each 8x8 block on its own (only the lossless entropy coding links them), so the strip
    decodes to exactly the pixels of the separate files, at a fraction of the cost.
    """
    n, s = images.shape[0], images.shape[1]
    if s % 8:
        raise ValueError(f"Expected an image side that is a multiple of 8, but got {s}")
    for i in range(0, n, chunk):
        block = images[i:i + chunk]
        strip = jpeg_roundtrip(np.ascontiguousarray(block.reshape(-1, s, 3)))
        images[i:i + chunk] = strip.reshape(block.shape)
    return images


# ----- backgrounds ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def background(name: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A ``float32 [h, w, 3]`` background; see :data:`qclip.data.synthetic._vocab.BACKGROUNDS`."""
    yy, xx = _grid(h, w)
    jitter = rng.uniform(-0.05, 0.05)
    noise = rng.normal(0.0, 1.0, (h, w, 1)).astype(np.float32)
    if name == "gray":
        img = np.full((h, w, 3), 0.5 + jitter, np.float32) + 0.015 * noise
    elif name == "white":
        img = np.full((h, w, 3), 0.92 + jitter / 2, np.float32) + 0.015 * noise
    elif name == "grass":
        blades = np.sin(xx * rng.uniform(1.8, 2.6) + rng.uniform(0, 6.3))[..., None]
        img = np.array([0.22, 0.52, 0.18], np.float32) + jitter + 0.025 * noise + 0.03 * blades
    elif name == "sand":
        img = np.array([0.86, 0.76, 0.52], np.float32) + jitter + 0.02 * noise
    elif name == "sky":
        t = (yy / max(h - 1, 1))[..., None]
        img = (1 - t) * np.array([0.40, 0.62, 0.95], np.float32) + t * np.array([0.80, 0.90, 1.0], np.float32)
        img = img + jitter / 2 + 0.01 * noise
    elif name == "night":
        img = np.array([0.05, 0.06, 0.18], np.float32) + 0.015 * noise
        stars = rng.random((h, w)) < 0.012
        img = np.where(stars[..., None], np.float32(0.9), img)
    elif name == "checkered":
        phase = rng.integers(0, 4, 2)
        cells = (((xx + phase[0]) // 4 + (yy + phase[1]) // 4) % 2)[..., None]
        img = np.where(cells > 0, np.float32(0.78), np.float32(0.64)) + jitter + 0.01 * noise
    elif name == "water":
        waves = np.sin(yy * 1.3 + 0.8 * np.sin(xx * 0.4 + rng.uniform(0, 6.3)))[..., None]
        img = np.array([0.12, 0.34, 0.68], np.float32) + jitter + 0.045 * waves + 0.015 * noise
    # --- shifted (unseen in training) ---
    elif name == "brick":
        row = (yy // 4) % 2
        mortar = ((yy % 4) == 0) | (((xx + 4 * row) % 8) == 0)
        img = np.where(mortar[..., None], np.float32(0.80), np.array([0.62, 0.25, 0.16], np.float32))
        img = img + jitter + 0.03 * noise
    elif name == "rainbow":
        hue = (xx / max(w, 1) + rng.uniform(0, 1))[..., None] * 2 * math.pi
        img = 0.6 + 0.3 * np.concatenate([np.cos(hue), np.cos(hue - 2.1), np.cos(hue + 2.1)], axis=-1)
    elif name == "noise":
        img = rng.uniform(0.2, 0.85, (h, w, 3)).astype(np.float32)
    elif name == "wood":
        grain = np.sin(yy * 0.9 + 1.5 * np.sin(xx * 0.15 + rng.uniform(0, 6.3)))[..., None]
        img = np.array([0.58, 0.40, 0.22], np.float32) + 0.06 * grain + jitter + 0.02 * noise
    else:
        raise ValueError(f"Expected a known background name, but got {name!r}")
    return np.array(np.broadcast_to(np.clip(img, 0.0, 1.0), (h, w, 3)), dtype=np.float32)


# ----- glyph objects ---------------------------------------------------------------------------
def _ngon(n: int, r: float = 1.0, start: float = -math.pi / 2, radii=None):
    radii = radii or [r]
    return [(radii[i % len(radii)] * math.cos(start + 2 * math.pi * i / n),
             radii[i % len(radii)] * math.sin(start + 2 * math.pi * i / n)) for i in range(n)]


def _rose(petals: int, a: float, b: float, n: int = 60):
    return [((a + b * math.cos(petals * t)) * math.cos(t), (a + b * math.cos(petals * t)) * math.sin(t))
            for t in (2 * math.pi * i / n for i in range(n))]


def _spiral(n: int = 40):
    return [((0.15 + 0.85 * i / n) * math.cos(i / n * 4 * math.pi), (0.15 + 0.85 * i / n) * math.sin(i / n * 4 * math.pi))
            for i in range(n + 1)]


# A shape is a list of operations in unit coordinates (radius ~1):
# ("poly", pts) | ("circle", cx, cy, r) | ("hole_circle", cx, cy, r) | ("line", pts, width)
OBJECT_SHAPES: dict[str, list] = {
    "arrow": [("poly", [(-1, -0.28), (0.15, -0.28), (0.15, -0.7), (1, 0), (0.15, 0.7), (0.15, 0.28), (-1, 0.28)])],
    "circle": [("circle", 0, 0, 0.95)],
    "crescent moon": [("circle", 0, 0, 1.0), ("hole_circle", 0.45, -0.3, 0.82)],
    "cross": [("poly", [(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1), (-0.3, 1),
                        (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)])],
    "diamond": [("poly", [(0, -1.05), (0.62, 0), (0, 1.05), (-0.62, 0)])],
    "flower": [("poly", _rose(5, 0.62, 0.38))],
    "heart": [("circle", -0.45, -0.3, 0.5), ("circle", 0.45, -0.3, 0.5),
              ("poly", [(-0.93, -0.12), (0.93, -0.12), (0, 0.95)])],
    "hexagon": [("poly", _ngon(6, 1.0, 0.0))],
    "ring": [("circle", 0, 0, 1.0), ("hole_circle", 0, 0, 0.55)],
    "square": [("poly", [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)])],
    "star": [("poly", _ngon(10, radii=[1.0, 0.42]))],
    "triangle": [("poly", [(0, -1.0), (0.9, 0.62), (-0.9, 0.62)])],
}
#: unseen object kinds (OOD set only, never in training)
OOD_SHAPES: dict[str, list] = {
    "spiral": [("line", _spiral(), 0.2)],
    "zigzag": [("line", [(-1, 0.45), (-0.5, -0.45), (0, 0.45), (0.5, -0.45), (1, 0.45)], 0.3)],
    "cloud": [("circle", -0.5, 0.1, 0.42), ("circle", 0.0, -0.2, 0.55), ("circle", 0.5, 0.1, 0.42),
              ("poly", [(-0.9, 0.1), (0.9, 0.1), (0.9, 0.5), (-0.9, 0.5)])],
    "hourglass": [("poly", [(-0.7, -1), (0.7, -1), (0.12, 0), (0.7, 1), (-0.7, 1), (-0.12, 0)])],
    "tee": [("poly", [(-0.9, -0.9), (0.9, -0.9), (0.9, -0.5), (0.2, -0.5), (0.2, 0.95), (-0.2, 0.95),
                      (-0.2, -0.5), (-0.9, -0.5)])],
    "pie": [("poly", [(0, 0)] + [(math.cos(t), math.sin(t)) for t in np.linspace(0.5, 2 * math.pi - 0.5, 30)])],
}


def _stamp(layer: Layer, ops, cx: float, cy: float, r: float, angle: float, colour) -> None:
    ca, sa = math.cos(angle), math.sin(angle)

    def tf(x, y):
        return cx + r * (ca * x - sa * y), cy + r * (sa * x + ca * y)

    for op in ops:
        if op[0] == "poly":
            layer.poly([tf(x, y) for x, y in op[1]], colour)
        elif op[0] in ("circle", "hole_circle"):
            x, y = tf(op[1], op[2])
            layer.ellipse(x, y, r * op[3], r * op[3], colour, erase=op[0] == "hole_circle")
        elif op[0] == "line":
            layer.line([tf(x, y) for x, y in op[1]], r * op[2], colour)


def _texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "solid":
        return np.ones((h, w, 1), np.float32)
    yy, xx = _grid(h, w)
    if kind == "striped":
        a = rng.uniform(0, math.pi)
        band = np.sin((xx * math.cos(a) + yy * math.sin(a)) * 1.6) > 0
        return np.where(band, np.float32(1.0), np.float32(0.6))[..., None]
    if kind == "dotted":
        ox, oy = rng.uniform(0, 4, 2)
        dots = ((xx + ox) % 4 - 2) ** 2 + ((yy + oy) % 4 - 2) ** 2 < 1.3
        return np.where(dots, np.float32(0.55), np.float32(1.0))[..., None]
    raise ValueError(f"Expected a known texture, but got {kind!r}")


def _erode(alpha: np.ndarray) -> np.ndarray:
    """3x3 minimum filter (outside the canvas counts as empty)."""
    pad = np.pad(alpha, 1)
    h, w = alpha.shape
    out = alpha.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            np.minimum(out, pad[dy:dy + h, dx:dx + w], out=out)
    return out


def render_object(shape: str, colour, texture: str, cx: float, cy: float, r: float, angle: float,
                  rng: np.random.Generator, w: int = PANEL, h: int = PANEL) -> tuple[np.ndarray, np.ndarray]:
    """A single-colour glyph (``OBJECT_SHAPES`` or ``OOD_SHAPES``) with a texture and a dark
    one-pixel outline (a light one for dark fills), like clip art."""
    ops = OBJECT_SHAPES.get(shape) or OOD_SHAPES[shape]
    layer = Layer(w, h)
    _stamp(layer, ops, cx, cy, r, angle, (1.0, 1.0, 1.0))
    _, alpha = layer.done()
    inner = _erode(alpha)
    tex = _texture(texture, h, w, rng)
    col = np.asarray(colour, np.float32) * (1.0 + rng.uniform(-0.06, 0.06))
    line = np.float32(0.85 if max(colour) < 0.3 else 0.06)
    fg = inner[..., None] * np.clip(col * tex, 0, 1) + (alpha - inner)[..., None] * line
    return fg.astype(np.float32), alpha


# ----- persons (FACET-like) -------------------------------------------------------------------
_SHIRTS = [(0.8, 0.2, 0.2), (0.2, 0.5, 0.8), (0.9, 0.7, 0.2), (0.5, 0.3, 0.6), (0.3, 0.6, 0.4),
           (0.9, 0.5, 0.6), (0.6, 0.6, 0.6), (0.95, 0.6, 0.2)]
_TROUSERS = [(0.15, 0.15, 0.2), (0.25, 0.25, 0.45), (0.3, 0.22, 0.15), (0.35, 0.35, 0.35)]

# per class: torso colour, trouser colour (None = a random one). Classes come in pairs that look
# alike but for one small cue (nurse/doctor, farmer/gardener, student/teacher), so a model that
# saw a pair's members with different attributes in training leans on the attribute.
_WHITE = (0.96, 0.96, 0.96)
_UNIFORM = {
    "nurse": (_WHITE, _WHITE), "doctor": (_WHITE, _WHITE),
    "farmer": ((0.30, 0.45, 0.22), (0.35, 0.28, 0.18)), "gardener": ((0.30, 0.45, 0.22), (0.35, 0.28, 0.18)),
    "fireman": ((0.45, 0.36, 0.16), (0.45, 0.36, 0.16)), "lawman": ((0.10, 0.15, 0.40), (0.10, 0.15, 0.40)),
}
_BOOK = (0.7, 0.15, 0.15)


def render_person(cls: str, presentation: str, tone: int, age: str, hair: str, bald: bool,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A standing figure in a 32x32 panel. Presentation: hair length and torso shape; tone:
    the Monk colour of head and hands; age: height, head size, hair colour; class: uniform
    colours, a hat and/or a held item (see ``qclip.data.synthetic._vocab.PERSON_CLASSES``)."""
    L = Layer()
    skin = np.asarray(MONK_TONES[tone - 1]) * rng.uniform(0.97, 1.03)
    s = {"young": 0.8, "middle": 1.0, "older": 0.96}[age]
    hr = {"young": 3.9, "middle": 3.3, "older": 3.3}[age]
    cx = 16 + rng.uniform(-2.5, 2.5)
    fy = 30.5 + rng.uniform(-1, 0.5)
    hy = fy - 25.5 * s + hr  # head centre
    top = hy + hr + 0.6  # torso top
    waist = fy - 10.5 * s
    hair_c = HAIR[hair]
    uni = _UNIFORM.get(cls, (None, None))
    shirt = uni[0] if uni[0] is not None else _SHIRTS[rng.integers(len(_SHIRTS))]
    trousers = uni[1] if uni[1] is not None else _TROUSERS[rng.integers(len(_TROUSERS))]
    fem = presentation == "fem"
    if fem:  # long hair behind the head
        L.rect(cx - hr - 0.9, hy - 0.5, cx + hr + 0.9, hy + hr + 4.2, hair_c)
    # legs, torso, arms, hands
    L.rect(cx - 3.2, waist - 1, cx - 0.6, fy, trousers)
    L.rect(cx + 0.6, waist - 1, cx + 3.2, fy, trousers)
    if fem:
        L.poly([(cx - 3.4, top), (cx + 3.4, top), (cx + 5.2, waist + 3), (cx - 5.2, waist + 3)], shirt)
    else:
        L.poly([(cx - 4.7, top), (cx + 4.7, top), (cx + 3.9, waist), (cx - 3.9, waist)], shirt)
    sh = 3.7 if fem else 4.6
    L.line([(cx - sh, top + 0.8), (cx - sh - 1.6, waist - 0.5)], 1.6, shirt)
    L.line([(cx + sh, top + 0.8), (cx + sh + 1.6, waist - 0.5)], 1.6, shirt)
    L.ellipse(cx - sh - 1.6, waist, 1.1, 1.1, skin)
    L.ellipse(cx + sh + 1.6, waist, 1.1, 1.1, skin)
    if cls == "doctor":  # a dark tie
        L.line([(cx, top + 0.5), (cx, waist - 1.5)], 1.1, (0.15, 0.2, 0.45))
    elif cls == "nurse":  # a small red cross on the chest
        L.rect(cx - 0.9, top + 1.4, cx + 0.9, top + 3.2, (0.9, 0.1, 0.1))
    elif cls == "fireman":
        L.rect(cx - 4.3, waist - 3.2, cx + 4.3, waist - 2.0, (0.95, 0.85, 0.1))
    elif cls == "lawman":
        L.ellipse(cx - 2, top + 2.2, 0.9, 0.9, (0.95, 0.8, 0.15))
    # head and hair
    L.ellipse(cx, hy, hr, hr, skin)
    if not bald:
        L.poly([(cx - hr, hy), (cx - hr, hy - hr * 0.6), (cx - hr * 0.5, hy - hr * 1.05), (cx + hr * 0.5, hy - hr * 1.05),
                (cx + hr, hy - hr * 0.6), (cx + hr, hy)] if fem else
               [(cx - hr, hy - 0.5), (cx - hr * 0.8, hy - hr * 0.85), (cx, hy - hr * 1.12), (cx + hr * 0.8, hy - hr * 0.85),
                (cx + hr, hy - 0.5), (cx, hy - hr * 0.55)], hair_c)
    # hats
    if cls == "fireman":
        L.ellipse(cx, hy - hr * 0.55, hr + 0.6, hr * 0.75, (0.85, 0.1, 0.08))
        L.rect(cx - hr - 1.8, hy - 0.7, cx + hr + 1.8, hy + 0.4, (0.85, 0.1, 0.08))
    elif cls == "lawman":
        L.rect(cx - hr - 0.3, hy - hr - 1.8, cx + hr + 0.3, hy - hr * 0.45, (0.08, 0.1, 0.3))
        L.rect(cx - hr - 0.3, hy - hr * 0.5, cx + hr + 1.8, hy - hr * 0.2, (0.05, 0.05, 0.05))
    elif cls == "farmer":  # a straw hat
        L.rect(cx - hr - 2.0, hy - hr * 0.75, cx + hr + 2.0, hy - hr * 0.45, (0.9, 0.78, 0.35))
        L.rect(cx - hr * 0.7, hy - hr - 1.6, cx + hr * 0.7, hy - hr * 0.6, (0.9, 0.78, 0.35))
    elif cls == "painter":
        L.ellipse(cx - 0.6, hy - hr * 0.85, hr + 0.6, 1.3, (0.6, 0.1, 0.2))
    # held items (right hand)
    hx, hyy = cx + sh + 1.6, waist
    if cls == "basketball_player":
        L.ellipse(hx + 1.5, hyy - 1.0, 2.6, 2.6, (0.95, 0.45, 0.05))
        L.line([(hx - 1.1, hyy - 1.0), (hx + 4.1, hyy - 1.0)], 0.5, (0.1, 0.05, 0.0))
    elif cls == "gardener":  # a potted plant
        L.poly([(hx - 0.5, hyy), (hx + 3.5, hyy), (hx + 2.8, hyy + 3.5), (hx + 0.2, hyy + 3.5)], (0.75, 0.35, 0.2))
        L.ellipse(hx + 1.5, hyy - 1.6, 2.3, 2.0, (0.1, 0.7, 0.15))
    elif cls == "painter":
        L.ellipse(hx + 1.2, hyy - 0.5, 2.9, 2.0, (0.88, 0.75, 0.55))
        for k, c in enumerate(((0.9, 0.1, 0.1), (0.1, 0.3, 0.9), (0.95, 0.85, 0.1))):
            L.ellipse(hx + 0.2 + 1.1 * k, hyy - 0.9 + 0.4 * (k % 2), 0.55, 0.55, c)
    elif cls in ("student", "teacher"):  # both hold a book (blue / red); the teacher also a pointer
        L.rect(hx - 0.8, hyy - 3.0, hx + 2.2, hyy + 1.2, _BOOK if cls == "teacher" else (0.15, 0.3, 0.8))
        if cls == "teacher":
            L.line([(cx - sh - 1.6, waist), (cx - sh - 4.5, top - 3.0)], 0.7, (0.35, 0.2, 0.1))
    return L.done()


# ----- faces (FairFace-like) ------------------------------------------------------------------
def render_face(presentation: str, tone: int, age: str, hair: str, bald: bool,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A face close-up in a 32x32 panel (presentation: hair; age: proportions, hair colour, lines)."""
    L = Layer()
    skin = np.asarray(MONK_TONES[tone - 1]) * rng.uniform(0.97, 1.03)
    fem = presentation == "fem"
    cx, cy = 16 + rng.uniform(-1.2, 1.2), 14.5 + rng.uniform(-1, 1)
    rx, ry = {"young": (8.3, 8.8), "middle": (8.0, 10.0), "older": (8.0, 9.8)}[age]
    hair_c = HAIR[hair]
    shirt = _SHIRTS[rng.integers(len(_SHIRTS))]
    if fem:
        L.poly([(cx - rx - 2.2, cy - 3), (cx + rx + 2.2, cy - 3), (cx + rx + 3.2, 31.5), (cx - rx - 3.2, 31.5)], hair_c)
    L.poly([(cx - 12, 32.5), (cx - 9, 25), (cx + 9, 25), (cx + 12, 32.5)], shirt)
    L.rect(cx - 3, cy + ry - 3, cx + 3, 26.5, skin)
    L.ellipse(cx, cy, rx, ry, skin)
    if fem:
        L.poly([(cx - rx - 1.2, cy + 1), (cx - rx - 0.6, cy - ry * 0.7), (cx - rx * 0.3, cy - ry - 1.3),
                (cx + rx * 0.3, cy - ry - 1.3), (cx + rx + 0.6, cy - ry * 0.7), (cx + rx + 1.2, cy + 1),
                (cx + rx * 0.75, cy - ry * 0.35), (cx - rx * 0.75, cy - ry * 0.35)], hair_c)
    elif bald:
        L.rect(cx - rx - 0.4, cy - 3, cx - rx + 1.2, cy + 1.5, hair_c)
        L.rect(cx + rx - 1.2, cy - 3, cx + rx + 0.4, cy + 1.5, hair_c)
    else:
        L.poly([(cx - rx - 0.3, cy - 2.0), (cx - rx * 0.85, cy - ry * 0.8), (cx, cy - ry - 1.2),
                (cx + rx * 0.85, cy - ry * 0.8), (cx + rx + 0.3, cy - 2.0), (cx + rx * 0.6, cy - ry * 0.55),
                (cx - rx * 0.6, cy - ry * 0.55)], hair_c)
    er = 1.45 if age == "young" else 1.0
    ey = cy + (0.5 if age == "young" else -0.5)
    for sx in (-1, 1):
        if age == "young":
            L.ellipse(cx + sx * 3.3, ey, er + 0.6, er + 0.4, (0.97, 0.97, 0.97))
        L.ellipse(cx + sx * 3.3, ey, er, er, (0.08, 0.06, 0.05))
    mouth = (0.72, 0.2, 0.25) if fem else (0.45, 0.2, 0.18)
    L.line([(cx - 2.4, cy + ry * 0.55), (cx + 2.4, cy + ry * 0.55)], 0.9, mouth)
    if age == "older":
        line_c = np.asarray(skin) * 0.7
        L.line([(cx - 3.5, cy - ry * 0.42), (cx + 3.5, cy - ry * 0.42)], 0.5, line_c)
        L.line([(cx - 3.0, cy - ry * 0.28), (cx + 3.0, cy - ry * 0.28)], 0.5, line_c)
        L.line([(cx - 5.5, cy + 2.5), (cx - 4.5, cy + 4.5)], 0.5, line_c)
        L.line([(cx + 5.5, cy + 2.5), (cx + 4.5, cy + 4.5)], 0.5, line_c)
    return L.done()


# ----- birds (Waterbirds-like) ------------------------------------------------------------------
_BIRD_COLOURS = [(0.45, 0.30, 0.18), (0.55, 0.55, 0.55), (0.12, 0.12, 0.12), (0.92, 0.92, 0.9),
                 (0.9, 0.78, 0.2), (0.25, 0.4, 0.75)]


def render_bird(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A landbird (round, perched, pointed beak, legs) or a waterbird (long body and neck, flat bill)."""
    L = Layer()
    body = _BIRD_COLOURS[rng.integers(len(_BIRD_COLOURS))]
    beak = (0.95, 0.55, 0.1)
    d = 1 if rng.random() < 0.5 else -1  # facing direction
    cx, cy = 16 + rng.uniform(-3, 3), 17 + rng.uniform(-3, 3)
    if kind == "landbird":
        L.line([(cx - 1.5, cy + 3), (cx - 1.5, cy + 7.5)], 0.7, (0.2, 0.15, 0.1))
        L.line([(cx + 1.5, cy + 3), (cx + 1.5, cy + 7.5)], 0.7, (0.2, 0.15, 0.1))
        L.poly([(cx - d * 4.5, cy), (cx - d * 9, cy - 5), (cx - d * 8, cy + 1)], body)
        L.ellipse(cx, cy, 5.5, 4.5, body)
        L.ellipse(cx + d * 4.5, cy - 4.0, 3.0, 3.0, body)
        L.poly([(cx + d * 7.0, cy - 4.8), (cx + d * 10.0, cy - 3.8), (cx + d * 7.0, cy - 2.8)], beak)
        L.ellipse(cx + d * 5.3, cy - 4.6, 0.7, 0.7, (0.02, 0.02, 0.02))
    else:
        L.ellipse(cx, cy + 2.5, 8.0, 3.6, body)
        L.poly([(cx - d * 7, cy + 1.5), (cx - d * 10, cy - 1.0), (cx - d * 7.5, cy + 3.5)], body)
        L.line([(cx + d * 4.5, cy + 1.5), (cx + d * 5.5, cy - 3), (cx + d * 5.0, cy - 6.5)], 1.7, body)
        L.ellipse(cx + d * 5.6, cy - 7.5, 2.3, 2.1, body)
        L.rect(min(cx + d * 7.3, cx + d * 10.8), cy - 8.0, max(cx + d * 7.3, cx + d * 10.8), cy - 6.6, beak)
        L.ellipse(cx + d * 6.2, cy - 8.0, 0.6, 0.6, (0.02, 0.02, 0.02))
    return L.done()
