"""qclip.data.config: the [datasets.*] tables of qclip.toml."""

from __future__ import annotations

import pytest

from qclip.data import (
    ClassificationSet,
    DataConfig,
    DataConfigError,
    FacetSet,
    FairFaceSet,
    ImageTable,
    RetrievalSet,
    SpuriousSet,
)
from qclip.errors import DataFormatError, DatasetUnavailable, UnknownDatasetError
from tests.data._helpers import FIXTURES

SAMPLES_TOML = FIXTURES / "qclip.toml"


def _write(tmp_path, text, name="qclip.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sample_config_names_and_kinds():
    cfg = DataConfig.load(SAMPLES_TOML)
    assert cfg.names() == ["coco-sample", "facet-sample", "fairface-sample", "imagenet-sample", "ood-sample",
                           "waterbirds-sample"]
    assert cfg.names(kind="facet") == ["facet-sample"]
    entry = cfg.get("facet-sample")
    assert entry.kind == "facet" and entry.root == FIXTURES / "facet_sample"
    assert entry.available() == (True, "")
    assert "imagenet-sample" in cfg and len(cfg) == 6


@pytest.mark.parametrize(
    ("name", "cls", "n"),
    [("imagenet-sample", ClassificationSet, 6), ("coco-sample", RetrievalSet, 3), ("facet-sample", FacetSet, 9),
     ("fairface-sample", FairFaceSet, 8), ("waterbirds-sample", SpuriousSet, 4), ("ood-sample", ImageTable, 2)],
)
def test_every_sample_loads_through_the_config(name, cls, n):
    ds = DataConfig.load(SAMPLES_TOML).get(name).load()
    assert type(ds) is cls and len(ds) == n and ds.name == name


def test_options_reach_the_reader():
    ds = DataConfig.load(SAMPLES_TOML).get("imagenet-sample").load()
    assert len(ds.classnames) == 1000 and len(ds.templates) == 7  # classnames="imagenet", templates="simple"


def test_unknown_dataset_suggests():
    with pytest.raises(UnknownDatasetError, match="facet-sample"):
        DataConfig.load(SAMPLES_TOML).get("facet-sampel")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("facet", ["annotations/annotations.csv", "imgs_1"]), ("fairface", ["fairface_label_val.csv"]),
     ("coco", ["val2014", "captions_karpathy_test.json"]), ("imagefolder", ["class folder"]),
     ("spurious", ["metadata.csv"]), ("ood", ["image"])],
)
def test_missing_root_reason_names_root_and_layout(tmp_path, kind, expected):
    cfg = DataConfig.load(_write(tmp_path, f'[datasets.d]\nkind = "{kind}"\nroot = "absent/dir"\n'))
    entry = cfg.get("d")
    ok, reason = entry.available()
    assert not ok
    assert str(tmp_path / "absent" / "dir") in reason
    for text in expected:
        assert text in reason
    with pytest.raises(DatasetUnavailable, match="absent"):
        entry.load()


def test_root_not_configured(tmp_path):
    cfg = DataConfig.load(_write(tmp_path, '[datasets.d]\nkind = "fairface"\n'))
    ok, reason = cfg.get("d").available()
    assert not ok and "no root" in reason and "qclip.toml" in reason


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    (sub / "names.txt").write_text("alpha\nbeta\n")
    cfg = DataConfig.load(_write(sub, f"""
[datasets.a]
kind = "imagefolder"
root = "../data/a"
classnames = "names.txt"
templates = "openai"

[datasets.b]
kind = "imagefolder"
root = "{FIXTURES / 'imagenet_sample'}"
"""))
    a = cfg.get("a")
    assert a.root == tmp_path / "data" / "a"
    assert a.options == {"classnames": str(sub / "names.txt"), "templates": "openai"}
    assert cfg.get("b").root == FIXTURES / "imagenet_sample"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[datasets.d]\nkind = "facets"\nroot = "x"\n', "facet"),
        ('[datasets.d]\nroot = "x"\n', "no kind"),
        ('[datasets.d]\nkind = "coco"\nroot = "x"\nskin_rule = "median"\n', "skin_rule"),
        ('[datasets.d]\nkind = "coco"\nroot = 3\n', "root"),
        ("[datasets\nkind=", "TOML"),
    ],
)
def test_malformed_config_names_the_file(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(DataConfigError, match=match) as info:
        DataConfig.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("strict", '"yes"', "true or false"),
        ("max_image_pixels", "-1", "an integer >= 0"),
        ("max_image_pixels", "1.5", "an integer >= 0"),
        ("min_box", "true", "an integer >= 0"),
        ("lighter", "[0, 11]", "a list of Monk tones 1..10"),
        ("skin_rule", '"mode"', "'plurality' or 'median'"),
        ("annotation", "3", "a string"),
        ("classnames", "[1, 2]", "a string (a file, or 'imagenet') or a list of strings"),
    ],
)
def test_wrong_option_types_are_one_line_naming_file_and_key(tmp_path, option, value, expected):
    path = _write(tmp_path, f'[datasets.d]\nkind = "facet"\nroot = "x"\n{option} = {value}\n')
    with pytest.raises(DataConfigError) as info:
        DataConfig.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: [datasets.d] {option}: expected {expected}") and "\n" not in msg
    assert msg.endswith(f"but got {value}")


def test_unknown_key_suggests_the_close_one(tmp_path):
    path = _write(tmp_path, '[datasets.d]\nkind = "facet"\nroot = "x"\nmax_pixels = 5\n')
    with pytest.raises(DataConfigError) as info:
        DataConfig.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: [datasets.d] unknown key 'max_pixels' for kind 'facet'.")
    assert "Did you mean 'max_image_pixels'" in msg and "\n" not in msg


def test_missing_root_is_a_config_error_and_an_unavailable_dataset(tmp_path):
    from qclip.data.config import DatasetRootMissing

    path = _write(tmp_path, '[datasets.d]\nkind = "fairface"\nroot = "gone"\n')
    entry = DataConfig.load(path).get("d")  # loading the config itself does not need the data
    with pytest.raises(DatasetRootMissing) as info:
        entry.load()
    assert isinstance(info.value, DataConfigError) and isinstance(info.value, DatasetUnavailable)
    msg = str(info.value)
    assert msg.startswith(f"{path}: [datasets.d] root: {tmp_path / 'gone'} does not exist; expected ")
    assert "\n" not in msg and entry.available() == (False, msg)
    (tmp_path / "gone").write_text("a file, not a folder")
    assert "is not a folder" in entry.available()[1]


def test_strict_and_pixel_limit_reach_every_reader(tmp_path):
    from qclip.data.config import KINDS

    assert all({"strict", "max_image_pixels"} <= kind.options for kind in KINDS.values())
    path = _write(tmp_path, f'[datasets.d]\nkind = "imagefolder"\nroot = "{FIXTURES / "imagenet_sample"}"\n'
                            "max_image_pixels = 100\nstrict = true\n")
    ds = DataConfig.load(path).get("d").load()
    assert ds.max_image_pixels == 100
    with pytest.raises(DataFormatError, match="over the limit of 100"):
        ds.load_image(0)  # 16 x 16 = 256 pixels


def test_missing_config_file(tmp_path):
    with pytest.raises(DataConfigError, match="does not exist"):
        DataConfig.load(tmp_path / "none.toml")


def test_default_lookup(tmp_path, monkeypatch):
    monkeypatch.delenv("QCLIP_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert len(DataConfig.load()) == 0
    _write(tmp_path, '[datasets.x]\nkind = "ood"\nroot = "o"\n[models]\nother = 1\n')
    assert DataConfig.load().names() == ["x"]
    monkeypatch.setenv("QCLIP_DATA", str(SAMPLES_TOML))
    assert len(DataConfig.load()) == 6


def test_merge(tmp_path):
    samples = DataConfig.load(SAMPLES_TOML)
    synth = DataConfig.load(_write(tmp_path, '[datasets.synth-imagenet]\nkind = "imagefolder"\nroot = "w"\n'
                                             '[datasets.ood-sample]\nkind = "ood"\nroot = "elsewhere"\n'))
    with pytest.raises(DataConfigError, match="ood-sample"):
        samples.merge(synth)
    kept = samples.merge(synth, on_conflict="keep")
    assert "synth-imagenet" in kept and kept.get("ood-sample").root == FIXTURES / "ood_sample"
    replaced = samples.merge(synth, on_conflict="replace")
    assert replaced.get("ood-sample").root == tmp_path / "elsewhere"
    assert len(samples) == 6  # merge returns a new config
    assert replaced.sources == (str(SAMPLES_TOML), str(tmp_path / "qclip.toml"))
