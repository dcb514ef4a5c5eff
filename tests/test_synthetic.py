"""The synthetic world generator: determinism, idempotence, layouts, planted effects."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from qclip.data.synthetic import (
    DATASETS,
    GENERATOR_VERSION,
    _draw,
    _parts,
    _vocab,
    generate_world,
    read_manifest,
    world_is_complete,
)


def _tree_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture(scope="module")
def world(synthetic_test_world) -> tuple[Path, dict]:
    """(root, manifest) of the seed-0 test world, shared with the tiny models' tests (tests/conftest.py)."""
    return synthetic_test_world


# ----- determinism and idempotence -----------------------------------------------------------------
def test_same_seed_gives_identical_files(world, tmp_path):
    root, manifest = world
    again = generate_world(tmp_path / "w", seed=0, size="test", progress=False)
    assert again == manifest
    assert _tree_digests(tmp_path / "w") == _tree_digests(root)


def test_other_seed_gives_other_world(world, tmp_path):
    other = generate_world(tmp_path / "w", seed=1, size="test", progress=False)
    assert other["seed"] == 1
    assert other["content_digest"] != world[1]["content_digest"]


def test_second_call_is_a_noop(world):
    root, manifest = world
    stamp = {p: p.stat().st_mtime_ns for p in (root / "world.json", root / "train" / "images.safetensors")}
    assert generate_world(root, seed=0, size="test", progress=False) == manifest
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp


def test_half_written_world_is_regenerated(world, tmp_path):
    root = tmp_path / "w"
    first = generate_world(root, seed=0, size="test", progress=False)
    (root / ".complete").unlink()
    (root / "coco" / "annotations" / "captions_karpathy_test.json").unlink()
    (root / "imagenet" / "stale.txt").write_text("left over")
    assert not world_is_complete(root)
    assert generate_world(root, seed=0, size="test", progress=False) == first
    assert world_is_complete(root)
    assert _tree_digests(root) == _tree_digests(world[0])


def test_changed_seed_regenerates_in_place(tmp_path):
    root = tmp_path / "w"
    generate_world(root, seed=0, size="test", progress=False)
    m = generate_world(root, seed=2, size="test", progress=False)
    assert read_manifest(root)["seed"] == 2 == m["seed"]
    assert world_is_complete(root)


def test_marker_holds_manifest_digest(world):
    root, _ = world
    digest = hashlib.sha256((root / "world.json").read_bytes()).hexdigest()
    assert (root / ".complete").read_text().strip() == digest
    assert not world_is_complete(root / "nowhere")


@pytest.mark.parametrize("kwargs", [{"size": "huge"}, {"seed": -1}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError, match="Expected"):
        generate_world(tmp_path, progress=False, **kwargs)


# ----- layouts (FORMATS.md) --------------------------------------------------------------------
def test_manifest_and_config(world):
    root, m = world
    assert (m["version"], m["seed"], m["size"]) == (GENERATOR_VERSION, 0, "test")
    assert set(m["datasets"]) == set(DATASETS)
    import tomllib

    cfg = tomllib.loads((root / "qclip.toml").read_text())["datasets"]
    assert {k: v["kind"] for k, v in cfg.items()} == {k: v[0] for k, v in DATASETS.items()}
    assert cfg["synth-facet"]["classnames"] == "facet/classnames.txt"
    assert cfg["synth-fairface"]["prompts"] == "fairface/prompts.csv"
    for entry in cfg.values():
        assert not os.path.isabs(entry["root"]) and (root / entry["root"]).is_dir()


def test_imagenet_layout(world):
    root, _ = world
    for name in ("imagenet", "imagenet-shift"):
        classes = (root / name / "classnames.txt").read_text().splitlines()
        assert classes == _vocab.OBJECT_CLASSES  # sorted, spaces kept
        folders = sorted(p.name for p in (root / name).iterdir() if p.is_dir())
        assert folders == [c.replace(" ", "_") for c in classes]
        assert all("{}" in t for t in (root / name / "templates.txt").read_text().splitlines())
    img = Image.open(next((root / "imagenet" / "crescent_moon").iterdir()))
    assert (img.format, img.size, img.mode) == ("JPEG", (32, 32), "RGB")


def test_coco_layout(world):
    root, _ = world
    doc = json.loads((root / "coco" / "annotations" / "captions_karpathy_test.json").read_text())
    assert {"id", "file_name", "height", "width"} <= set(doc["images"][0])
    assert set(doc["annotations"][0]) == {"id", "image_id", "caption"}
    per_image = Counter(a["image_id"] for a in doc["annotations"])
    assert set(per_image.values()) == {5} and set(per_image) == {i["id"] for i in doc["images"]}
    for rec in doc["images"]:
        assert rec["file_name"] == f"COCO_val2014_{rec['id']:012d}.jpg"
        assert (root / "coco" / "val2014" / rec["file_name"]).is_file()
    caps = [a["caption"] for a in doc["annotations"]]
    assert len(set(caps)) > 0.8 * len(caps)


def test_facet_layout(world):
    root, _ = world
    df = pd.read_csv(root / "facet" / "annotations" / "annotations.csv", keep_default_na=False)
    from qclip.data.facet import REQUIRED_COLUMNS

    assert set(REQUIRED_COLUMNS) | {"class2"} <= set(df.columns)
    assert {"hairtype_na", "lighting_well_lit", "visible_face"} <= set(df.columns)  # ignored extras
    classes = (root / "facet" / "classnames.txt").read_text().splitlines()
    assert classes == _vocab.PERSON_CLASSES and set(df["class1"]) <= set(classes)
    votes = df[[f"skin_tone_{t}" for t in range(1, 11)] + ["skin_tone_na"]].sum(axis=1)
    assert (votes == 3).all()  # three annotators
    for prefix, values in (("gender_presentation", ("masc", "fem", "non_binary", "na")),
                           ("age_presentation", ("young", "middle", "older", "na"))):
        assert (df[[f"{prefix}_{v}" for v in values]].sum(axis=1) == 1).all()
    assert df["filename"].duplicated().any()  # several persons per image
    for fname, box in zip(df["filename"], df["bounding_box"], strict=True):
        b = json.loads(box)
        assert set(b) == {"x", "y", "width", "height"}
        path = next(p for d in ("imgs_1", "imgs_2", "imgs_3") if (p := root / "facet" / d / fname).is_file())
        w, h = Image.open(path).size
        assert 0 <= b["x"] and b["x"] + b["width"] <= w and 0 <= b["y"] and b["y"] + b["height"] <= h


def test_fairface_layout(world):
    root, _ = world
    df = pd.read_csv(root / "fairface" / "fairface_label_val.csv", keep_default_na=False)
    assert list(df.columns) == ["file", "age", "gender", "race", "service_test"]
    from qclip.data.fairface import AGE_BINS, GENDERS, RACES

    assert set(df["age"]) <= set(AGE_BINS) and set(df["gender"]) <= set(GENDERS) and set(df["race"]) <= set(RACES)
    assert all((root / "fairface" / f).is_file() for f in df["file"])
    from qclip.data.prompts import load_fairface_prompts

    prompts = load_fairface_prompts(root / "fairface" / "prompts.csv")
    assert set(prompts["concept"]) == set(_vocab.CONCEPTS)
    assert set(prompts["valence"]) == {"favourable", "unfavourable"}


def test_spurious_and_ood_layout(world):
    root, m = world
    df = pd.read_csv(root / "spurious" / "metadata.csv")
    assert {"img_filename", "y", "place", "split"} <= set(df.columns)
    assert set(df["split"]) == {0, 1, 2} and set(df["y"]) == {0, 1} and set(df["place"]) == {0, 1}
    test = df[df["split"] == 2]
    assert len(set(Counter(zip(test["y"], test["place"], strict=True)).values())) == 1  # balanced groups
    assert m["planted"]["spurious"]["expected_worst_group"] in m["planted"]["spurious"]["minority_groups"]
    kinds = sorted(p.name for p in (root / "ood").iterdir())
    assert kinds == sorted(_draw.OOD_SHAPES) and not set(kinds) & set(_vocab.OBJECT_CLASSES)


def test_every_dataset_reads_through_the_config(world):
    from qclip.data.config import DataConfig

    root, m = world
    cfg = DataConfig.load(root / "qclip.toml")
    assert set(cfg.names()) == set(m["datasets"])
    for entry in cfg:
        assert entry.available() == (True, "")
        ds = entry.load()
        assert len(ds) > 0 and ds.exclusions.empty, entry.name
        assert ds.load_image(0).size == (32, 32)


# ----- training pool and planted effects ----------------------------------------------------------
def _pool(root: Path):
    from safetensors.numpy import load_file

    images = load_file(str(root / "train" / "images.safetensors"))["images"]
    caps = pd.read_csv(root / "train" / "captions.csv", keep_default_na=False)
    attrs = pd.read_csv(root / "train" / "attributes.csv", keep_default_na=False, dtype=str)
    return images, caps, attrs


def test_training_pool_files(world):
    root, m = world
    images, caps, attrs = _pool(root)
    assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3) and len(images) == m["training"]["num_images"]
    assert list(caps.columns) == ["index", "caption", "source"]
    assert set(caps["source"]) == set(_vocab.SOURCES) == set(m["training"]["sources"])
    assert caps["index"].between(0, len(images) - 1).all() and len(attrs) == len(images)
    assert set(attrs["kind"]) == {"object", "person", "face", "bird"}


def test_training_images_went_through_jpeg(world):
    images, _, _ = _pool(world[0])
    sample = images[:16].copy()
    np.testing.assert_array_equal(_draw.jpeg_roundtrip_batch(sample.copy()), np.stack(
        [_draw.jpeg_roundtrip(x) for x in sample]))
    # a second round trip at quality 95 moves pixels only slightly: they are JPEG-decoded already
    assert np.abs(_draw.jpeg_roundtrip(sample[0]).astype(int) - sample[0]).mean() < 2.0


def test_prompt_words_occur_in_training_captions(world):
    root, _ = world
    _, caps, _ = _pool(root)
    text = "\n".join(caps["caption"]).lower()
    for name in _vocab.OBJECT_CLASSES + [c.replace("_", " ") for c in _vocab.PERSON_CLASSES] + _vocab.SPURIOUS_CLASSES:
        assert name in text, name
    for concept in _vocab.CONCEPTS:
        assert f" {concept} " in f" {text} ".replace("\n", " "), concept
    for template in _vocab.TEMPLATES:
        assert template.split("{}")[0] in text


def test_planted_shares_match_manifest(world):
    root, m = world
    _, caps, attrs = _pool(root)
    attrs = attrs.set_index(attrs["index"].astype(int))
    for kind, key, plants in (("person", "class", m["planted"]["facet"]), ("face", "concept", m["planted"]["fairface"])):
        for p in plants:
            for source, share in p["train_share"].items():
                idx = caps.loc[caps["source"] == source, "index"].unique()
                rows = attrs.loc[idx]
                rows = rows[(rows["kind"] == kind) & (rows["label"] == p[key])]
                got = rows[p["attribute"]].isin([str(v) for v in p["values"]]).mean()
                assert got == pytest.approx(share, abs=1e-3)


def test_planted_sampler_strength():
    rng = np.random.default_rng(0)
    for attr, values, bias in (("presentation", ["fem"], 0.9), ("tone", [1, 2, 3, 4], 0.7), ("age", ["young"], 0.8)):
        draws = [_parts._attrs(rng, (attr, values), bias)[attr] for _ in range(3000)]
        assert np.mean([d in values for d in draws]) == pytest.approx(bias, abs=0.03)
    uniform = [_parts._attrs(rng, None, None)["tone"] for _ in range(3000)]
    assert np.mean([t <= 4 for t in uniform]) == pytest.approx(0.4, abs=0.03)


def test_planted_effects_declared_with_signs(world):
    _, m = world
    facet = {p["class"]: p for p in m["planted"]["facet"]}
    assert facet["nurse"]["disparity"] == {"groups": ["masc", "fem"], "expected_sign": -1}
    assert facet["doctor"]["disparity"] == {"groups": ["masc", "fem"], "expected_sign": 1}
    assert {p["disparity"]["expected_sign"] for p in facet.values() if p["attribute"] == "tone"} == {-1, 1}
    assert set(m["unplanted"]["facet"]).isdisjoint(facet) and len(m["unplanted"]["facet"]) >= 3
    assert set(facet) | set(m["unplanted"]["facet"]) == set(_vocab.PERSON_CLASSES)
    for p in m["planted"]["fairface"]:
        assert p["expected_skew_sign"] == 1 and p["fairface_column"] in ("gender", "race", "age_bin")
    ff = {p["concept"]: p for p in m["planted"]["fairface"]}
    assert ff["friendly"]["fairface_values"] == ["Black", "Indian"]


def test_eval_sets_are_balanced(world):
    root, _ = world
    df = pd.read_csv(root / "facet" / "annotations" / "annotations.csv", keep_default_na=False)
    counts = Counter(df["class1"])
    assert max(counts.values()) - min(counts.values()) <= 1


def test_cifar_c_arrays_in_the_release_layout(world):
    from qclip.data.config import DataConfig
    from qclip.data.synthetic._corrupt import CORRUPTIONS

    root, manifest = world
    ds = DataConfig.load(root / "qclip.toml").get("synth-cifar-c").load()
    from qclip.data.synthetic.world import SIZES

    per_class = SIZES["test"].cifar_c_per_class
    n = per_class * len(manifest["datasets"]["synth-imagenet"]["classes"])
    assert len(ds) == len(CORRUPTIONS) * 5 * n and ds.meta["per_severity"] == n
    assert ds.classnames == manifest["datasets"]["synth-imagenet"]["classes"]
    labels = np.load(root / "cifar-c" / "labels.npy", allow_pickle=False)
    assert labels.shape == (5 * n,) and (labels[:n] == labels[n:2 * n]).all()
    for name in CORRUPTIONS:
        arr = np.load(root / "cifar-c" / f"{name}.npy", allow_pickle=False)
        assert arr.dtype == np.uint8 and arr.shape == (5 * n, 32, 32, 3)
    assert len(ds.subset("contrast", 5)) == n


def test_cifar_c_corruptions_grow_with_severity():
    from qclip.data.synthetic._corrupt import CORRUPTIONS, corrupt

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    img[8:24, 8:24] = 255  # an edge for the blur to smear
    for name in CORRUPTIONS:
        dist = [np.abs(corrupt(img, name, s, np.random.default_rng(1)).astype(float) - img).mean() for s in range(1, 6)]
        assert dist[0] > 0 and dist[-1] > dist[0], (name, dist)
        out = corrupt(img, name, 3, np.random.default_rng(1))
        assert out.dtype == np.uint8 and out.shape == img.shape
    # contrast is exactly (x - mean) * c + mean on [0, 1], truncated to uint8 as the release does
    x = img.astype(np.float64) / 255
    want = (np.clip((x - x.mean(axis=(0, 1))) * 0.4 + x.mean(axis=(0, 1)), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(corrupt(img, "contrast", 3, rng), want)
    # noise has the release's standard deviation (before clipping): 0.08 at severity 3
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    noisy = corrupt(flat, "gaussian_noise", 3, np.random.default_rng(2)).astype(float) / 255
    assert abs(noisy.std() - 0.08) < 0.005
    with pytest.raises(ValueError, match="corruption"):
        corrupt(img, "snow", 1, rng)
    with pytest.raises(ValueError, match="severity"):
        corrupt(img, "contrast", 6, rng)
