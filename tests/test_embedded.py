"""The embedded default end to end, on one trained tiny model (about two minutes on 2 cores):
the planted effects of the synthetic world are recovered by the fp32 model, the zero-shot cell agrees
with an independent implementation to 1e-6, and a deliberately broken quantizer fails the accuracy
cells with the message that names model, quantizer, dataset, both values and the threshold."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
MODEL = TINY_MODEL

# slow: trains tiny-a (about two minutes on one core). `pytest tests` runs this file on one xdist worker
# (ONE_WORKER_FILES in the root conftest.py) and the rest of the suite on the other meanwhile.
pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(trained_tiny):
    """(cache, world root, spec, trained module) for tiny-a: the session's one trained tiny-a
    (``tests/conftest.py``), trained through the qclip cache on first use."""
    return trained_tiny


def test_planted_effects_are_recovered_with_their_sign(trained):
    from qclip.models.tiny import evaluate_tiny

    cache, root, spec, module = trained
    res = evaluate_tiny(spec, module, root)
    assert res["top1"] >= 0.8, res["top1"]
    assert res["image_R@5"] >= 0.6 and res["text_R@5"] >= 0.6
    planted = res["facet"]["planted"]
    unplanted = res["facet"]["unplanted_mean_abs"]
    right_sign = [c for c, p in planted.items() if np.sign(p["disparity"]) == p["expected_sign"]]
    larger = [c for c, p in planted.items() if abs(p["disparity"]) > unplanted[p["pair"]]]
    assert len(right_sign) >= len(planted) - 1, planted  # at most one planted class may be too weak to show
    assert len(larger) >= len(planted) - 1, (planted, unplanted)
    skew = res["fairface"]
    assert sum(skew["planted"][c] > 0 for c in skew["planted"]) >= len(skew["planted"]) - 1, skew
    assert sum(skew["planted"][c] > skew["unplanted_mean"][c] for c in skew["planted"]) >= len(skew["planted"]) - 1
    import json

    manifest = json.loads((root / "world.json").read_text())
    assert str(res["worst_group"]) == str(manifest["planted"]["spurious"]["expected_worst_group"])


def test_zeroshot_matches_a_naive_loop_to_1e6(trained):
    from qclip import tasks
    from qclip.run.session import EmbeddingSource, QclipSession, SessionOptions

    cache, root, spec, module = trained
    session = QclipSession(SessionOptions(models=f"tiny:{MODEL}", cache=str(cache.root), progress=False))
    src = EmbeddingSource(session, f"tiny:{MODEL}", "fp32")
    ds = session.dataset("synth-imagenet")
    res = tasks.zeroshot(src, ds)
    got, n = res.metrics, res.n

    # independent: encode with the module directly, one image at a time, classify in a Python loop
    from qclip.models.tiny import tiny_preprocess, tiny_tokenizer

    pre, tok = tiny_preprocess(spec), tiny_tokenizer(spec)
    enc_img = (lambda x: module.encode_image(x)) if spec.family == "open_clip" else (
        lambda x: module.get_image_features(pixel_values=x).pooler_output)
    enc_txt = (lambda t: module.encode_text(t)) if spec.family == "open_clip" else (
        lambda t: module.get_text_features(input_ids=t).pooler_output)
    with torch.no_grad():
        weights = []
        for name in ds.classnames:
            t = enc_txt(tok([tmpl.replace("{}", name) for tmpl in ds.templates])).double()
            t = t / t.norm(dim=-1, keepdim=True)
            m = t.mean(0)
            weights.append(m / m.norm())
        w = torch.stack(weights)
        hits1 = hits5 = 0
        per_class: dict[int, list[int]] = {}
        for i in range(len(ds)):
            x = enc_img(pre(ds.load_image(i))[None]).double()[0]
            s = (x / x.norm()) @ w.T
            y = int(ds.table["label"].iloc[i])
            order = sorted(range(len(s)), key=lambda j: (-float(s[j]), j))
            hits1 += order[0] == y
            hits5 += y in order[:5]
            per_class.setdefault(y, []).append(int(order[0] == y))
    assert n == len(ds)
    assert abs(got["top1"] - hits1 / n) <= 1e-6
    assert abs(got["top5"] - hits5 / n) <= 1e-6
    assert abs(got["mean_per_class_recall"] - np.mean([np.mean(v) for v in per_class.values()])) <= 1e-6


BROKEN = textwrap.dedent("""
    import torch
    from qclip.quantize import create_quantizer
    from qclip.quantize.base import Quantizer

    class ZeroHalf(Quantizer):
        '''Deliberately broken: zeroes every other input column of every Linear layer.'''
        name = "broken-zerohalf"
        family = "test"

        def available(self):
            return True, ""

        def quantize(self, model):
            model.prepare_for_quantization()
            with torch.no_grad():
                for m in model.module.modules():
                    if type(m) is torch.nn.Linear:
                        m.weight[:, ::2] = 0
            return create_quantizer("fp32").quantize(model)

        def describe(self):
            return {"bits": 32, "scheme": "zero half the weights"}
""")


def test_broken_quantizer_fails_the_accuracy_cell_and_a_faithful_one_passes(trained, tmp_path):
    cache = trained[0]
    (tmp_path / "brokenquant.py").write_text(BROKEN)
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c",
            str(ROOT / "pytest.ini"), str(ROOT / "bench" / "test_zeroshot.py"), "--qclip-cache", str(cache.root),
            "--qclip-models", f"tiny:{MODEL}", "--qclip-datasets", "synth-imagenet", "--qclip-no-report"]
    import os

    # brokenquant importable, ahead of (not instead of) the caller's PYTHONPATH
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PATH": "/usr/bin:/bin"}
    # one bench run for both cells (one interpreter and one load of the model, not two): the broken
    # quantizer's cell fails with the full message, the faithful one's passes in the same session
    res = subprocess.run([*base, "--qclip-quantizer", "brokenquant:ZeroHalf", "--qclip-quantizers",
                          "broken-zerohalf,bnb-int8", "-rfE"], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env=env)
    out = res.stdout
    assert res.returncode == 1, out[-3000:]
    assert "1 failed, 1 passed" in out, out[-3000:]
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 1 and "broken-zerohalf" in failed[0] and "bnb-int8" not in failed[0], failed
    assert "accuracy not preserved" in out
    assert f"model tiny:{MODEL}" in out and "quantizer broken-zerohalf" in out and "dataset synth-imagenet" in out
    assert "threshold 5 pp" in out and "fp32" in out
    assert "quantizer bnb-int8" not in out  # no accuracy message names the faithful quantizer
