"""The writers of the synthetic world's parts (private helper of :mod:`qclip.data.synthetic`).

Each ``write_*`` takes the file writer, its own seeded Generator, the :class:`WorldSize`
and a progress bar, writes its files in the real layouts (FORMATS.md) and returns its
section of the manifest. Attribute sampling is the only place where planted effects enter:
``_attrs(rng, plant, bias)`` with a ``bias`` (training pool) skews the planted attribute; with
``bias=None`` (evaluation sets) every attribute is uniform and independent of the class.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

import numpy as np

from . import _draw as D
from . import _vocab as V

PRESENTATIONS = ["masc", "fem"]
TONES = list(range(1, 11))
AGES = ["young", "middle", "older"]
DOMAINS = {"presentation": PRESENTATIONS, "tone": TONES, "age": AGES}
TRAIN_BGS = list(V.BACKGROUNDS)
_CONFLICTS = {("white", "white"), ("black", "night"), ("green", "grass"), ("blue", "sky"), ("blue", "water"),
              ("yellow", "sand"), ("white", "sky")}
_HATS = {"fireman", "lawman", "farmer", "painter"}
_TEXTURE_P = (0.7, 0.15, 0.15)
#: share of objects drawn in their class's typical colour (the rest: any colour), in training and eval
TYPICAL_P = 0.65
TYPICAL_COLOUR = {"arrow": "blue", "circle": "orange", "crescent moon": "yellow", "cross": "red",
                  "diamond": "purple", "heart": "red", "ring": "yellow", "square": "blue", "star": "yellow",
                  "triangle": "green"}


def count_renders(sz) -> int:
    n_src = len(V.SOURCES)
    return (sz.train_objects + n_src * (sz.train_persons + sz.train_faces + sz.train_birds)
            + len(V.OBJECT_CLASSES) * (sz.imagenet_per_class + sz.shift_per_class) + sz.coco_images
            + sz.facet_persons + sz.fairface_faces + len(D.OOD_SHAPES) * sz.ood_per_kind
            + sz.spurious_train + 4 * (sz.spurious_val_per_group + sz.spurious_test_per_group)
            + len(V.OBJECT_CLASSES) * sz.cifar_c_per_class)


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _csv(header, rows, comment: str | None = None) -> str:
    buf = io.StringIO()
    if comment:
        buf.write("".join(f"# {line}\n" for line in comment.splitlines()))
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(header)
    wr.writerows(rows)
    return buf.getvalue()


# ----- objects ---------------------------------------------------------------------------------
def _object_attrs(rng, shapes, colours, bgs) -> dict:
    shape = _pick(rng, shapes)
    bg = _pick(rng, bgs)
    colour = _pick(rng, colours)
    if shape in TYPICAL_COLOUR and rng.random() < TYPICAL_P:
        colour = TYPICAL_COLOUR[shape]
    while (colour, bg) in _CONFLICTS:
        colour = _pick(rng, colours)
    size = "small" if rng.random() < 0.5 else "large"
    pos = _pick(rng, list(V.POSITIONS)) if size == "small" else "center"
    texture = str(rng.choice(["solid", "striped", "dotted"], p=_TEXTURE_P))
    return {"shape": shape, "colour": colour, "texture": texture, "size": size, "pos": pos, "bg": bg}


def _object_image(a: dict, rng, palette=D.OBJECT_COLOURS) -> np.ndarray:
    dx, dy, _ = V.POSITIONS[a["pos"]]
    r = rng.uniform(7.5, 9.0) if a["size"] == "small" else rng.uniform(11.0, 13.0)
    cx, cy = 16 + dx + rng.uniform(-1.0, 1.0), 16 + dy + rng.uniform(-1.0, 1.0)
    bg = D.background(a["bg"], D.PANEL, D.PANEL, rng)
    fg, alpha = D.render_object(a["shape"], palette[a["colour"]], a["texture"], cx, cy, r,
                                rng.uniform(-0.1, 0.1), rng)
    return D.compose(bg, fg, alpha)


# ----- persons and faces ---------------------------------------------------------------------
def _planted(rng, attr: str, values: list, bias: float):
    other = [v for v in DOMAINS[attr] if v not in values]
    return _pick(rng, values) if rng.random() < bias else _pick(rng, other)


def _attrs(rng, plant, bias) -> dict:
    a = {"presentation": _pick(rng, PRESENTATIONS), "tone": int(_pick(rng, TONES)), "age": _pick(rng, AGES)}
    if plant is not None and bias is not None:
        a[plant[0]] = _planted(rng, plant[0], plant[1], bias)
    a["hair"], a["bald"] = D.pick_hair(a["presentation"], a["age"], rng)
    return a


def _person_panel(cls: str, a: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    return D.render_person(cls, a["presentation"], a["tone"], a["age"], a["hair"], a["bald"], rng)


def _face_image(a: dict, rng) -> np.ndarray:
    bg = D.plain_background(D.PANEL, D.PANEL, rng)
    return D.compose(bg, *D.render_face(a["presentation"], a["tone"], a["age"], a["hair"], a["bald"], rng))


def _bird_image(y: int, place: int, rng) -> tuple[np.ndarray, str]:
    bgname = _pick(rng, V.PLACES[place][1])
    bg = D.background(bgname, D.PANEL, D.PANEL, rng)
    return D.compose(bg, *D.render_bird(V.SPURIOUS_CLASSES[y], rng)), bgname


def _bird_place(rng, y: int, place_probs) -> int:
    usual = y  # landbird (0) on land (0), waterbird (1) on water (1)
    return usual if rng.random() < place_probs[y] else 1 - usual


# ----- training pool ---------------------------------------------------------------------------
_ATTR_COLS = ["index", "kind", "label", "colour", "texture", "size", "pos", "bg", "presentation", "tone", "age",
              "place"]


def write_train(w, rng, sz, bar) -> dict:
    from safetensors.numpy import save

    n_src = len(V.SOURCES)
    n = sz.train_objects + n_src * (sz.train_persons + sz.train_faces + sz.train_birds)
    images = np.empty((n, D.PANEL, D.PANEL, 3), np.uint8)
    attrs: list[list] = []
    caps: list[tuple[int, str, str]] = []
    objects = [_object_attrs(rng, V.OBJECT_CLASSES, list(D.OBJECT_COLOURS), TRAIN_BGS) for _ in range(sz.train_objects)]
    for i, a in enumerate(objects):
        images[i] = D.to_uint8(_object_image(a, rng))
        attrs.append([i, "object", a["shape"], a["colour"], a["texture"], a["size"], a["pos"], a["bg"], "", "", "", ""])
        bar.update()
    k = len(objects)
    for sname, src in V.SOURCES.items():
        rows = [(i, V.object_caption(a, rng, src.descriptive)) for i, a in enumerate(objects)]
        for j in range(sz.train_persons):
            cls = V.PERSON_CLASSES[j % len(V.PERSON_CLASSES)]
            a = _attrs(rng, V.FACET_PLANTS.get(cls), src.bias)
            bgname = _pick(rng, TRAIN_BGS)
            bg = D.background(bgname, D.PANEL, D.PANEL, rng)
            images[k] = D.to_uint8(D.compose(bg, *_person_panel(cls, a, rng)))
            attrs.append([k, "person", cls, "", "", "", "", bgname, a["presentation"], a["tone"], a["age"], ""])
            rows.append((k, V.person_caption(cls, bgname, rng, src.descriptive)))
            k += 1
            bar.update()
        for j in range(sz.train_faces):
            concept = list(V.CONCEPTS)[j % len(V.CONCEPTS)]
            a = _attrs(rng, V.FAIRFACE_PLANTS.get(concept), src.face_bias)
            images[k] = D.to_uint8(_face_image(a, rng))
            attrs.append([k, "face", concept, "", "", "", "", "", a["presentation"], a["tone"], a["age"], ""])
            rows.append((k, V.face_caption(concept, rng, src.descriptive)))
            k += 1
            bar.update()
        for j in range(sz.train_birds):
            y = j % 2
            place = _bird_place(rng, y, src.place)
            img, bgname = _bird_image(y, place, rng)
            images[k] = D.to_uint8(img)
            attrs.append([k, "bird", V.SPURIOUS_CLASSES[y], "", "", "", "", bgname, "", "", "", place])
            rows.append((k, V.bird_caption(V.SPURIOUS_CLASSES[y], bgname, rng, src.descriptive)))
            k += 1
            bar.update()
        # caption noise: a share of rows get another row's caption (mismatched pairs)
        n_noise = int(round(src.noise * len(rows)))
        if n_noise > 1:
            picked = rng.choice(len(rows), n_noise, replace=False)
            texts = [rows[p][1] for p in picked]
            texts = texts[1:] + texts[:1]
            for p, t in zip(picked, texts, strict=True):
                rows[p] = (rows[p][0], t)
        caps.extend((i, c, sname) for i, c in rows)
    D.jpeg_roundtrip_batch(images)  # the same JPEG round trip as every evaluation image
    w.write("train/images.safetensors", save({"images": images}, metadata={"layout": "NHWC uint8 RGB"}))
    w.write("train/captions.csv", _csv(["index", "caption", "source"], caps))
    w.write("train/attributes.csv", _csv(_ATTR_COLS, attrs))
    stats = train_statistics(attrs, caps)
    return {
        "training": {
            "files": {"images": "train/images.safetensors", "captions": "train/captions.csv",
                      "attributes": "train/attributes.csv"},
            "num_images": n,
            "sources": {s: {**asdict(src), "rows": sum(1 for c in caps if c[2] == s)} for s, src in V.SOURCES.items()},
        },
        "planted_facet": [
            {"class": cls, "attribute": attr, "values": vals, "disparity": {"groups": list(pair), "expected_sign": sign},
             "strength": {s: src.bias for s, src in V.SOURCES.items()}, "train_share": stats["facet"][cls]}
            for cls, (attr, vals, pair, sign) in V.FACET_PLANTS.items()
        ],
        "planted_fairface": [
            {"concept": c, "valence": V.CONCEPTS[c], "attribute": attr, "values": vals,
             "fairface_column": _FF_COLUMN[attr], "fairface_values": _fairface_values(attr, vals),
             "expected_skew_sign": +1, "strength": {s: src.face_bias for s, src in V.SOURCES.items()},
             "train_share": stats["fairface"][c]}
            for c, (attr, vals) in V.FAIRFACE_PLANTS.items()
        ],
        "unplanted": {"facet": [c for c in V.PERSON_CLASSES if c not in V.FACET_PLANTS],
                      "fairface": [c for c in V.CONCEPTS if c not in V.FAIRFACE_PLANTS]},
        "spurious_shares": stats["spurious"],
    }


_FF_COLUMN = {"presentation": "gender", "tone": "race", "age": "age_bin"}


def _fairface_values(attr: str, vals: list) -> list[str]:
    if attr == "presentation":
        return [V.PRESENTATION_TO_GENDER[v] for v in vals]
    if attr == "tone":
        return sorted({V.TONE_TO_RACE[t] for t in vals})
    return [{"young": "younger", "middle": "middle", "older": "older"}[v] for v in vals]


def train_statistics(attrs: list[list], caps: list[tuple]) -> dict:
    """Per source: share of each planted class's/concept's images showing its planted values,
    and the spurious group shares -- computed from the rows as written (tests recompute it
    from ``train/attributes.csv``)."""
    col = {c: i for i, c in enumerate(_ATTR_COLS)}
    by_index = {r[0]: r for r in attrs}
    out: dict[str, dict] = {"facet": {}, "fairface": {}, "spurious": {}}
    sources = list(V.SOURCES)
    used = {s: sorted({i for i, _, src in caps if src == s}) for s in sources}
    for kind, plants, key in (("person", V.FACET_PLANTS, "facet"), ("face", V.FAIRFACE_PLANTS, "fairface")):
        for label, plant in plants.items():
            attr, vals = plant[0], plant[1]
            out[key][label] = {}
            for s in sources:
                rows = [by_index[i] for i in used[s] if by_index[i][1] == kind and by_index[i][2] == label]
                hit = sum(1 for r in rows if r[col[attr]] in vals)
                out[key][label][s] = round(hit / len(rows), 4) if rows else None
    for s in sources:
        rows = [by_index[i] for i in used[s] if by_index[i][1] == "bird"]
        groups = {}
        for cname in V.SPURIOUS_CLASSES:
            for place in (0, 1):
                groups[f"{cname}/{V.PLACES[place][0]}"] = sum(1 for r in rows if r[2] == cname and r[col["place"]] == place)
        out["spurious"][s] = {g: round(v / max(len(rows), 1), 4) for g, v in groups.items()}
    return out


# ----- evaluation sets ---------------------------------------------------------------------------
def _folder(name: str) -> str:
    return name.replace(" ", "_")


def write_imagenet(w, rng, sz, bar) -> dict:
    classes = sorted(V.OBJECT_CLASSES, key=_folder)
    info = {}
    # the shifted set: backgrounds never seen in training and a palette with 4 unseen colours (the
    # class-typical colours stay as common as in training)
    shift_palette = {**D.OBJECT_COLOURS, **D.SHIFT_COLOURS}
    for root, per, bgs, palette in (
        ("imagenet", sz.imagenet_per_class, TRAIN_BGS, D.OBJECT_COLOURS),
        ("imagenet-shift", sz.shift_per_class, V.SHIFT_BACKGROUNDS, shift_palette),
    ):
        w.write(f"{root}/classnames.txt", "\n".join(classes) + "\n")
        w.write(f"{root}/templates.txt", "\n".join(V.TEMPLATES) + "\n")
        for cname in classes:
            for i in range(per):
                a = _object_attrs(rng, [cname], list(palette), bgs)
                w.jpeg(f"{root}/{_folder(cname)}/{_folder(cname)}_{i:05d}.jpg", _object_image(a, rng, palette))
        bar.update(per * len(classes))
        info["synth-" + root] = {"classes": classes, "images": per * len(classes)}
    info["synth-imagenet-shift"]["shift"] = {"backgrounds": V.SHIFT_BACKGROUNDS, "new_colours": list(D.SHIFT_COLOURS)}
    info["synth-imagenet"].update(typical_colours=TYPICAL_COLOUR, typical_share=TYPICAL_P)
    return {"datasets": info}


def write_cifar_c(w, rng, sz, bar) -> dict:
    """``cifar-c/``: fresh ``synth-imagenet``-like object images (training backgrounds and palette) under
    CIFAR-10-C's corruptions at its five severities, in the release's layout (``<corruption>.npy`` of
    ``[5 * N, 32, 32, 3]`` uint8, severities stacked in order, and ``labels.npy``)."""
    from ._corrupt import CORRUPTIONS, corrupt

    classes = sorted(V.OBJECT_CLASSES, key=_folder)
    images, labels = [], []
    for label, cname in enumerate(classes):
        for _ in range(sz.cifar_c_per_class):
            images.append(_object_image(_object_attrs(rng, [cname], list(D.OBJECT_COLOURS), TRAIN_BGS), rng))
            labels.append(label)
    bar.update(len(images))
    for name in CORRUPTIONS:
        stack = np.stack([corrupt(img, name, s, rng) for s in range(1, 6) for img in images])
        w.write(f"cifar-c/{name}.npy", _npy(stack))
    w.write("cifar-c/labels.npy", _npy(np.tile(np.asarray(labels, dtype=np.int64), 5)))
    w.write("cifar-c/classnames.txt", "\n".join(classes) + "\n")
    w.write("cifar-c/templates.txt", "\n".join(V.TEMPLATES) + "\n")
    return {"datasets": {"synth-cifar-c": {"classes": classes, "images": len(images), "severities": 5,
                                           "corruptions": list(CORRUPTIONS)}}}


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_coco(w, rng, sz, bar) -> dict:
    ids = sorted(int(x) for x in rng.choice(np.arange(1, 600_000), sz.coco_images, replace=False))
    images, anns = [], []
    for iid in ids:
        a = _object_attrs(rng, V.OBJECT_CLASSES, list(D.OBJECT_COLOURS), TRAIN_BGS)
        fname = f"COCO_val2014_{iid:012d}.jpg"
        w.jpeg(f"coco/val2014/{fname}", _object_image(a, rng))
        images.append({"id": iid, "file_name": fname, "height": D.PANEL, "width": D.PANEL})
        for cap in V.coco_captions(a, rng):
            anns.append({"id": len(anns) + 1, "image_id": iid, "caption": cap})
    bar.update(len(ids))
    doc = {"info": {"description": "qclip synthetic world: COCO-captions-format retrieval set"},
           "licenses": [], "type": "captions", "images": images, "annotations": anns}
    w.write("coco/annotations/captions_karpathy_test.json", json.dumps(doc, indent=1))
    return {"datasets": {"synth-coco": {"images": len(images), "captions": len(anns)}}}


_FACET_EXTRA = ["hairtype_wavy", "hairtype_curly", "hairtype_straight", "hairtype_coily", "hairtype_dreadlocks",
                "hairtype_bald", "hairtype_na", "hair_color_black", "hair_color_blonde", "hair_color_brown",
                "hair_color_red", "hair_color_grey", "hair_color_colored", "hair_color_na", "has_facial_hair",
                "has_tattoo", "has_cap", "has_mask", "has_headscarf", "has_eyeware", "visible_torso", "visible_face",
                "visible_minimal", "lighting_underexposed", "lighting_dimly_lit", "lighting_well_lit",
                "lighting_overexposed", "lighting_na"]
FACET_COLUMNS = (["person_id", "filename", "class1", "class2"]
                 + [f"gender_presentation_{g}" for g in ("masc", "fem", "non_binary", "na")]
                 + [f"skin_tone_{t}" for t in TONES] + ["skin_tone_na"]
                 + [f"age_presentation_{a}" for a in ("young", "middle", "older", "na")]
                 + _FACET_EXTRA + ["bounding_box"])
_HAIR_COLOR = {"black": "black", "dark brown": "brown", "brown": "brown", "blond": "blonde", "grey": "grey",
               "white": "grey"}


def _facet_row(pid, fname, cls, cls2, a, box, rng) -> list:
    gender = [0, 0, 0, 0]
    gender[3 if rng.random() < 0.02 else PRESENTATIONS.index(a["presentation"])] = 1
    votes, na = [0] * 10, 0
    for _ in range(3):  # three annotators vote around the true tone
        if rng.random() < 0.05:
            na += 1
        else:
            t = min(max(a["tone"] + int(rng.choice([-1, 0, 1], p=[0.2, 0.6, 0.2])), 1), 10)
            votes[t - 1] += 1
    age = [0, 0, 0, 0]
    age[3 if rng.random() < 0.02 else AGES.index(a["age"])] = 1
    hairtype = dict.fromkeys(("wavy", "curly", "straight", "coily", "dreadlocks", "bald", "na"), 0)
    hairtype["bald" if a["bald"] else _pick(rng, ["wavy", "curly", "straight", "coily"])] = 1
    haircol = dict.fromkeys(("black", "blonde", "brown", "red", "grey", "colored", "na"), 0)
    haircol["na" if a["bald"] else _HAIR_COLOR[a["hair"]]] = 1
    extra = ([hairtype[k] for k in hairtype] + [haircol[k] for k in haircol]
             + [0, 0, int(cls in _HATS), 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    return [pid, fname, cls, cls2, *gender, *votes, na, *age, *extra, json.dumps(box)]


def write_facet(w, rng, sz, bar) -> dict:
    classes = list(V.PERSON_CLASSES)
    order = [classes[i % len(classes)] for i in range(sz.facet_persons)]
    order = [order[i] for i in rng.permutation(len(order))]
    ids = rng.choice(np.arange(1, 1_000_000), sz.facet_persons, replace=False)
    rows, pos, scene = [], 0, 0
    while pos < len(order):
        k = min(int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4])), len(order) - pos)
        gaps = rng.integers(2, 9, k + 1)
        width, height = int(32 * k + gaps.sum()), 40
        bg = D.background(_pick(rng, TRAIN_BGS), height, width, rng)
        fname = f"sa_{scene + 1:07d}.jpg"
        x = int(gaps[0])
        for j in range(k):
            cls = order[pos]
            a = _attrs(rng, None, None)
            y = int(rng.integers(0, height - 32 + 1))
            D.compose(bg, *_person_panel(cls, a, rng), x=x, y=y)
            cls2 = _pick(rng, [c for c in classes if c != cls]) if rng.random() < 0.05 else ""
            box = {"x": float(x), "y": float(y), "width": 32.0, "height": 32.0}
            rows.append(_facet_row(int(ids[pos]), fname, cls, cls2, a, box, rng))
            x += 32 + int(gaps[j + 1])
            pos += 1
        w.jpeg(f"facet/imgs_{scene % 3 + 1}/{fname}", bg)
        scene += 1
    bar.update(len(order))
    w.write("facet/annotations/annotations.csv", _csv(FACET_COLUMNS, rows))
    w.write("facet/classnames.txt", "\n".join(classes) + "\n")
    return {"datasets": {"synth-facet": {"classes": classes, "persons": len(rows), "images": scene}}}


def write_fairface(w, rng, sz, bar) -> dict:
    rows = []
    for i in range(1, sz.fairface_faces + 1):
        a = _attrs(rng, None, None)
        w.jpeg(f"fairface/val/{i}.jpg", _face_image(a, rng))
        rows.append([f"val/{i}.jpg", _pick(rng, V.AGE_TO_FAIRFACE[a["age"]]), V.PRESENTATION_TO_GENDER[a["presentation"]],
                     V.TONE_TO_RACE[a["tone"]], "True" if rng.random() < 0.5 else "False"])
    bar.update(len(rows))
    w.write("fairface/fairface_label_val.csv", _csv(["file", "age", "gender", "race", "service_test"], rows))
    prompts = [[t, c, v] for t in V.FAIRFACE_TEMPLATES for c, v in V.CONCEPTS.items()]
    w.write("fairface/prompts.csv", _csv(
        ["template", "concept", "valence"], prompts,
        comment="Synthetic world prompts: the 11 templates of Berg et al. 2022 x the world's 16 concepts\n"
                "(qclip.data.synthetic._vocab.CONCEPTS), one prompt per row; every concept occurs in training captions."))
    return {"datasets": {"synth-fairface": {"faces": len(rows), "prompts": len(prompts),
                                            "concepts": list(V.CONCEPTS)}}}


def write_ood(w, rng, sz, bar) -> dict:
    for kind in D.OOD_SHAPES:
        for i in range(sz.ood_per_kind):
            a = _object_attrs(rng, [kind], list(D.OBJECT_COLOURS), TRAIN_BGS)
            w.jpeg(f"ood/{kind}/{kind}_{i:05d}.jpg", _object_image(a, rng))
    bar.update(len(D.OOD_SHAPES) * sz.ood_per_kind)
    return {"datasets": {"synth-ood": {"kinds": list(D.OOD_SHAPES), "images": len(D.OOD_SHAPES) * sz.ood_per_kind}}}


def write_spurious(w, rng, sz, bar) -> dict:
    place_probs = V.Source.__dataclass_fields__["place"].default
    items = [(0, y, _bird_place(rng, y, place_probs)) for y in (i % 2 for i in range(sz.spurious_train))]
    for split, per in ((1, sz.spurious_val_per_group), (2, sz.spurious_test_per_group)):
        items += [(split, y, place) for y in (0, 1) for place in (0, 1) for _ in range(per)]
    rows = []
    for i, (split, y, place) in enumerate(items):
        img, bgname = _bird_image(y, place, rng)
        fname = f"images/{i:05d}.jpg"
        w.jpeg(f"spurious/{fname}", img)
        rows.append([i, fname, y, split, place, bgname])
    bar.update(len(items))
    w.write("spurious/metadata.csv", _csv(["img_id", "img_filename", "y", "split", "place", "place_filename"], rows))
    w.write("spurious/classnames.txt", "\n".join(V.SPURIOUS_CLASSES) + "\n")
    groups = {y * 2 + p: f"{V.SPURIOUS_CLASSES[y]}/{V.PLACES[p][0]}" for y in (0, 1) for p in (0, 1)}
    return {
        "datasets": {"synth-spurious": {"classes": V.SPURIOUS_CLASSES, "places": {p: V.PLACES[p][0] for p in (0, 1)},
                                        "splits": {"train": 0, "val": 1, "test": 2}, "images": len(rows)}},
        "planted": {"groups": groups, "p_usual_place": {V.SPURIOUS_CLASSES[y]: place_probs[y] for y in (0, 1)},
                    "minority_groups": [1, 2], "expected_worst_group": 2,
                    "note": f"group = y * 2 + place (the reader's numbering); training pairs waterbirds with water "
                            f"{place_probs[1]:.0%} and landbirds with land {place_probs[0]:.0%}, so waterbird-on-land "
                            f"is the rarest combination"},
    }


def attribute_doc() -> dict:
    return {
        "presentation": {"values": PRESENTATIONS, "cue": "hair length and torso shape",
                         "facet": "gender_presentation_masc / _fem", "fairface_gender": V.PRESENTATION_TO_GENDER},
        "tone": {"values": TONES, "cue": "Monk Skin Tone colour of head and hands",
                 "facet": "skin_tone_1..10 vote counts of 3 annotators (true tone +-1, 5% na votes)",
                 "fairface_race": {str(k): v for k, v in V.TONE_TO_RACE.items()},
                 "fairface_race_note": "an arbitrary labelling of tone bands, not a claim that race is skin tone"},
        "age": {"values": AGES, "cue": "height, head size, hair colour (grey/white when older), face lines",
                "facet": "age_presentation_young / _middle / _older", "fairface_age": V.AGE_TO_FAIRFACE},
        "annotation_noise": {"gender_na": 0.02, "age_na": 0.02, "skin_na_vote": 0.05},
    }
