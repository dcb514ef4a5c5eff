"""qclip.data.spurious on the checked-in Waterbirds-style sample."""

from __future__ import annotations

import pytest

from qclip.data import SpuriousSet, read_spurious
from qclip.errors import DataFormatError, DatasetUnavailable
from tests.data._helpers import FIXTURES, copy_sample, edit_csv

SAMPLE = FIXTURES / "waterbirds_sample"


def test_sample_test_split_has_all_four_groups():
    ds = read_spurious(SAMPLE)
    assert isinstance(ds, SpuriousSet)
    t = ds.table
    assert len(ds) == 4 and set(t["split"]) == {2}
    assert sorted(t["group"]) == [0, 1, 2, 3]
    for _, row in t.iterrows():
        assert row["group"] == row["label"] * 2 + row["place"]
    assert ds.groups == {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}
    assert ds.classnames == ["landbird", "waterbird"]
    assert ds.templates == ["a photo of a {}."]
    assert ds.meta["split_filtered"] == 2
    assert ds.load_image(0).mode == "RGB"


@pytest.mark.parametrize(("split", "n"), [(None, 6), ("all", 6), ("train", 1), ("val", 1), (2, 4), ("test", 4)])
def test_split_selection(split, n):
    assert len(read_spurious(SAMPLE, split=split)) == n


def test_alias_columns_string_splits_and_string_places(tmp_path):
    root = copy_sample("waterbirds_sample", tmp_path)

    def fn(df):
        df = df.rename(columns={"img_filename": "image", "y": "label", "place": "group"})
        df["split"] = df["split"].map({"0": "train", "1": "val", "2": "test"})
        df["group"] = df["group"].map({"0": "land", "1": "water"})
        return df

    edit_csv(root / "metadata.csv", fn, line_end="\r\n", bom=True)
    ds = read_spurious(root, classnames=["land bird", "water bird"])
    assert len(ds) == 4 and ds.classnames == ["land bird", "water bird"]
    assert ds.groups == {0: (0, "land"), 1: (0, "water"), 2: (1, "land"), 3: (1, "water")}
    assert ds.table.set_index("image")["group"].to_dict()[
        "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"] == 3


def test_missing_image_is_excluded(tmp_path):
    root = copy_sample("waterbirds_sample", tmp_path)
    (root / "017.Cardinal" / "Cardinal_0001_17057.jpg").unlink()
    ds = read_spurious(root)
    assert len(ds) == 3
    assert ds.exclusions[["row", "reason"]].values.tolist() == [
        [2, "image file missing: '017.Cardinal/Cardinal_0001_17057.jpg'"]]


def test_errors_name_file_and_column(tmp_path):
    root = copy_sample("waterbirds_sample", tmp_path)
    edit_csv(root / "metadata.csv", lambda df: df.drop(columns=["place"]))
    with pytest.raises(DataFormatError, match="metadata.csv.*'place'"):
        read_spurious(root)
    root = copy_sample("waterbirds_sample", tmp_path / "b")

    def bad_label(df):
        df.loc[1, "y"] = "bird"
        return df

    edit_csv(root / "metadata.csv", bad_label)
    with pytest.raises(DataFormatError, match="row 1.*'y'.*'bird'"):
        read_spurious(root)
    with pytest.raises(DataFormatError, match="unknown split"):
        read_spurious(SAMPLE, split="holdout")
    with pytest.raises(DataFormatError, match="outside"):
        read_spurious(SAMPLE, classnames=["only one"])


def test_without_classnames_file_labels_name_the_classes(tmp_path):
    root = copy_sample("waterbirds_sample", tmp_path)
    (root / "classnames.txt").unlink()
    ds = read_spurious(root)
    assert ds.classnames == ["0", "1"] and ds.meta["classnames_source"] == "labels"


def test_missing_root(tmp_path):
    with pytest.raises(DatasetUnavailable, match="metadata.csv"):
        read_spurious(tmp_path / "nope")
