"""qclip.data.imagefolder (+ the template helpers of qclip.data.prompts)."""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

from qclip.data import ClassificationSet, format_prompts, read_imagefolder, read_ood_folder, resolve_templates
from qclip.data.prompts import _zero_shot_metadata, imagenet_wnids
from qclip.errors import DataFormatError, DatasetUnavailable
from tests.data._helpers import FIXTURES, copy_sample, corrupt

SAMPLE = FIXTURES / "imagenet_sample"


def _tiny(path, colour=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def test_sample_with_imagenet_label_space():
    ds = read_imagefolder(SAMPLE, name="imagenet-sample", classnames="imagenet")
    assert isinstance(ds, ClassificationSet)
    assert len(ds) == 6
    assert ds.table["label"].tolist() == [0, 0, 1, 1, 151, 151]
    assert len(ds.classnames) == 1000 and ds.classnames[0] == "tench"
    assert ds.meta["label_mapping"] == "wnid"
    assert ds.present_labels == [0, 1, 151]
    assert len(ds.templates) == 80 and all("{}" in t for t in ds.templates)
    assert all(os.path.isabs(p) for p in ds.table["path"])
    assert ds.load_image(0).mode == "RGB"


def test_shipped_wnids_are_the_sorted_1000():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids))
    assert wnids == sorted(wnids)
    assert wnids[0] == "n01440764" and wnids[151] == "n02085620" and wnids[999] == "n15075141"


def test_default_label_space_is_the_folders():
    ds = read_imagefolder(SAMPLE)
    assert ds.classnames == ["n01440764", "n01443537", "n02085620"]
    assert ds.table["label"].tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.templates == ["a photo of a {}."]
    assert ds.meta["label_mapping"] == "folders"


def test_open_clip_templates_become_format_strings():
    openai = resolve_templates("openai")
    simple = resolve_templates("simple")
    assert len(openai) == 80 and len(simple) == 7
    zsm = _zero_shot_metadata()  # open_clip's own module, loaded without torch
    assert zsm.__file__.endswith(os.path.join("open_clip", "zero_shot_metadata.py"))
    for fn, text in zip(zsm.OPENAI_IMAGENET_TEMPLATES, openai, strict=True):
        assert fn("golden retriever") == format_prompts([text], "golden retriever")[0]
    # callables are accepted as they are
    assert format_prompts([lambda c: f"art of {c}", "a {} {{x}}"], "dog") == ["art of dog", "a dog {{x}}"]


def test_index_named_folders(tmp_path):
    _tiny(tmp_path / "r" / "0" / "a.jpg")
    _tiny(tmp_path / "r" / "151" / "b.png")
    ds = read_imagefolder(tmp_path / "r", classnames="imagenet", templates="simple")
    assert ds.meta["label_mapping"] == "index"
    assert ds.table["label"].tolist() == [0, 151]
    assert len(ds.templates) == 7


def test_name_folders_and_positional_mapping(tmp_path):
    _tiny(tmp_path / "r" / "Great_White_Shark" / "a.jpg")
    _tiny(tmp_path / "r" / "goldfish" / "b.jpg")
    ds = read_imagefolder(tmp_path / "r", classnames=["tench", "goldfish", "great white shark"])
    assert ds.meta["label_mapping"] == "name"
    assert ds.table["label"].tolist() == [2, 1]
    # classnames.txt + templates.txt in the root; folder names that are not names -> position
    _tiny(tmp_path / "s" / "c1" / "a.jpg")
    _tiny(tmp_path / "s" / "c2" / "b.jpg")
    (tmp_path / "s" / "classnames.txt").write_bytes("\ufeffcat\r\ndog\r\n".encode())
    (tmp_path / "s" / "templates.txt").write_text("# comment\na sketch of a {}.\n")
    ds = read_imagefolder(tmp_path / "s")
    assert ds.classnames == ["cat", "dog"]
    assert ds.templates == ["a sketch of a {}."]
    assert ds.meta["label_mapping"] == "position"
    assert ds.table["label"].tolist() == [0, 1]


def test_subset_of_wnid_folders_keeps_1000_classes(tmp_path):
    root = tmp_path / "imagenet-r"
    for wnid in ("n02085620", "n01443537"):
        shutil.copytree(SAMPLE / wnid, root / wnid)
    ds = read_imagefolder(root, classnames="imagenet")
    assert len(ds.classnames) == 1000
    assert ds.present_labels == [1, 151]


def test_wnids_option_for_a_custom_label_space(tmp_path):
    _tiny(tmp_path / "r" / "n2" / "a.jpg")
    (tmp_path / "wnids.txt").write_text("n1\nn2\nn3\n")
    ds = read_imagefolder(tmp_path / "r", classnames=["one", "two", "three"], wnids=tmp_path / "wnids.txt")
    assert ds.meta["label_mapping"] == "wnid"
    assert ds.table["label"].tolist() == [1]


def test_unmappable_folders_raise_naming_them(tmp_path):
    _tiny(tmp_path / "r" / "zebra_crossing" / "a.jpg")
    with pytest.raises(DataFormatError, match="zebra_crossing"):
        read_imagefolder(tmp_path / "r", classnames=["cat", "dog"])


def test_non_image_files_are_counted_and_nested_images_found(tmp_path):
    root = copy_sample("imagenet_sample", tmp_path)
    (root / "n01440764" / "notes.txt").write_text("hello")
    _tiny(root / "n01440764" / "deeper" / "x.webp")
    ds = read_imagefolder(root, classnames="imagenet")
    assert len(ds) == 7
    assert ds.exclusions["reason"].tolist() == ["not an image file: n01440764/notes.txt"]
    assert ds.exclusions["category"].tolist() == ["not an image file"]
    assert ds.exclusions["source"].iloc[0].endswith("notes.txt")


def test_corrupt_image_raises_at_load_time_naming_the_file(tmp_path):
    root = copy_sample("imagenet_sample", tmp_path)
    bad = root / "n01443537" / "ILSVRC2012_val_00000236.JPEG"
    corrupt(bad)
    ds = read_imagefolder(root)  # reading the table does not open images
    i = ds.table.index[ds.table["path"] == str(bad)][0]
    with pytest.raises(DataFormatError, match="ILSVRC2012_val_00000236.JPEG"):
        ds.load_image(i)


def test_missing_root_names_the_layout(tmp_path):
    with pytest.raises(DatasetUnavailable, match="class folder"):
        read_imagefolder(tmp_path / "nope")


def test_bad_templates_are_rejected(tmp_path):
    with pytest.raises(DataFormatError, match="placeholder|'\\{\\}'"):
        read_imagefolder(SAMPLE, templates=["a photo of a dog"])
    with pytest.raises(DataFormatError, match="Expected templates"):
        read_imagefolder(SAMPLE, templates="nonexistent-keyword")


def test_ood_folder_is_recursive():
    ds = read_ood_folder(FIXTURES / "ood_sample", name="ood")
    assert ds.table["relpath"].tolist() == ["textures/dotted_0001.jpg", "textures/striped/striped_0002.png"]
    assert ds.load_image(1).size == (16, 16)


def test_fingerprint_is_stable_and_tracks_files(tmp_path):
    root = copy_sample("imagenet_sample", tmp_path)
    a = read_imagefolder(root, name="x").fingerprint()
    assert a == read_imagefolder(root, name="x").fingerprint()
    assert a != read_imagefolder(root, name="y").fingerprint()
    f = root / "n01440764" / "ILSVRC2012_val_00000293.JPEG"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert a != read_imagefolder(root, name="x").fingerprint()


def test_summary_mentions_name_and_count():
    text = read_imagefolder(SAMPLE, name="inet").summary()
    assert "inet" in text and "6 samples" in text
