"""Hostile inputs for every reader: paths that leave the root (absolute, ``..``, backslashes, symlinks),
0-byte, truncated and decompression-bomb images, duplicate ids, wrong separators, BOM/CRLF, unknown
categories and missing columns.

Every test runs with a sentinel folder beside the dataset root (valid images that would decode fine) and
the file-system entry points watched (:mod:`._sentinel`): a test fails if any reader opens, stats or lists
anything in it.
"""

from __future__ import annotations

import json
import os
import warnings
from types import SimpleNamespace

import pytest
from PIL import Image

from qclip.data import (
    read_coco_captions,
    read_facet,
    read_fairface,
    read_imagefolder,
    read_ood_folder,
    read_spurious,
)
from qclip.data.base import OUTSIDE_ROOT, DataExclusionWarning
from qclip.errors import DataFormatError
from tests.data._helpers import copy_sample, edit_csv
from tests.data._sentinel import SENTINEL, bomb_png, empty, make_outside, truncate, watch


@pytest.fixture
def w(tmp_path, monkeypatch):
    outside = make_outside(tmp_path)
    touched = watch(monkeypatch, outside)
    yield SimpleNamespace(tmp=tmp_path, outside=outside, touched=touched)
    assert touched == [], f"a reader touched the sentinel outside its root: {touched}"


def test_the_watch_sees_a_read_of_the_sentinel(w):
    """The guard is real: opening the sentinel directly, through PIL or through a symlink is recorded."""
    link = w.tmp / "link.jpg"
    link.symlink_to(w.outside / f"{SENTINEL}.jpg")
    with open(link, "rb"):
        pass
    Image.open(w.outside / f"{SENTINEL}.png").close()
    os.path.isfile(w.outside / "deeper" / f"{SENTINEL}.jpg")
    assert [c for c, _ in w.touched] == ["open", "PIL.Image.open", "open", "stat"]
    w.touched.clear()
    os.lstat(link)  # reading the link itself (not what it points to) is no touch
    assert w.touched == []


# ----- paths that leave the root, in each annotation format ----------------------------------------------
def _hostile_value(w, how: str, root, inner: str, link_dir) -> str:
    """The file-name value of ``how`` for a reader whose names resolve against ``root/inner``."""
    sentinel = w.outside / f"{SENTINEL}.jpg"
    up = "../" * (1 + inner.count("/") + bool(inner))
    return {
        "absolute": str(sentinel),
        "dotdot": f"{up}outside/{SENTINEL}.jpg",
        "backslash": f"{up}outside/{SENTINEL}.jpg".replace("/", "\\"),
        "deep": f"x/../{up}outside/{SENTINEL}.jpg",
        "symlink": _link(link_dir / "evil.jpg", sentinel, root, inner),
        "relative-symlink": _link(link_dir / "evil2.jpg", os.path.relpath(sentinel, link_dir), root, inner),
    }[how]


def _link(link, target, root, inner):
    link.symlink_to(target)
    return os.path.relpath(link, root / inner) if inner else os.path.relpath(link, root)


HOWS = ["absolute", "dotdot", "backslash", "deep", "symlink", "relative-symlink"]


def _check_excluded(ds, w, row: int, value: str, source: str):
    ex = ds.exclusions[ds.exclusions["category"] == OUTSIDE_ROOT]
    assert ex["row"].tolist() == [row], ds.exclusions
    assert ex["source"].iloc[0].endswith(source)
    assert repr(value) in ex["reason"].iloc[0] or value in ex["reason"].iloc[0]
    assert all(SENTINEL not in p for p in ds.table["path"])


@pytest.mark.parametrize("how", HOWS)
def test_fairface_file_outside_the_root(w, how):
    root = copy_sample("fairface_sample", w.tmp)
    value = _hostile_value(w, how, root, "", root / "val")

    def fn(df):
        df.loc[2, "file"] = value
        return df

    edit_csv(root / "fairface_label_val.csv", fn)
    with pytest.warns(DataExclusionWarning, match="1 path outside root"):
        ds = read_fairface(root)
    assert len(ds) == 7
    _check_excluded(ds, w, 2, value, "fairface_label_val.csv")
    with pytest.raises(DataFormatError, match=r"fairface_label_val.csv: row 2 \(line 4\): path outside root"):
        read_fairface(root, strict=True)


@pytest.mark.parametrize("how", HOWS)
def test_spurious_image_outside_the_root(w, how):
    root = copy_sample("waterbirds_sample", w.tmp)
    value = _hostile_value(w, how, root, "", root / "017.Cardinal")

    def fn(df):
        df.loc[0, "img_filename"] = value
        return df

    edit_csv(root / "metadata.csv", fn)
    with pytest.warns(DataExclusionWarning):
        ds = read_spurious(root)
    assert len(ds) == 3
    _check_excluded(ds, w, 0, value, "metadata.csv")
    with pytest.raises(DataFormatError, match=r"metadata.csv: row 0 \(line 2\): path outside root"):
        read_spurious(root, strict=True)


@pytest.mark.parametrize("how", HOWS)
def test_facet_filename_outside_the_root(w, how):
    root = copy_sample("facet_sample", w.tmp)
    value = _hostile_value(w, how, root, "imgs_1", root / "imgs_1")
    csv = root / "annotations" / "annotations.csv"

    def fn(df):
        df.loc[0, "filename"] = value
        return df

    edit_csv(csv, fn)
    with pytest.raises(DataFormatError, match=r"annotations.csv: row 0 \(line 2\): path outside root") as info:
        read_facet(root)  # FACET is strict by default
    assert SENTINEL in str(info.value)
    with pytest.warns(DataExclusionWarning):
        ds = read_facet(root, strict=False)
    assert len(ds) == 8
    _check_excluded(ds, w, 0, value, "annotations.csv")


def test_facet_image_folder_linked_outside_is_not_searched(w):
    root = copy_sample("facet_sample", w.tmp)
    (root / "imgs_4").symlink_to(w.outside)

    def fn(df):
        df.loc[0, "filename"] = f"{SENTINEL}.jpg"
        return df

    edit_csv(root / "annotations" / "annotations.csv", fn)
    with pytest.raises(DataFormatError, match="imgs_4.*path outside root"):
        read_facet(root)
    ds = read_facet(root, strict=False)
    assert len(ds) == 8
    assert ds.exclusions[["row", "category"]].values.tolist() == [[-1, OUTSIDE_ROOT],
                                                                  [0, "image file not found in imgs_*/"]]
    assert ds.exclusions["source"][0].endswith("imgs_4") and str(w.outside) in ds.exclusions["reason"][0]


def _coco_edit(root, fn):
    path = root / "annotations" / "captions_karpathy_test.json"
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


@pytest.mark.parametrize("how", HOWS)
def test_coco_file_name_outside_the_root(w, how):
    root = copy_sample("coco_sample", w.tmp)
    value = _hostile_value(w, how, root, "", root / "val2014")
    if how.endswith("symlink"):
        value = os.path.basename(value)  # a bare name: resolved under val2014/, where the link is

    def fn(doc):
        doc["images"][1]["file_name"] = value
        return doc

    _coco_edit(root, fn)
    with pytest.warns(DataExclusionWarning, match=r"\(5 image excluded; 1 path outside root\); e\.g\. path outside root"):
        ds = read_coco_captions(root)
    assert ds.table["image_id"].tolist() == [42, 74] and len(ds.captions) == 10
    _check_excluded(ds, w, 1, value, "captions_karpathy_test.json")
    with pytest.raises(DataFormatError, match=r"captions_karpathy_test.json: images\[1\]: path outside root"):
        read_coco_captions(root, strict=True)


@pytest.mark.parametrize("schema", ["lavis", "karpathy"])
def test_coco_other_schemas_stay_inside_too(w, schema):
    root = copy_sample("coco_sample", w.tmp)
    doc = json.loads((root / "annotations" / "captions_karpathy_test.json").read_text())
    caps = {im["id"]: [a["caption"] for a in doc["annotations"] if a["image_id"] == im["id"]] for im in doc["images"]}
    files = [f"val2014/{im['file_name']}" for im in doc["images"]]
    files[0] = f"../outside/{SENTINEL}.jpg"
    if schema == "lavis":
        name = "annotations/coco_karpathy_test.json"
        data = [{"image": f, "caption": caps[im["id"]]} for f, im in zip(files, doc["images"], strict=True)]
    else:
        name = "dataset_coco.json"
        data = {"dataset": "coco", "images": [
            {"filepath": os.path.dirname(f), "filename": os.path.basename(f), "split": "test", "cocoid": im["id"],
             "sentences": [{"raw": c, "sentid": k} for k, c in enumerate(caps[im["id"]])]}
            for f, im in zip(files, doc["images"], strict=True)]}
    (root / "annotations" / "captions_karpathy_test.json").unlink()
    (root / name).write_text(json.dumps(data))
    with pytest.warns(DataExclusionWarning):
        ds = read_coco_captions(root)
    assert len(ds) == 2 and ds.meta["schema"] == schema
    assert ds.exclusions["category"].tolist() == [OUTSIDE_ROOT] + ["image excluded"] * 5


# ----- symlinks inside ImageNet-style and OOD folders ----------------------------------------------------
def test_imagefolder_symlinks(w):
    root = copy_sample("imagenet_sample", w.tmp)
    a, b, c = (root / n for n in ("n01440764", "n01443537", "n02085620"))
    (a / "evil.JPEG").symlink_to(w.outside / f"{SENTINEL}.jpg")  # a file leading out
    (b / "sub").symlink_to(w.outside / "deeper")  # a folder leading out
    (root / "n09999999").symlink_to(w.outside)  # a class folder leading out
    (c / "loop").symlink_to(".")  # a loop
    (a / "gone.JPEG").symlink_to("nowhere.JPEG")  # dangling
    (a / "inside.JPEG").symlink_to("../n01443537/ILSVRC2012_val_00000236.JPEG")  # stays inside: kept
    os.mkfifo(c / "pipe.JPEG")  # would hang a reader that opened it
    with pytest.warns(DataExclusionWarning, match="3 path outside root"):
        ds = read_imagefolder(root)
    assert ds.classnames == ["n01440764", "n01443537", "n02085620"]
    assert len(ds) == 7
    assert str(b / "ILSVRC2012_val_00000236.JPEG") in ds.table.loc[ds.table["folder"] == "n01440764", "path"].tolist()
    by = ds.exclusions.groupby("category")["source"].apply(lambda s: sorted(os.path.basename(x) for x in s)).to_dict()
    assert by == {OUTSIDE_ROOT: ["evil.JPEG", "n09999999", "sub"], "broken symlink": ["gone.JPEG"],
                  "folder read twice": ["loop"], "not a regular file": ["pipe.JPEG"]}
    assert all(str(w.outside) in r for r in ds.exclusions.loc[ds.exclusions["category"] == OUTSIDE_ROOT, "reason"])
    for i in range(len(ds)):  # every sample kept decodes, and none of them is the sentinel
        ds.load_image(i)
    with pytest.raises(DataFormatError, match="path outside root"):
        read_imagefolder(root, strict=True)


def test_ood_folder_symlink_out(w):
    root = copy_sample("ood_sample", w.tmp)
    (root / "textures" / "evil.jpg").symlink_to(w.outside / f"{SENTINEL}.jpg")
    with pytest.warns(DataExclusionWarning):
        ds = read_ood_folder(root)
    assert len(ds) == 2 and ds.exclusions["category"].tolist() == [OUTSIDE_ROOT]


def test_a_root_that_is_itself_a_symlink_is_fine(w):
    real = copy_sample("fairface_sample", w.tmp / "store")
    (w.tmp / "ff").symlink_to(real)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataExclusionWarning)
        ds = read_fairface(w.tmp / "ff")
    assert len(ds) == 8 and ds.table["path"][0] == str(real / "val" / "1.jpg")


# ----- images that do not decode ---------------------------------------------------------------------------
@pytest.mark.parametrize(("spoil", "cause"), [(empty, "empty file"), (truncate, "truncated"),
                                              (bomb_png, "decompression bomb")])
def test_decode_failures_name_dataset_row_and_file(w, spoil, cause):
    root = copy_sample("imagenet_sample", w.tmp)
    bad = root / "n01443537" / "ILSVRC2012_val_00000262.JPEG"
    spoil(bad)
    ds = read_imagefolder(root, name="inet")  # tables do not decode
    i = ds.table.index[ds.table["path"] == str(bad)][0]
    with pytest.raises(DataFormatError, match=cause) as info:
        ds.load_image(i)
    msg = str(info.value)
    assert "'inet'" in msg and f"row {i}" in msg and str(bad) in msg and "\n" not in msg


@pytest.mark.parametrize("reader", ["coco", "fairface", "spurious"])
def test_decode_failures_in_every_kind(w, reader):
    sample, read, rel = {
        "coco": ("coco_sample", read_coco_captions, "val2014/COCO_val2014_000000000042.jpg"),
        "fairface": ("fairface_sample", read_fairface, "val/1.jpg"),
        "spurious": ("waterbirds_sample", read_spurious,
                     "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"),
    }[reader]
    root = copy_sample(sample, w.tmp)
    bomb_png(root / rel)
    ds = read(root)
    with pytest.raises(DataFormatError, match=rf"row 0: image .*{os.path.basename(rel)}: decompression bomb"):
        ds.load_image(0)


def test_facet_bomb_and_empty_images_where_the_table_reads_headers(w):
    root = copy_sample("facet_sample", w.tmp)
    bomb_png(root / "imgs_2" / "sa_2001.jpg")  # a PNG with a .jpg name: PIL goes by content
    empty(root / "imgs_1" / "sa_1002.jpg")
    with pytest.raises(DataFormatError, match=r"row \d \(line \d\): unreadable image: 'sa_1002.jpg': empty file"):
        read_facet(root)
    with pytest.warns(DataExclusionWarning, match="unreadable image"):
        ds = read_facet(root, strict=False)
    ex = ds.exclusions
    assert set(ex["category"]) == {"unreadable image"}
    bombs = ex[ex["reason"].str.contains("sa_2001.jpg")]
    assert len(bombs) and all("decompression bomb" in r and "400,000,000 pixels" in r for r in bombs["reason"])
    assert len(ds) + len(ex) == 9


def test_truncated_facet_image_fails_when_decoded(w):
    root = copy_sample("facet_sample", w.tmp)
    truncate(root / "imgs_1" / "sa_1001.jpg")
    ds = read_facet(root)  # the header survives: boxes are clipped, the pixels are read later
    with pytest.raises(DataFormatError, match=r"'facet', row 0: .*sa_1001.jpg: truncated"):
        ds.load_image(0)


def test_pixel_limit_is_an_option(w):
    root = copy_sample("imagenet_sample", w.tmp)
    big = root / "n01440764" / "big.png"
    Image.new("RGB", (1200, 1000), (1, 2, 3)).save(big)
    ds = read_imagefolder(root)
    i = ds.table.index[ds.table["path"] == str(big)][0]
    assert ds.load_image(i).size == (1200, 1000)  # PIL's default limit is 89 megapixels
    small = read_imagefolder(root, max_image_pixels=1_000_000)
    with pytest.raises(DataFormatError, match="1,200,000 pixels, over the limit of 1,000,000"):
        small.load_image(i)
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # PIL's own global is left as it was
    unlimited = read_imagefolder(root, max_image_pixels=0)
    assert unlimited.max_image_pixels is None and unlimited.load_image(i).size == (1200, 1000)
    with pytest.raises(ValueError, match="max_image_pixels"):
        read_imagefolder(root, max_image_pixels=-5)


# ----- duplicates, separators, BOM/CRLF, unknown categories, missing columns ---------------------------
def test_duplicate_files_name_the_first_row(w):
    root = copy_sample("fairface_sample", w.tmp)

    def dup(df):
        df.loc[5, "file"] = "val/2.jpg"
        return df

    edit_csv(root / "fairface_label_val.csv", dup)
    ds = read_fairface(root)
    assert ds.exclusions[["row", "reason"]].values.tolist() == [[5, "duplicate file: 'val/2.jpg' (first at row 1)"]]
    root = copy_sample("waterbirds_sample", w.tmp / "b")

    def dup2(df):
        df.loc[1, "img_filename"] = df.loc[0, "img_filename"]
        return df

    edit_csv(root / "metadata.csv", dup2)
    ds = read_spurious(root)
    assert ds.exclusions["row"].tolist() == [1] and ds.exclusions["category"].tolist() == ["duplicate image"]
    assert "(first at row 0)" in ds.exclusions["reason"][0]


def test_windows_separators_are_separators(w):
    root = copy_sample("fairface_sample", w.tmp)

    def back(df):
        df["file"] = df["file"].str.replace("/", "\\")
        return df

    edit_csv(root / "fairface_label_val.csv", back)
    ds = read_fairface(root)
    assert len(ds) == 8 and ds.exclusions.empty and ds.table["path"][0] == str(root / "val" / "1.jpg")
    root = copy_sample("coco_sample", w.tmp / "c")

    def fn(doc):
        doc["images"][0]["file_name"] = "val2014\\COCO_val2014_000000000042.jpg"
        return doc

    _coco_edit(root, fn)
    assert len(read_coco_captions(root)) == 3


@pytest.mark.parametrize(("sep", "word"), [(";", "semicolons"), ("\t", "tabs")])
def test_wrong_csv_separator_says_so(w, sep, word):
    root = copy_sample("fairface_sample", w.tmp)
    path = root / "fairface_label_val.csv"
    path.write_text(path.read_text().replace(",", sep))
    with pytest.raises(DataFormatError, match=f"fairface_label_val.csv: missing required column 'file'.*{word}"):
        read_fairface(root)


def test_bom_and_crlf_do_not_leak_into_values(w):
    root = copy_sample("fairface_sample", w.tmp)

    def fn(df):
        df.loc[3, "file"] = "../outside/x.jpg"
        df.loc[4, "file"] = "val/missing.jpg"
        return df

    edit_csv(root / "fairface_label_val.csv", fn, line_end="\r\n", bom=True)
    ds = read_fairface(root)
    assert ds.exclusions["reason"].tolist() == ["path outside root: '../outside/x.jpg' climbs above the root with '..'",
                                                "image file missing: 'val/missing.jpg'"]
    assert not any("\r" in r for r in ds.exclusions["reason"])


def test_unknown_category_reason_names_the_value(w):
    root = copy_sample("facet_sample", w.tmp)

    def fn(df):
        df.loc[2, "class1"] = "Astronot"
        return df

    edit_csv(root / "annotations" / "annotations.csv", fn)
    with pytest.warns(DataExclusionWarning, match="1 unknown class1"):
        ds = read_facet(root, strict=False)
    assert ds.exclusions["category"].tolist() == ["unknown class1"]
    assert ds.exclusions["reason"][0].startswith("unknown class1: 'Astronot' is not one of the 52 classes.")


@pytest.mark.parametrize(("sample", "read", "file", "column"), [
    ("facet_sample", read_facet, "annotations/annotations.csv", "filename"),
    ("fairface_sample", read_fairface, "fairface_label_val.csv", "file"),
    ("waterbirds_sample", read_spurious, "metadata.csv", "y"),
])
def test_missing_columns_name_file_and_column(w, sample, read, file, column):
    root = copy_sample(sample, w.tmp)
    edit_csv(root / file, lambda df: df.drop(columns=[column]))
    with pytest.raises(DataFormatError, match=f"{os.path.basename(file)}: missing required column '{column}'"):
        read(root)


# ----- the warning: once per load, counts per reason ----------------------------------------------------------
def test_one_warning_per_load_with_counts_per_reason(w):
    root = copy_sample("fairface_sample", w.tmp)

    def fn(df):
        df.loc[1, "file"] = "/etc/passwd"
        df.loc[2, "file"] = "val/nope.jpg"
        df.loc[3, "file"] = "val/nope2.jpg"
        return df

    edit_csv(root / "fairface_label_val.csv", fn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_fairface(root, name="ff")
    mine = [c for c in caught if issubclass(c.category, DataExclusionWarning)]
    assert len(mine) == 1
    text = str(mine[0].message)
    assert text.startswith("dataset 'ff': 3 record(s) excluded, 5 kept (2 image file missing; 1 path outside root)")
    assert "'/etc/passwd'" in text and "\n" not in text
    assert mine[0].filename == __file__  # points at the caller of the reader
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataExclusionWarning)
        read_fairface(copy_sample("fairface_sample", w.tmp / "clean"))  # nothing excluded: no warning
