"""qclip.data.facet on the checked-in FACET sample and malformed variants of it."""

from __future__ import annotations

import json

import pytest

from qclip.data import FacetSet, facet_classes, read_facet, skin_tone_from_votes
from qclip.errors import DataFormatError, DatasetUnavailable
from tests.data._helpers import FIXTURES, copy_sample, corrupt, edit_csv

SAMPLE = FIXTURES / "facet_sample"


def _csv(root):
    return root / "annotations" / "annotations.csv"


def _set(column, person_id, value):
    def fn(df):
        df.loc[df["person_id"] == str(person_id), column] = value
        return df
    return fn


def test_shipped_class_list():
    classes = facet_classes()
    assert len(classes) == 52 == len(set(classes))
    assert classes == sorted(classes)
    for c in ("astronaut", "basketball_player", "computer_user", "lawman", "waiter"):
        assert c in classes


def test_sample_loads():
    ds = read_facet(SAMPLE)
    assert isinstance(ds, FacetSet)
    t = ds.table
    assert t["person_id"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert t["class1"].tolist() == ["doctor", "nurse", "guitarist", "basketball_player", "soldier", "teacher", "farmer",
                                   "doctor", "nurse"]
    assert t["class2"].tolist() == ["nurse", "", "singer", "", "", "", "laborer", "", ""]
    assert [ds.classnames[i] for i in t["label"]][3] == "basketball player"
    assert ds.class_keys[t["label"][3]] == "basketball_player"
    assert t["gender"].tolist() == ["masc", "fem", "fem", "masc", "non_binary", "na", "masc", "fem", "masc"]
    assert t["skin_tone"].tolist() == [3, 7, 0, 0, 5, 1, 10, 9, 2]  # 3rd: tie; 4th: na votes >= top
    assert t["skin_group"].tolist() == ["lighter", "darker", "", "", "", "lighter", "darker", "darker", "lighter"]
    assert t["age"].tolist() == ["middle", "young", "older", "middle", "na", "young", "older", "young", "middle"]
    # images spread over imgs_1..3
    assert {p.split("/")[-2] for p in t["path"]} == {"imgs_1", "imgs_2", "imgs_3"}
    assert len(ds.exclusions) == 0
    assert ds.meta["gender_ambiguous"] == 1 and ds.meta["skin_unknown"] == 2


def test_boxes_float_extra_keys_and_partial_clipping():
    ds = read_facet(SAMPLE)
    t = ds.table
    # float box {x: 15.5, y: 2.25, w: 10, h: 15, dummy: 0} -> floor/ceil
    assert ds.box(1) == (15, 2, 11, 16)
    # person 3: x 20..40, y 10..30 on a 32x24 image -> clipped to 20..32, 10..24
    assert ds.box(2) == (20, 10, 12, 14)
    assert ds.meta["box_clipped"] == 1
    assert ds.load_image(2).size == (12, 14)
    assert ds.load_image(0).size == (10, 12)
    assert list(t[["box_x", "box_y", "box_w", "box_h"]].dtypes) == ["int64"] * 4


def test_crlf_bom_and_extra_columns(tmp_path):
    root = copy_sample("facet_sample", tmp_path)
    assert b"\r\n" in _csv(root).read_bytes()

    def add(df):
        df["some_new_column"] = "x"
        return df[["some_new_column", *df.columns[:-1]]]  # column order does not matter

    edit_csv(_csv(root), add, line_end="\r\n", bom=True)
    ds = read_facet(root)
    assert len(ds) == 9 and ds.table["skin_tone"].tolist() == [3, 7, 0, 0, 5, 1, 10, 9, 2]


@pytest.mark.parametrize("column", ["class1", "bounding_box", "skin_tone_na", "gender_presentation_fem"])
def test_missing_column_names_file_and_column(tmp_path, column):
    root = copy_sample("facet_sample", tmp_path)
    edit_csv(_csv(root), lambda df: df.drop(columns=[column]))
    with pytest.raises(DataFormatError) as info:
        read_facet(root)
    assert "annotations.csv" in str(info.value) and repr(column) in str(info.value)


def test_unknown_class_is_an_error_or_an_exclusion(tmp_path):
    root = copy_sample("facet_sample", tmp_path)
    edit_csv(_csv(root), _set("class1", 5, "astronot"))
    with pytest.raises(DataFormatError, match="'astronot'") as info:
        read_facet(root)
    assert "annotations.csv" in str(info.value) and "row 4" in str(info.value)
    assert "astronaut" in str(info.value)  # suggestion
    ds = read_facet(root, strict=False)
    assert len(ds) == 8
    assert ds.exclusions["row"].tolist() == [4]
    assert "astronot" in ds.exclusions["reason"].iloc[0]


def test_custom_classnames_for_a_synthetic_world(tmp_path):
    root = copy_sample("facet_sample", tmp_path)
    keys = ["doctor", "nurse", "guitarist", "basketball_player", "soldier", "teacher", "farmer"]
    (tmp_path / "classes.txt").write_text("\n".join(reversed(keys)) + "\n")
    ds = read_facet(root, classnames=tmp_path / "classes.txt", templates=["a {} at work"])
    assert len(ds.classnames) == 7 and ds.table["label"].tolist() == [6, 5, 4, 3, 2, 1, 0, 6, 5]
    assert ds.templates == ["a {} at work"]
    with pytest.raises(DataFormatError, match="'soldier'"):
        read_facet(root, classnames=["doctor", "nurse", "guitarist", "basketball_player"])


def test_missing_image_is_excluded(tmp_path):
    root = copy_sample("facet_sample", tmp_path)
    (root / "imgs_3" / "sa_3001.jpg").unlink()
    ds = read_facet(root)
    assert len(ds) == 6
    assert ds.exclusions["row"].tolist() == [5, 6, 8]
    assert set(ds.exclusions["category"]) == {"image file not found in imgs_*/"}
    assert set(ds.exclusions["reason"]) == {"image file not found in imgs_*/: 'sa_3001.jpg'"}


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        ({"x": 100, "y": 100, "width": 5, "height": 5},
         "box outside image: x=100, y=100, width=5, height=5 on the 32x24 image 'sa_1001.jpg'"),
        ({"x": -20, "y": 2, "width": 10, "height": 5},
         "box outside image: x=-20, y=2, width=10, height=5 on the 32x24 image 'sa_1001.jpg'"),
        ({"x": 2, "y": 2, "width": 0, "height": 5}, "degenerate box: x=2, y=2, width=0, height=5"),
        ({"x": 2, "y": 2, "width": 5, "height": -1}, "degenerate box: x=2, y=2, width=5, height=-1"),
    ],
)
def test_bad_boxes_are_excluded(tmp_path, box, reason):
    root = copy_sample("facet_sample", tmp_path)
    edit_csv(_csv(root), _set("bounding_box", 1, json.dumps(box)))
    ds = read_facet(root)
    assert len(ds) == 8
    assert ds.exclusions[["row", "reason"]].values.tolist() == [[0, reason]]
    assert ds.exclusions["category"].tolist() == [reason.split(":")[0]]


def test_min_box_and_unparsable_box(tmp_path):
    ds = read_facet(SAMPLE, min_box=6)  # person 7 is 5x5
    assert ds.exclusions["category"].tolist() == ["box too small"]
    assert ds.exclusions["reason"][0].startswith("box too small: 5x5 px after clipping (x=")
    assert ds.exclusions["reason"][0].endswith("min_box 6")
    root = copy_sample("facet_sample", tmp_path)
    edit_csv(_csv(root), _set("bounding_box", 2, "not a box"))
    with pytest.raises(DataFormatError, match="row 1.*bounding_box"):
        read_facet(root)
    assert read_facet(root, strict=False).exclusions["row"].tolist() == [1]
    # single-quoted dicts are accepted
    edit_csv(_csv(root), _set("bounding_box", 2, "{'x': 1, 'y': 1, 'width': 4, 'height': 4}"))
    assert read_facet(root).box(1) == (1, 1, 4, 4)


def test_bad_vote_value_names_column_and_value(tmp_path):
    root = copy_sample("facet_sample", tmp_path)
    edit_csv(_csv(root), _set("skin_tone_4", 3, "many"))
    with pytest.raises(DataFormatError, match="'skin_tone_4'.*'many'"):
        read_facet(root)


def test_gender_and_age_need_exactly_one(tmp_path):
    root = copy_sample("facet_sample", tmp_path)
    edit_csv(_csv(root), lambda df: _set("age_presentation_young", 1, "1")(_set("gender_presentation_fem", 1, "1")(df)))
    ds = read_facet(root)
    assert ds.table["gender"][0] == "na" and ds.table["age"][0] == "na"
    assert ds.meta["gender_ambiguous"] == 2 and ds.meta["age_ambiguous"] == 1


def test_duplicate_person_is_excluded(tmp_path):
    root = copy_sample("facet_sample", tmp_path)
    edit_csv(_csv(root), _set("person_id", 2, "1"))
    ds = read_facet(root)
    assert ds.exclusions[["row", "reason"]].values.tolist() == [[1, "duplicate person_id: '1' (first at row 0)"]]


def test_corrupt_image_fails_where_its_header_is_read(tmp_path):
    root = copy_sample("facet_sample", tmp_path)
    corrupt(root / "imgs_2" / "sa_2002.jpg")
    with pytest.raises(DataFormatError, match=r"annotations.csv: row 4 \(line 6\): unreadable image: 'sa_2002.jpg'"):
        read_facet(root)
    ds = read_facet(root, strict=False)
    assert len(ds) == 7 and ds.exclusions["row"].tolist() == [4, 7]
    assert set(ds.exclusions["category"]) == {"unreadable image"}
    assert "sa_2002.jpg" in ds.exclusions["reason"][0] and "cannot decode" in ds.exclusions["reason"][0]


def test_skin_rules_and_groups():
    v = [0] * 10
    assert skin_tone_from_votes(v, 0) == 0
    assert skin_tone_from_votes([0, 0, 2, 1, 0, 0, 0, 0, 0, 0], 1) == 3
    assert skin_tone_from_votes([0, 0, 2, 2, 0, 0, 0, 0, 0, 0], 0) == 0  # tie
    assert skin_tone_from_votes([0, 0, 2, 0, 0, 0, 0, 0, 0, 0], 2) == 0  # na >= top
    assert skin_tone_from_votes([1, 0, 1, 0, 0, 0, 0, 0, 0, 1], 5, "median") == 3
    assert skin_tone_from_votes([0, 1, 0, 0, 0, 0, 0, 0, 0, 1], 0, "median") == 2  # lower median
    assert skin_tone_from_votes(v, 3, lambda votes, na: 9) == 9
    with pytest.raises(ValueError, match="Expected skin_rule"):
        read_facet(SAMPLE, skin_rule="mode")
    ds = read_facet(SAMPLE, skin_rule="median", lighter=(1, 3), darker=[7, 8, 9, 10])
    assert ds.table["skin_tone"].tolist() == [3, 7, 2, 9, 5, 1, 10, 9, 2]
    assert ds.table["skin_group"].tolist() == ["lighter", "darker", "lighter", "darker", "", "lighter", "darker", "darker",
                                              "lighter"]


def test_missing_root_and_missing_annotations(tmp_path):
    with pytest.raises(DatasetUnavailable, match="imgs_1"):
        read_facet(tmp_path / "nope")
    root = copy_sample("facet_sample", tmp_path)
    _csv(root).unlink()
    with pytest.raises(DatasetUnavailable, match="annotations.csv"):
        read_facet(root)


def test_fingerprint_covers_boxes(tmp_path):
    root = copy_sample("facet_sample", tmp_path)
    a = read_facet(root).fingerprint()
    edit_csv(_csv(root), _set("bounding_box", 1, json.dumps({"x": 3, "y": 3, "width": 10, "height": 12})))
    assert read_facet(root).fingerprint() != a
