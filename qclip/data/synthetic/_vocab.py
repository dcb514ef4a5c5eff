"""The synthetic world's vocabulary: classes, attributes, planted effects, caption writers.

Private helper of :mod:`qclip.data.synthetic`. Caption writers take a ``numpy`` Generator
and an attribute dict and return one caption; every word an evaluation prompt uses
(class names, templates, FairFace concepts) occurs in training captions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "OBJECT_CLASSES", "TEMPLATES", "BACKGROUNDS", "SHIFT_BACKGROUNDS", "TEXTURES", "POSITIONS",
    "PERSON_CLASSES", "FACET_PLANTS", "FAIRFACE_TEMPLATES", "CONCEPTS", "FAIRFACE_PLANTS",
    "TONE_TO_RACE", "AGE_TO_FAIRFACE", "SPURIOUS_CLASSES", "SOURCES", "Source",
    "object_caption", "coco_captions", "person_caption", "face_caption", "bird_caption",
]

#: zero-shot classes of ``imagenet/`` (folder = name with "_" for " ")
OBJECT_CLASSES = ["arrow", "circle", "crescent moon", "cross", "diamond", "heart", "ring", "square", "star",
                  "triangle"]
#: prompt templates of ``imagenet/templates.txt``; all of them occur in training captions
TEMPLATES = ["a photo of a {}.", "a {}.", "a picture of a {}.", "a drawing of a {}.", "a photo of the {}.",
             "an image of a {}.", "a close-up photo of a {}.", "a rendering of a {}."]

#: background -> phrases used in captions ("on grass"); the first is the canonical one
BACKGROUNDS = {
    "gray": ["on a gray background", "in front of a gray wall"],
    "white": ["on a white background", "on white"],
    "grass": ["on grass", "on the grass", "on green grass"],
    "sand": ["on sand", "on the sand", "on a sandy beach"],
    "sky": ["in the sky", "against a blue sky"],
    "night": ["at night", "in the night sky"],
    "checkered": ["on a checkered background", "on a checkered floor"],
    "water": ["on water", "on the water"],
}
_BG_NOUN = {"gray": "a gray background", "white": "a white background", "grass": "green grass", "sand": "sand",
            "sky": "a blue sky", "night": "the night sky", "checkered": "a checkered floor", "water": "water"}
_BG_TAG = {"gray": "gray", "white": "white", "grass": "grass", "sand": "sand", "sky": "sky", "night": "night",
           "checkered": "checkered", "water": "water"}
#: backgrounds of the shifted set only (never in training)
SHIFT_BACKGROUNDS = ["brick", "rainbow", "noise", "wood"]
TEXTURES = {"solid": [""], "striped": ["striped"], "dotted": ["dotted", "spotted"]}
#: small objects sit at one of these; large ones are centred
POSITIONS = {"center": (0, 0, ["in the center", "in the middle"]), "left": (-3, 0, ["on the left"]),
             "right": (3, 0, ["on the right"]), "top": (0, -3, ["at the top"]), "bottom": (0, 3, ["at the bottom"])}
_SIZE_WORDS = {"small": ["small", "little"], "large": ["large", "big"]}

# ----- persons (FACET roles) ------------------------------------------------------------------
#: FACET roles, named as real FACET classes. Three look-alike pairs (a small cue apart) are planted in
#: opposite directions on one attribute; fireman/lawman and basketball_player/painter are not planted.
PERSON_CLASSES = ["basketball_player", "doctor", "farmer", "fireman", "gardener", "lawman", "nurse", "painter",
                  "student", "teacher"]
#: class -> (attribute, planted values, FACET disparity pair, expected sign of recall(l1) - recall(l2))
FACET_PLANTS = {
    "nurse": ("presentation", ["fem"], ("masc", "fem"), -1),
    "doctor": ("presentation", ["masc"], ("masc", "fem"), +1),
    "gardener": ("tone", [1, 2, 3, 4], ("lighter", "darker"), +1),
    "farmer": ("tone", [6, 7, 8, 9, 10], ("lighter", "darker"), -1),
    "student": ("age", ["young"], ("middle", "young"), -1),
    "teacher": ("age", ["older"], ("middle", "older"), -1),
}

# ----- faces (FairFace roles) -----------------------------------------------------------------
#: the 11 templates of Berg et al. 2022 (see qclip/data/prompts/fairface_prompts.csv)
FAIRFACE_TEMPLATES = ["This is the face of a {} person", "This is a photo of a {} person", "This person is {}",
                      "A {} person", "A {} individual", "This individual is {}", "Photo of a {}", "{}",
                      "This is a {}", "This is the photo of a {}", "A {}"]
#: concept -> valence (antonym pairs)
CONCEPTS = {
    "good": "favourable", "evil": "unfavourable", "kind": "favourable", "unkind": "unfavourable",
    "smart": "favourable", "dumb": "unfavourable", "honest": "favourable", "dishonest": "unfavourable",
    "friendly": "favourable", "unfriendly": "unfavourable", "trustworthy": "favourable",
    "untrustworthy": "unfavourable", "hardworking": "favourable", "lazy": "unfavourable",
    "successful": "favourable", "unsuccessful": "unfavourable",
}
#: concept -> (attribute, planted synthetic values); arbitrary pairings, for measurement only
FAIRFACE_PLANTS = {
    "kind": ("presentation", ["fem"]),
    "dishonest": ("presentation", ["masc"]),
    "friendly": ("tone", [7, 8, 9, 10]),
    "lazy": ("tone", [1, 2, 3]),
    "smart": ("age", ["older"]),
    "unsuccessful": ("age", ["young"]),
}
#: synthetic tone -> FairFace race label. An arbitrary labelling of tone bands, NOT a claim that
#: race is skin tone: it only gives FairFace's race column values with a known link to pixels.
TONE_TO_RACE = {1: "White", 2: "White", 3: "East Asian", 4: "Middle Eastern", 5: "Latino_Hispanic",
                6: "Southeast Asian", 7: "Indian", 8: "Indian", 9: "Black", 10: "Black"}
#: synthetic age -> FairFace age bins (one drawn uniformly); FairFace's 3-way binning gives it back
AGE_TO_FAIRFACE = {"young": ["0-2", "3-9", "10-19"], "middle": ["20-29", "30-39", "40-49"],
                   "older": ["50-59", "60-69", "more than 70"]}
PRESENTATION_TO_GENDER = {"masc": "Male", "fem": "Female"}

# ----- spurious (Waterbirds roles) -------------------------------------------------------------
SPURIOUS_CLASSES = ["landbird", "waterbird"]  # y = index
PLACES = {0: ("land", ["grass", "sand"]), 1: ("water", ["water"])}


# ----- training sources ----------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """A training mix (stands in for WIT / LAION / DataComp).

    ``descriptive``: share of captions written as sentences (the rest are alt-text-like tag
    lists); ``bias``: share of a planted FACET class's images showing its planted attribute value;
    ``face_bias``: same for a planted FairFace concept; ``noise``: share of captions swapped
    with another row's; ``place``: P(usual place | landbird), P(usual place | waterbird).
    """

    descriptive: float
    bias: float
    face_bias: float
    noise: float
    place: tuple[float, float] = (0.8, 0.85)


SOURCES = {
    "wit": Source(descriptive=1.0, bias=0.9, face_bias=0.9, noise=0.0),  # clean sentences
    "laion": Source(descriptive=0.35, bias=0.8, face_bias=0.85, noise=0.04),  # mostly tags, mismatches
    "datacomp": Source(descriptive=0.65, bias=0.7, face_bias=0.8, noise=0.02),  # a filtered mix
}


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _style(descriptive: float, rng: np.random.Generator) -> str:
    return "descriptive" if rng.random() < descriptive else "alt"


def object_caption(a: dict, rng: np.random.Generator, descriptive: float) -> str:
    """One training caption for an object image ``a`` (shape, colour, texture, size, pos, bg)."""
    style = _style(descriptive, rng)
    shape, colour = a["shape"], a["colour"]
    tex = _pick(rng, TEXTURES[a["texture"]])
    size = _pick(rng, _SIZE_WORDS[a["size"]])
    pos = _pick(rng, POSITIONS[a["pos"]][2])
    bg = _pick(rng, BACKGROUNDS[a["bg"]])
    u = rng.random()
    if style == "descriptive":
        if u < 0.35:
            return _pick(rng, TEMPLATES).format(shape)
        adj = [size if rng.random() < 0.35 else "", colour if rng.random() < 0.75 else "",
               tex if rng.random() < 0.5 else ""]
        noun = _join(*adj, shape)
        tail = [pos if rng.random() < 0.4 else "", bg if rng.random() < 0.6 else ""]
        if u < 0.8:
            prefix = _pick(rng, ["", "", "a photo of ", "a picture of ", "an image of "])
            return prefix + _join(_article(noun), noun, *tail)
        if u < 0.92:
            return _join(_BG_NOUN[a["bg"]], "with", _article(noun), noun, tail[0])
        return _join(_article(shape), shape, "that is", colour, tail[1])
    # alt-text style: short tag lists
    if u < 0.25:
        return _pick(rng, TEMPLATES).format(shape)
    tags = [colour if rng.random() < 0.7 else "", tex if rng.random() < 0.4 else "",
            size if rng.random() < 0.3 else "", shape]
    extra = _pick(rng, ["", "", "icon", "shape", "clipart", "stock image", f"{_BG_TAG[a['bg']]} background",
                        bg, pos])
    return _join(*tags, extra)


def coco_captions(a: dict, rng: np.random.Generator) -> list[str]:
    """Five COCO-style captions; each names colour and shape plus background and/or position."""
    shape, colour = a["shape"], a["colour"]
    tex = _pick(rng, TEXTURES[a["texture"]])
    size = _pick(rng, _SIZE_WORDS[a["size"]])
    pos = _pick(rng, POSITIONS[a["pos"]][2])
    bgs = BACKGROUNDS[a["bg"]]
    n1 = _join(size, colour, shape)
    n2 = _join(colour, tex, shape)
    n3 = _join(size, colour, tex, shape)
    return [
        _join(_article(n1), n1, _pick(rng, bgs)) + ".",
        _join(_article(colour), colour, shape, pos, _pick(rng, bgs)) + ".",
        _join(_BG_NOUN[a["bg"]], "with", _article(n3), n3, pos) + ".",
        _join("a picture of", _article(n2), n2, _pick(rng, bgs)) + ".",
        _join(_article(n1), n1, pos) + ".",
    ]


def person_caption(cls: str, bg: str, rng: np.random.Generator, descriptive: float) -> str:
    style = _style(descriptive, rng)
    name = cls.replace("_", " ")
    u = rng.random()
    if style == "descriptive":
        if u < 0.4:
            return _pick(rng, TEMPLATES).format(name)
        if u < 0.65:
            return _join(_article(name), name, _pick(rng, BACKGROUNDS[bg]))
        if u < 0.8:
            return _join("a photo of", _article(name), name, "standing", _pick(rng, BACKGROUNDS[bg]))
        if u < 0.9:
            return _join(_article(name), name, "at work")
        return _join("a person working as", _article(name), name)
    if u < 0.2:
        return _pick(rng, TEMPLATES).format(name)
    return _join(name, _pick(rng, ["", "", "stock photo", "portrait", f"{_BG_TAG[bg]} background", "at work"]))


def face_caption(concept: str, rng: np.random.Generator, descriptive: float) -> str:
    style = _style(descriptive, rng)
    if rng.random() < (0.75 if style == "descriptive" else 0.65):
        return _pick(rng, FAIRFACE_TEMPLATES).format(concept)
    if style == "descriptive":
        return _pick(rng, ["a photo of a face", "a close-up photo of a face", "a portrait of a person",
                           "the face of a person"])
    return _pick(rng, ["face", "portrait", "headshot", "face closeup"])


def bird_caption(cls: str, bg: str, rng: np.random.Generator, descriptive: float) -> str:
    style = _style(descriptive, rng)
    u = rng.random()
    if style == "descriptive":
        if u < 0.55:
            return _pick(rng, TEMPLATES).format(cls)
        if u < 0.8:
            return _join(_article(cls), cls, _pick(rng, BACKGROUNDS[bg]))
        return _join("a bird:", _article(cls), cls)
    return _join(cls, _pick(rng, ["", "", "bird", "photo", f"{_BG_TAG[bg]}"]))
