"""Conformance reference data: complete for the paper set, consistent with PAPER_MODELS, and checked
both ways (a drop and an unexplained improvement are both failures)."""

from pathlib import Path

from qclip.expect.conformance import Reference, check_reference, load_references
from qclip.models import PAPER_MODELS

REFS = load_references(Path(__file__).resolve().parents[1] / "bench" / "reference" / "zeroshot.yaml")


def test_every_paper_model_has_an_imagenet_reference_on_both_backends():
    imagenet = REFS["imagenet"]
    for m in PAPER_MODELS:
        assert imagenet[f"open_clip:{m.open_clip}"].value == m.top1
        assert imagenet[f"hf:{m.hf}"].value == m.top1
    assert len(imagenet) == 2 * len(PAPER_MODELS)


def test_check_reference_flags_both_directions():
    ref = Reference(0.6332, 0.005)
    assert check_reference(ref, 0.6350, "m") == ""
    assert "below" in check_reference(ref, 0.6100, "m")
    assert "above" in check_reference(ref, 0.6500, "m")
