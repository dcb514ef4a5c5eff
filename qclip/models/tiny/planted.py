"""What the tiny models carry beyond their training, applied when their trained weights are loaded: the
known answers of the embedded default that training alone would not give.

* **Activation outliers** (:mod:`.outliers`): half the population has a few vision channels about ten
  times larger than the rest, as real CLIP ViTs do (an exact reparametrisation).
* **Confidence by training source**: real CLIPs differ in calibration by pre-training source; in
  "Less Precise Can Be More Reliable" (Bouguerra et al.) the WIT-trained (OpenAI) models are
  under-confident and the LAION-trained ones over-confident, and quantization moves their ECE in opposite
  directions. Small models trained for minutes on the synthetic world all end slightly under-confident, so
  each model's learned logit scale is multiplied by its source's factor (:data:`SOURCE_LOGIT_SCALE`), the
  end point of a temperature schedule: WIT-like ×0.75 (under-confident, mean confidence about 8 points
  below accuracy on the zero-shot set), LAION-like ×2 (over-confident, about 7 points above),
  DataComp-like as trained. A logit scale changes no ranking: accuracy, retrieval, FACET and FairFace are
  untouched; confidence, calibration and the softmax-based OOD scores are not.

Both are part of the model's weights digest (:func:`planted_digest`), so embeddings cached for the plain
trained weights are never reused, and both are written to the world's ``world.json`` beside each model's
checksum (:func:`planted_answers`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict

import torch
from torch import nn

from .outliers import outlier_plan, plant_outliers

__all__ = ["SOURCE_LOGIT_SCALE", "logit_scale_factor", "apply_planted", "planted_digest", "planted_answers"]

#: the factor on each training source's learned logit scale (see the module doc)
SOURCE_LOGIT_SCALE: dict[str, float] = {"wit": 0.75, "laion": 2.0, "datacomp": 1.0}


def logit_scale_factor(name: str) -> float:
    """The factor on tiny model ``name``'s learned logit scale (1.0 for a source without one)."""
    from .model import TINY_MODELS

    spec = TINY_MODELS.get(name)
    return 1.0 if spec is None else SOURCE_LOGIT_SCALE.get(spec.source, 1.0)


def planted_answers(name: str) -> dict:
    """What is planted in tiny model ``name`` at load time, as JSON (empty when nothing is)."""
    out: dict = {}
    plan = outlier_plan(name)
    if plan is not None:
        out["planted_outliers"] = {**asdict(plan), "channels": list(plan.channels),
                                   "where": "vision blocks: the norms before attention and the MLP"}
    factor = logit_scale_factor(name)
    if factor != 1.0:
        out["logit_scale_factor"] = factor
    return out


def planted_digest(name: str, weights_key: str) -> str:
    """The 16-hex weights digest of tiny model ``name`` as loaded: its trained weights' cache key, with what
    is planted folded in (a model with nothing planted keeps the digest it always had)."""
    answers = planted_answers(name)
    if not answers:
        return weights_key[:16]
    return hashlib.sha256(f"{weights_key}|planted:{json.dumps(answers, sort_keys=True)}".encode()).hexdigest()[:16]


@torch.no_grad()
def apply_planted(module: nn.Module, name: str) -> nn.Module:
    """Plant ``name``'s outliers and logit-scale factor into its freshly loaded ``module``, in place."""
    plan = outlier_plan(name)
    if plan is not None:
        plant_outliers(module, plan)
    factor = logit_scale_factor(name)
    if factor != 1.0:
        module.logit_scale += math.log(factor)
    return module
