"""qclip.models.tiny.published: the published reproducible checksums load, and qclip prepare's line says
whether a cache holds that population, names each model that differs, or says there is nothing to compare."""

from __future__ import annotations

import json
import re

import pytest

from qclip.models.tiny.model import TINY_MODELS
from qclip.models.tiny.published import compare_with_published, published_records

REC = {"torch": "2.14.1", "open_clip": "3.3.0", "transformers": "5.24.0", "world": "w" * 64,
       "machine": "test box", "date": "2026-12-02", "sha256": {"tiny-a": "a" * 64, "tiny-b": "b" * 64}}
V = {"torch": "2.14.1", "open_clip": "3.3.0", "transformers": "5.24.0"}


def test_the_shipped_records_are_well_formed():
    records = published_records()
    assert records
    for rec in records:
        assert set(rec["sha256"]) <= set(TINY_MODELS)
        assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in [*rec["sha256"].values(), rec["world"]])


def test_the_same_weights_say_so():
    line = compare_with_published(V, "w" * 64, {"tiny-a": "a" * 64, "tiny-b": "b" * 64}, [REC])
    assert line.startswith("the same weights as published for tiny-a, tiny-b (measured on test box")


def test_other_weights_warn_naming_each_model():
    line = compare_with_published(V, "w" * 64, {"tiny-a": "a" * 64, "tiny-b": "c" * 64}, [REC])
    assert line.startswith("WARNING: other weights than published for tiny-b (published: test box")


@pytest.mark.parametrize("versions, world", [({**V, "torch": "2.15.0"}, "w" * 64), (V, "x" * 64)])
def test_other_versions_or_world_have_nothing_to_compare(versions, world):
    line = compare_with_published(versions, world, {"tiny-a": "a" * 64}, [REC])
    assert line.startswith("no published checksums for torch") and world[:12] in line


def test_a_malformed_file_names_itself_and_the_record(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"reproducible": [{"torch": "2.14.1"}]}))
    with pytest.raises(ValueError, match=r"p\.json: record 0 lacks open_clip, transformers, world, machine, sha256"):
        published_records(bad)
    bad.write_text("[]")
    with pytest.raises(ValueError, match="expected an object with a list 'reproducible'"):
        published_records(bad)
