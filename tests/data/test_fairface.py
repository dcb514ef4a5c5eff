"""qclip.data.fairface and the shipped FairFace prompt list."""

from __future__ import annotations

import shutil

import pytest

from qclip.data import FairFaceSet, load_fairface_prompts, read_fairface
from qclip.errors import DataFormatError, DatasetUnavailable
from tests.data._helpers import FIXTURES, copy_sample, edit_csv

SAMPLE = FIXTURES / "fairface_sample"
LABELS = "fairface_label_val.csv"


def test_sample_loads():
    ds = read_fairface(SAMPLE)
    assert isinstance(ds, FairFaceSet)
    t = ds.table
    assert len(ds) == 8
    assert t["file"].tolist()[:2] == ["val/1.jpg", "val/2.jpg"]
    assert t["age_bin"].tolist() == ["older", "older", "younger", "middle", "middle", "younger", "middle", "older"]
    assert t.loc[t["age"] == "more than 70", "age_bin"].item() == "older"
    assert t["service_test"].dtype == bool and t["service_test"].sum() == 5
    assert set(t["race"]) == {"White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
                              "Middle Eastern"}
    assert len(ds.prompts) == 319 and "This is the face of a good person" in ds.prompts
    assert list(ds.prompt_table.columns) == ["template", "concept", "valence", "prompt"]
    assert ds.load_image(0).size == (16, 16)


def test_shipped_prompts_follow_berg_et_al():
    df = load_fairface_prompts()
    assert df["template"].nunique() == 11 and df["concept"].nunique() == 29
    assert "{}" in set(df["template"]) and "A photo of a {} person" not in set(df["template"])
    assert "This is a photo of a {} person" in set(df["template"])
    per_concept = df.drop_duplicates("concept").set_index("concept")["valence"]
    assert (per_concept == "favourable").sum() == 14 and (per_concept == "unfavourable").sum() == 15
    for good, bad in [("good", "evil"), ("noncriminal", "criminal"), ("smart", "dumb"),
                      ("trustworthy", "untrustworthy")]:
        assert per_concept[good] == "favourable" and per_concept[bad] == "unfavourable"
    assert df["prompt"].str.contains("{}", regex=False).sum() == 0


def test_custom_prompt_file_one_prompt_per_row(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_bytes(b"\xef\xbb\xbf# my prompts\r\ntemplate,concept,valence,extra\r\n"
                     b"A photo of a {} person,kind,favourable,x\r\nA {},evil,,y\r\n")
    ds = read_fairface(SAMPLE, prompts=path)
    assert ds.prompts == ["A photo of a kind person", "A evil"]
    assert ds.prompt_table["valence"].tolist() == ["favourable", ""]
    path.write_text("template,concept,valence\nA {},kind,nice\n")
    with pytest.raises(DataFormatError, match="'nice'"):
        load_fairface_prompts(path)
    path.write_text("template,valence\nA {},favourable\n")
    with pytest.raises(DataFormatError, match="'concept'"):
        load_fairface_prompts(path)


def test_root_is_a_padding_folder_with_the_csv_beside_it(tmp_path):
    top = tmp_path / "fairface"
    pad = top / "fairface-img-margin025-trainval"
    shutil.copytree(SAMPLE / "val", pad / "val")
    shutil.copy(SAMPLE / LABELS, top / LABELS)
    ds = read_fairface(pad)
    assert len(ds) == 8 and ds.meta["labels"] == str(top / LABELS)


@pytest.mark.parametrize(("column", "value"), [("race", "Asian"), ("age", "70+"), ("gender", "male"),
                                               ("service_test", "maybe")])
def test_unknown_value_names_file_row_column_value(tmp_path, column, value):
    root = copy_sample("fairface_sample", tmp_path)

    def fn(df):
        df.loc[2, column] = value
        return df

    edit_csv(root / LABELS, fn)
    with pytest.raises(DataFormatError) as info:
        read_fairface(root)
    msg = str(info.value)
    assert LABELS in msg and "row 2" in msg and repr(column) in msg and repr(value) in msg


def test_missing_column(tmp_path):
    root = copy_sample("fairface_sample", tmp_path)
    edit_csv(root / LABELS, lambda df: df.drop(columns=["race"]))
    with pytest.raises(DataFormatError, match=f"{LABELS}.*'race'"):
        read_fairface(root)


def test_service_test_is_optional_and_extra_columns_crlf_bom_tolerated(tmp_path):
    root = copy_sample("fairface_sample", tmp_path)

    def fn(df):
        df = df.drop(columns=["service_test"])
        df.insert(0, "notes", "n")
        return df

    edit_csv(root / LABELS, fn, line_end="\r\n", bom=True)
    ds = read_fairface(root)
    assert len(ds) == 8 and "service_test" not in ds.table.columns and "notes" not in ds.table.columns


def test_missing_image_is_excluded(tmp_path):
    root = copy_sample("fairface_sample", tmp_path)
    (root / "val" / "4.jpg").unlink()
    ds = read_fairface(root)
    assert len(ds) == 7
    assert ds.exclusions[["row", "reason"]].values.tolist() == [[3, "image file missing: 'val/4.jpg'"]]


def test_missing_root_or_labels(tmp_path):
    with pytest.raises(DatasetUnavailable, match=LABELS):
        read_fairface(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetUnavailable, match=LABELS):
        read_fairface(tmp_path / "empty")
