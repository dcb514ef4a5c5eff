"""qclip.data.coco on the checked-in COCO captions sample and malformed variants."""

from __future__ import annotations

import json

import pytest

from qclip.data import RetrievalSet, read_coco_captions
from qclip.data.coco import ANNOTATION_CANDIDATES
from qclip.errors import DataFormatError, DatasetUnavailable
from tests.data._helpers import FIXTURES, copy_sample

SAMPLE = FIXTURES / "coco_sample"
ANN = "annotations/captions_karpathy_test.json"


def _edit(root, fn):
    path = root / ANN
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(fn(doc)))


def test_sample_loads():
    ds = read_coco_captions(SAMPLE)
    assert isinstance(ds, RetrievalSet)
    assert ds.table["image_id"].tolist() == [42, 73, 74]
    assert ds.table["path"][0].endswith("val2014/COCO_val2014_000000000042.jpg")
    assert len(ds.captions) == 15
    assert ds.captions["image_index"].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert list(ds.captions.columns) == ["caption", "image_index", "image_id", "caption_id"]
    assert ds.captions["caption"][0] == "A cat sitting on a wooden bench."
    assert ds.meta["karpathy_filtered"] is True
    assert len(ds.exclusions) == 0
    assert ds.load_image(2).size == (16, 16)


def test_missing_image_file_is_excluded_with_its_captions(tmp_path):
    root = copy_sample("coco_sample", tmp_path)
    (root / "val2014" / "COCO_val2014_000000000073.jpg").unlink()
    ds = read_coco_captions(root)
    assert ds.table["image_id"].tolist() == [42, 74]
    assert ds.captions["image_index"].tolist() == [0] * 5 + [1] * 5
    reasons = ds.exclusions["category"].value_counts().to_dict()
    assert reasons == {"image file missing": 1, "image excluded": 5}
    assert ds.exclusions["row"].iloc[0] == 1  # index in `images`
    assert ds.exclusions["reason"].iloc[0] == "image file missing: 'COCO_val2014_000000000073.jpg'"
    assert "image_id 73" in ds.exclusions["reason"].iloc[1]


def test_unknown_image_id_and_empty_caption_are_excluded(tmp_path):
    root = copy_sample("coco_sample", tmp_path)

    def fn(doc):
        doc["annotations"].append({"image_id": 999, "id": 1, "caption": "orphan"})
        doc["annotations"].append({"image_id": 42, "id": 2, "caption": "   "})
        return doc

    _edit(root, fn)
    ds = read_coco_captions(root)
    assert len(ds.captions) == 15
    assert ds.exclusions[["row", "category"]].values.tolist() == [[15, "unknown image_id"], [16, "empty caption"]]
    assert ds.exclusions["reason"].tolist() == ["unknown image_id: 999 (caption 1)",
                                                "empty caption: caption 2 of image_id 42"]


def test_image_without_captions_is_excluded_and_indices_remapped(tmp_path):
    root = copy_sample("coco_sample", tmp_path)
    _edit(root, lambda doc: {**doc, "annotations": [a for a in doc["annotations"] if a["image_id"] != 42]})
    ds = read_coco_captions(root)
    assert ds.table["image_id"].tolist() == [73, 74]
    assert ds.captions["image_index"].tolist() == [0] * 5 + [1] * 5
    assert ds.exclusions[["row", "reason"]].values.tolist() == [
        [0, "no captions: image_id 42 ('COCO_val2014_000000000042.jpg')"]]


def test_duplicate_image_id_is_excluded(tmp_path):
    root = copy_sample("coco_sample", tmp_path)
    _edit(root, lambda doc: {**doc, "images": doc["images"] + [doc["images"][0]]})
    ds = read_coco_captions(root)
    assert len(ds) == 3 and ds.exclusions["reason"].tolist() == ["duplicate image id: 42 (first at images[0])"]
    assert ds.exclusions["row"].tolist() == [3]


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda doc: {"images": doc["images"]}, "'annotations'"),
        (lambda doc: {**doc, "images": [{"id": 1}]}, r"images\[0\] has no 'file_name'"),
        (lambda doc: [1, 2], "COCO captions schema"),
        (lambda doc: {"info": {}}, "LAVIS/BLIP list"),
        (lambda doc: [{"image": "val2014/x.jpg"}], r"\[0\] has no 'caption'"),
    ],
)
def test_schema_errors_name_the_file(tmp_path, fn, match):
    root = copy_sample("coco_sample", tmp_path)
    _edit(root, fn)
    with pytest.raises(DataFormatError, match=match) as info:
        read_coco_captions(root)
    assert "captions_karpathy_test.json" in str(info.value)


def test_bom_and_explicit_annotation_path(tmp_path):
    root = copy_sample("coco_sample", tmp_path)
    text = (root / ANN).read_text()
    (root / ANN).unlink()
    (root / "my_captions.json").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    ds = read_coco_captions(root, annotation="my_captions.json")
    assert len(ds.captions) == 15 and ds.meta["karpathy_filtered"] is False


def test_falls_back_to_val2014_captions(tmp_path):
    root = copy_sample("coco_sample", tmp_path)
    (root / ANN).rename(root / "annotations" / "captions_val2014.json")
    ds = read_coco_captions(root)
    assert ds.meta["karpathy_filtered"] is False and len(ds) == 3


def test_missing_root_or_annotation(tmp_path):
    with pytest.raises(DatasetUnavailable, match="val2014"):
        read_coco_captions(tmp_path / "nope")
    root = copy_sample("coco_sample", tmp_path)
    (root / ANN).unlink()
    with pytest.raises(DatasetUnavailable, match="captions_karpathy_test.json") as info:
        read_coco_captions(root)
    assert f"no annotation file under {root}; tried " in str(info.value)
    for name in ANNOTATION_CANDIDATES:  # the reason lists every name tried
        assert name in str(info.value)
    with pytest.raises(DatasetUnavailable, match="mine.json \\(option annotation\\)"):
        read_coco_captions(root, annotation="mine.json")


def _as_lavis(doc):
    return [{"image": f"val2014/{im['file_name']}",
             "caption": [a["caption"] for a in doc["annotations"] if a["image_id"] == im["id"]]}
            for im in doc["images"]]


def _as_karpathy(doc, extra_train=True):
    images = [{"filepath": "val2014", "filename": im["file_name"], "split": "test", "cocoid": im["id"], "imgid": k,
               "sentences": [{"raw": a["caption"], "sentid": a["id"], "tokens": a["caption"].split()}
                             for a in doc["annotations"] if a["image_id"] == im["id"]]}
              for k, im in enumerate(doc["images"])]
    if extra_train:  # Karpathy's file holds every split: only the test images are read
        images.insert(1, {**images[0], "split": "train", "cocoid": 7, "filename": "COCO_train2014_x.jpg"})
    return {"dataset": "coco", "images": images}


@pytest.mark.parametrize(
    ("name", "convert", "schema", "karpathy"),
    [
        ("coco_test_karpathy.json", None, "coco", True),  # clip_benchmark, beside val2014/
        ("annotations/coco_test_karpathy.json", None, "coco", True),
        ("captions_karpathy_test.json", None, "coco", True),
        ("annotations/coco_karpathy_test.json", _as_lavis, "lavis", True),  # LAVIS / BLIP
        ("coco_karpathy_test.json", _as_lavis, "lavis", True),
        ("dataset_coco.json", _as_karpathy, "karpathy", True),  # Karpathy's splits
        ("annotations/dataset_coco.json", _as_karpathy, "karpathy", True),
        ("caption_datasets/dataset_coco.json", _as_karpathy, "karpathy", True),
    ],
)
def test_annotation_where_common_loaders_keep_it(tmp_path, name, convert, schema, karpathy):
    root = copy_sample("coco_sample", tmp_path)
    doc = json.loads((root / ANN).read_text())
    (root / ANN).unlink()
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(json.dumps(convert(doc) if convert else doc))
    ds = read_coco_captions(root)
    assert ds.meta["annotation"] == str(root / name) and ds.meta["schema"] == schema
    assert ds.meta["karpathy_filtered"] is karpathy
    assert len(ds) == 3 and len(ds.captions) == 15 and ds.exclusions.empty
    assert ds.captions["image_index"].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert ds.captions["caption"][0] == "A cat sitting on a wooden bench."
    assert ds.table["path"][0] == str(root / "val2014" / "COCO_val2014_000000000042.jpg")
    if schema == "karpathy":
        assert ds.table["image_id"].tolist() == [42, 73, 74]


def test_lavis_entries_of_one_image_add_captions(tmp_path):
    root = copy_sample("coco_sample", tmp_path)
    (root / ANN).unlink()
    data = [{"image": "val2014/COCO_val2014_000000000042.jpg", "caption": "a cat.", "image_id": "coco_42"},
            {"image": "val2014/COCO_val2014_000000000042.jpg", "caption": "a bench."},
            {"image": "val2014/COCO_val2014_000000000073.jpg", "caption": ["one", " "]}]
    (root / "coco_karpathy_test.json").write_text(json.dumps(data))
    ds = read_coco_captions(root)
    assert len(ds) == 2 and ds.captions["caption"].tolist() == ["a cat.", "a bench.", "one"]
    assert ds.exclusions[["row", "category"]].values.tolist() == [[2, "empty caption"]]
