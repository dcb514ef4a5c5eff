"""CounterAnimal reader: ``<index> <name>/{common,counter}-<background>/`` folders, as the release."""

from __future__ import annotations

import pytest
from PIL import Image

from qclip.data import read_counteranimal
from qclip.data.config import DataConfig
from qclip.errors import DataFormatError, DatasetUnavailable


def _img(path, color=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 5), color).save(path)


def _sample(root):
    # two ImageNet classes: 2 great white shark, 80 black grouse (open_clip's names)
    _img(root / "2 great white shark" / "common-water" / "a.jpg")
    _img(root / "2 great white shark" / "common-water" / "b.JPEG")
    _img(root / "2 great white shark" / "counter-sand" / "c.jpg")
    _img(root / "80 black grouse" / "common_grass" / "nested" / "d.png")
    _img(root / "80 black grouse" / "Counter-snow" / "e.jpg")
    _img(root / "80 black grouse" / "counter-snow" / "f.jpg")
    return root


def test_reads_both_splits_with_imagenet_labels(tmp_path):
    ds = read_counteranimal(_sample(tmp_path / "LAION-final"))
    t = ds.table
    assert len(ds) == 6 and len(ds.classnames) == 1000 and ds.meta["label_mapping"] == "imagenet-index"
    assert ds.classnames[2] == "great white shark" and ds.classnames[80] == "black grouse"
    assert sorted(t.label.unique()) == [2, 80]
    assert dict(t.groupby("split").size()) == {"common": 3, "counter": 3}
    assert set(t[t.label == 80].background) == {"grass", "snow"}
    assert ds.meta["common"] == 3 and ds.meta["counter"] == 3 and ds.exclusions.empty
    assert len(ds.templates) == 80  # OpenAI's ImageNet templates for the ImageNet label space
    common = ds.split_set("common")
    assert len(common) == 3 and set(common.table.split) == {"common"} and common.name == "counteranimal/common"
    assert common.load_image(0).size == (6, 5)


def test_one_split_and_the_folders_label_space(tmp_path):
    root = _sample(tmp_path / "r")
    ds = read_counteranimal(root, split="counter", classnames="folders")
    assert ds.classnames == ["great white shark", "black grouse"] and ds.meta["split_filtered"] == 3
    assert sorted(ds.table.label) == [0, 1, 1] and set(ds.table.split) == {"counter"}
    assert ds.templates == ["a photo of a {}."]
    with pytest.raises(KeyError, match="no 'common' rows"):
        ds.split_set("common")


def test_other_folders_and_files_are_counted(tmp_path):
    root = _sample(tmp_path / "r")
    _img(root / "2 great white shark" / "misc" / "x.jpg")
    (root / "2 great white shark" / "notes.txt").write_text("x")
    (root / "2 great white shark" / "common-water" / "readme.md").write_text("x")
    with pytest.warns(UserWarning, match="3 record"):
        ds = read_counteranimal(root)
    assert len(ds) == 6
    assert sorted(ds.exclusions.category) == ["not a common-/counter- folder", "not an image file",
                                              "not in a common-/counter- folder"]


@pytest.mark.parametrize("folder, match", [
    ("shark", r"class folder 'shark' does not start with its class index"),
    ("2 tiger shark", "class index 2 is used by two folders"),
    ("1000 unicorn", r"index >= 1000 \(ImageNet-1k\); use classnames = 'folders'"),
])
def test_malformed_class_folders_are_errors_naming_them(tmp_path, folder, match):
    root = _sample(tmp_path / "r")
    _img(root / folder / "common-x" / "z.jpg")
    with pytest.raises(DataFormatError, match=match):
        read_counteranimal(root)


def test_bad_options_and_missing_layout(tmp_path):
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        read_counteranimal(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetUnavailable, match="no class folder named"):
        read_counteranimal(tmp_path / "empty")
    root = _sample(tmp_path / "r")
    with pytest.raises(DataFormatError, match="split must be"):
        read_counteranimal(root, split="normal")
    with pytest.raises(DataFormatError, match="classnames must be"):
        read_counteranimal(root, classnames="cifar")


def test_a_split_folder_linked_outside_the_root_is_excluded(tmp_path):
    root = _sample(tmp_path / "r")
    _img(tmp_path / "outside" / "p.jpg")
    (root / "80 black grouse" / "counter-road").symlink_to(tmp_path / "outside")
    with pytest.warns(UserWarning, match="path outside root"):
        ds = read_counteranimal(root)
    assert len(ds) == 6 and not any("outside" in p for p in ds.table.path)
    with pytest.raises(DataFormatError, match="outside"):
        read_counteranimal(root, strict=True)


def test_configured_as_a_dataset_kind(tmp_path):
    root = _sample(tmp_path / "r")
    cfg = tmp_path / "qclip.toml"
    cfg.write_text(f'[datasets.ca]\nkind = "counteranimal"\nroot = "{root}"\nclassnames = "folders"\nsplit = "common"\n')
    ds = DataConfig.load(cfg).get("ca").load()
    assert len(ds) == 3 and ds.classnames == ["great white shark", "black grouse"]
