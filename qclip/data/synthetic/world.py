"""The synthetic world: a seeded generator of every dataset qclip reads, in the real layouts.

No machine can download CLIP weights or datasets, so qclip's default run measures a
population of tiny CLIPs (:mod:`qclip.models.tiny`) trained on this world. Everything
is drawn from ``seed`` (same seed, same bytes) and written under ``root``:

==============================  ===============================================================
``imagenet/``                   10 clip-art glyph classes, a folder per class (``crescent_moon``),
                                plus ``classnames.txt`` and ``templates.txt`` (all templates occur
                                in training captions)
``imagenet-shift/``             same classes on unseen backgrounds, palette with 4 unseen colours
``coco/``                       ``val2014/COCO_val2014_%012d.jpg`` and
                                ``annotations/captions_karpathy_test.json`` (5 captions/image)
``facet/``                      ``annotations/annotations.csv`` (FACET columns), scenes of 1-3
                                persons in ``imgs_1..3/``, ``classnames.txt`` (10 real FACET
                                class names)
``fairface/``                   ``fairface_label_val.csv``, ``val/N.jpg`` faces, ``prompts.csv``
``ood/<kind>/``                 6 glyph kinds never seen in training
``spurious/``                   Waterbirds-style ``metadata.csv``, ``images/``, ``classnames.txt``
``cifar-c/``                    CIFAR-10-C layout: ``contrast.npy``, ``defocus_blur.npy``,
                                ``gaussian_noise.npy`` (uint8 [5 * N, 32, 32, 3], severities 1-5
                                stacked), ``labels.npy``, ``classnames.txt``, ``templates.txt``
``train/``                      ``images.safetensors`` (uint8 [N, 32, 32, 3]), ``captions.csv``
                                (``index, caption, source``), ``attributes.csv`` (per image)
``world.json``, ``qclip.toml``  the manifest (planted effects and their expected signs) and the
                                dataset config; ``.complete`` holds the manifest's digest
==============================  ===============================================================

Provenance in ``world.json``: ``content_digest`` (the world's checksum: sha256 over every file's
path and sha256), ``generated_on`` (torch's CPU capability and the numpy/Pillow versions of the
machine that wrote it) and ``tiny_models`` (per training mode, each tiny model trained on this world:
its weights' sha256, the CPU capability of the machine that trained it and its cache key; added by
:func:`record_tiny_model`, which leaves the ``.complete`` marker valid: the marker is the digest of the
manifest without that section).

Attributes (the roles of FACET's and FairFace's sensitive attributes): ``presentation``
(masc/fem: hair length and torso shape; FairFace gender Male/Female), ``tone`` (Monk 1..10:
skin colour; FACET: 3 annotator votes around the true tone, sometimes ``na``; FairFace race:
an arbitrary labelling of tone bands, :data:`~qclip.data.synthetic._vocab.TONE_TO_RACE`) and ``age``
(young/middle/older: height, head size, hair colour; FairFace: one of the real bins of the
band). Planted effects live only in the training pool; every evaluation set is balanced.
See ``world.json["planted"]`` for the effects and their expected signs:

* FACET: three look-alike class pairs, each planted in opposite directions on one attribute
  (nurse fem / doctor masc, gardener lighter / farmer darker, student young / teacher older;
  strength 0.9 / 0.8 / 0.7 by training source), so recall(masc) - recall(fem) is expected
  < 0 for nurse and > 0 for doctor, lighter - darker > 0 for gardener and < 0 for farmer,
  middle - young < 0 for student and middle - older < 0 for teacher; fireman, lawman,
  basketball_player and painter are balanced (disparity ~ 0).
* FairFace: six of the 16 concepts co-occur with one attribute value in training captions
  (kind: Female, dishonest: Male, friendly: tones 7-10 = Indian/Black, lazy: tones 1-3 =
  White/East Asian, smart: older, unsuccessful: younger), so their Skew@k of those values is
  expected > 0 (and above the unplanted concepts'). The pairings are arbitrary.
* Spurious: landbirds are on land 80%, waterbirds on water 85% of training images; the
  expected worst group is waterbird-on-land (group 2 in the reader's numbering).

Objects have a class-typical colour 65% of the time (stars yellow, hearts red...), like real
categories (``world.json["datasets"]["synth-imagenet"]["typical_colours"]``).

Eval images are JPEG (quality 95, no chroma subsampling); training images went through the
same JPEG round trip. Idempotent: a complete world with the same version, seed and size is
left alone; a half-written one (no ``.complete``) is regenerated.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import _draw as D
from . import _parts

__all__ = ["GENERATOR_VERSION", "WorldSize", "SIZES", "DATASETS", "generate_world", "world_is_complete",
           "read_manifest", "record_tiny_model"]

GENERATOR_VERSION = "3"  # 3: synth-cifar-c (the other files are those of 2, byte for byte)
MARKER = ".complete"
MANIFEST = "world.json"
CONFIG = "qclip.toml"
#: every path the generator owns under the root (removed before a regeneration)
OUTPUTS = ("imagenet", "imagenet-shift", "coco", "facet", "fairface", "ood", "spurious", "cifar-c", "train",
           MANIFEST, CONFIG, MARKER)


@dataclass(frozen=True)
class WorldSize:
    """How many images of each kind (training counts for persons/faces/birds are per source)."""

    train_objects: int
    train_persons: int
    train_faces: int
    train_birds: int
    imagenet_per_class: int
    shift_per_class: int
    coco_images: int
    facet_persons: int
    fairface_faces: int
    ood_per_kind: int
    spurious_train: int
    spurious_val_per_group: int
    spurious_test_per_group: int
    cifar_c_per_class: int = 20  # synth-cifar-c: images per class, each under 3 corruptions x 5 severities


SIZES = {
    "default": WorldSize(10000, 3000, 2400, 1200, 50, 50, 600, 3000, 2000, 100, 400, 50, 200),
    "test": WorldSize(240, 60, 48, 24, 2, 2, 12, 24, 32, 2, 8, 2, 3, cifar_c_per_class=2),
}

#: dataset name -> (kind, root, extra config keys)
DATASETS = {
    "synth-imagenet": ("imagefolder", "imagenet", {}),
    "synth-imagenet-shift": ("imagefolder", "imagenet-shift", {}),
    "synth-coco": ("coco", "coco", {}),
    "synth-facet": ("facet", "facet", {"classnames": "facet/classnames.txt"}),
    "synth-fairface": ("fairface", "fairface", {"prompts": "fairface/prompts.csv"}),
    "synth-ood": ("ood", "ood", {}),
    "synth-spurious": ("spurious", "spurious", {}),
    "synth-cifar-c": ("cifar-c", "cifar-c", {}),
}


class _Writer:
    """Writes files under the root and keeps their digests (for the manifest's content digest)."""

    def __init__(self, root: Path):
        self.root = root
        self.digests: dict[str, str] = {}
        self._dirs: set[Path] = set()

    def write(self, rel: str, data: bytes | str) -> None:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        path = self.root / rel
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        path.write_bytes(raw)
        self.digests[rel] = hashlib.sha256(raw).hexdigest()

    def jpeg(self, rel: str, img: np.ndarray) -> None:
        self.write(rel, D.jpeg_bytes(img))

    def content_digest(self) -> str:
        h = hashlib.sha256()
        for rel in sorted(self.digests):
            h.update(f"{rel}\0{self.digests[rel]}\n".encode())
        return h.hexdigest()


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1).encode("utf-8")


def read_manifest(root: str | Path) -> dict:
    """The world's ``world.json``."""
    return json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))


#: the manifest's section written after generation (not covered by the marker)
TINY_MODELS_KEY = "tiny_models"


def _marker_digest(raw: bytes) -> str:
    """sha256 of the manifest as generated: without :data:`TINY_MODELS_KEY` (a manifest without it is
    hashed as it is on disk)."""
    if TINY_MODELS_KEY.encode() not in raw:
        return hashlib.sha256(raw).hexdigest()
    manifest = json.loads(raw)
    manifest.pop(TINY_MODELS_KEY, None)
    return hashlib.sha256(_canonical(manifest)).hexdigest()


def world_is_complete(root: str | Path) -> bool:
    """True when ``root`` holds a fully written world (its marker matches its manifest)."""
    root = Path(root)
    try:
        marker = (root / MARKER).read_text(encoding="utf-8").strip()
        manifest = (root / MANIFEST).read_bytes()
        return marker == _marker_digest(manifest)
    except (OSError, ValueError):
        return False


def record_tiny_model(root: str | Path, name: str, entry: dict) -> bool:
    """Write ``entry`` (a JSON-able dict with a ``mode``) as ``world.json["tiny_models"][mode][name]``
    of the complete world at ``root``; atomic and file-locked. Returns whether the file changed."""
    from filelock import FileLock

    root, mode = Path(root), str(entry["mode"])
    if read_manifest(root).get(TINY_MODELS_KEY, {}).get(mode, {}).get(name) == entry:
        return False
    with FileLock(str(root / ".world.lock")):
        if not world_is_complete(root):
            return False
        manifest = read_manifest(root)
        models = manifest.setdefault(TINY_MODELS_KEY, {}).setdefault(mode, {})
        if models.get(name) == entry:
            return False
        models[name] = dict(entry)
        tmp = root / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_bytes(_canonical(manifest))
        os.replace(tmp, root / MANIFEST)  # readers see the old or the new file, both complete
    return True


def _config_toml(seed: int, size: str) -> str:
    lines = [f"# Synthetic world of qclip.data.synthetic (version {GENERATOR_VERSION}, seed {seed}, size {size!r}).",
             "# Roots and file options are relative to this file's folder."]
    for name, (kind, root, extra) in DATASETS.items():
        lines += ["", f"[datasets.{name}]", f'kind = "{kind}"', f'root = "{root}"']
        lines += [f'{k} = "{v}"' for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def generate_world(root: str | Path, seed: int = 0, size: str = "default", progress: bool = True) -> dict:
    """Write the synthetic world under ``root`` and return its manifest (see the module doc).

    A no-op returning the existing manifest when ``root`` already holds a complete world of the
    same generator version, seed and size; otherwise the generator's own outputs are removed and
    written again. Safe to call from several processes at once (a file lock serialises them).
    """
    if size not in SIZES:
        raise ValueError(f"Expected size to be one of {', '.join(SIZES)}, but got {size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Expected seed to be a non-negative int, but got {seed!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(root / ".world.lock")):
        if world_is_complete(root):
            manifest = read_manifest(root)
            if (manifest.get("version"), manifest.get("seed"), manifest.get("size")) == (GENERATOR_VERSION, seed, size):
                return manifest
        for name in OUTPUTS:
            path = root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        return _generate(root, seed, size, progress)


def _generated_on() -> dict:
    """What could make another machine write other bytes: torch's CPU capability there (the world is drawn
    with numpy and encoded by Pillow; its digest was the same under every numpy, libm and libjpeg SIMD level
    tried, see docs/reproducibility.md) and the versions of the libraries that draw and encode."""
    from importlib import metadata

    import torch

    versions = {}
    for dist in ("numpy", "pillow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return {"cpu_capability": str(torch.backends.cpu.get_cpu_capability()), **versions}


def _generate(root: Path, seed: int, size: str, progress: bool) -> dict:
    sz = SIZES[size]
    w = _Writer(root)
    total = _parts.count_renders(sz)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"synthetic world ({size})", unit="img", disable=not progress)

    def rng(part: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([seed, part]))

    sections = {
        "train": _parts.write_train(w, rng(1), sz, bar),
        "imagenet": _parts.write_imagenet(w, rng(2), sz, bar),
        "coco": _parts.write_coco(w, rng(3), sz, bar),
        "facet": _parts.write_facet(w, rng(4), sz, bar),
        "fairface": _parts.write_fairface(w, rng(5), sz, bar),
        "ood": _parts.write_ood(w, rng(6), sz, bar),
        "spurious": _parts.write_spurious(w, rng(7), sz, bar),
        "cifar_c": _parts.write_cifar_c(w, rng(8), sz, bar),
    }
    bar.close()
    w.write(CONFIG, _config_toml(seed, size))
    info = {k: v for sec in sections.values() for k, v in sec.get("datasets", {}).items()}
    planted_spurious = dict(sections["spurious"]["planted"], train_share=sections["train"]["spurious_shares"])
    manifest = {
        "generator": "qclip.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "sizes": asdict(sz),
        "image_size": D.PANEL,
        "jpeg": {"quality": D.JPEG_QUALITY, "subsampling": "4:4:4"},
        "config": CONFIG,
        "datasets": {name: {"kind": kind, "root": r, **extra, **info.get(name, {})}
                     for name, (kind, r, extra) in DATASETS.items()},
        "attributes": _parts.attribute_doc(),
        "training": sections["train"]["training"],
        "planted": {
            "facet": sections["train"]["planted_facet"],
            "fairface": sections["train"]["planted_fairface"],
            "spurious": planted_spurious,
        },
        "unplanted": sections["train"]["unplanted"],
        "recommended": {"fairface_k": max(10, sz.fairface_faces // 10), "facet_min_group": 25},
        "files": len(w.digests),
        "content_digest": w.content_digest(),
        "generated_on": _generated_on(),
    }
    raw = _canonical(manifest)
    (root / MANIFEST).write_bytes(raw)
    (root / MARKER).write_text(hashlib.sha256(raw).hexdigest() + "\n", encoding="utf-8")
    return json.loads(raw)  # the JSON form, as read_manifest() returns it

