"""Model spec strings, named model sets and published reference numbers.

A spec is ``open_clip:<arch>/<pretrained tag>``, ``hf:<repo id or local path>``, ``tiny:<name>`` (the
embedded population), or ``random:<open_clip|hf>/<arch>[/tiny][/seedN]`` (a randomly initialised model of a
real architecture: for tests, and for throughput and memory of real sizes without weights).
Named sets expand to lists of specs: ``paper`` (the eight models of the "You Never Know" study),
``paper-hf`` (the same eight through transformers), ``tiny`` (the embedded population).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownModelError, suggest

__all__ = ["ModelSpec", "PaperModel", "PAPER_MODELS", "MODEL_SETS", "model_set", "parse_spec", "expand_models",
           "paper_reference", "parse_random", "training_source", "TRAINING_SOURCES"]

BACKENDS = ("open_clip", "hf", "tiny", "random")


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    ref: str  # "arch/tag" for open_clip, repo id or path for hf, name for tiny

    @property
    def spec(self) -> str:
        return f"{self.backend}:{self.ref}"

    @property
    def short(self) -> str:
        """A short id for pytest ids: the tiny name, or the arch/tag with separators made safe."""
        if self.backend == "random":
            ref = "random_" + self.ref.replace("openai/clip-vit-", "")
        else:
            ref = self.ref.rstrip("/").split("/")[-1] if self.backend == "hf" else self.ref
        return ref.replace("/", "_").replace(":", "_")


@dataclass(frozen=True)
class PaperModel:
    """One model of the "You Never Know" population with its published fp32 ImageNet zero-shot top-1.

    ``top1`` is from open_clip's results table (docs/openclip_results.csv); OpenAI weights need
    QuickGELU, hence the ``-quickgelu`` architectures.
    """

    name: str
    open_clip: str
    hf: str
    top1: float


PAPER_MODELS: tuple[PaperModel, ...] = (
    PaperModel("B32-openai", "ViT-B-32-quickgelu/openai", "openai/clip-vit-base-patch32", 0.6332),
    PaperModel("B32-laion2b", "ViT-B-32/laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 0.6656),
    PaperModel("B16-openai", "ViT-B-16-quickgelu/openai", "openai/clip-vit-base-patch16", 0.6834),
    PaperModel("B16-laion2b", "ViT-B-16/laion2b_s34b_b88k", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", 0.7023),
    PaperModel("B16-datacomp", "ViT-B-16/datacomp_xl_s13b_b90k", "laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K", 0.7349),
    PaperModel("L14-openai", "ViT-L-14-quickgelu/openai", "openai/clip-vit-large-patch14", 0.7554),
    PaperModel("L14-laion2b", "ViT-L-14/laion2b_s32b_b82k", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", 0.7525),
    PaperModel("L14-datacomp", "ViT-L-14/datacomp_xl_s13b_b90k", "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K", 0.7921),
)


def _tiny_names() -> list[str]:
    from .tiny import TINY_MODELS

    return list(TINY_MODELS)


SET_NAMES = ("tiny", "paper", "paper-hf")


def model_set(name: str) -> list[str]:
    """The specs of a named set (the tiny set is read from qclip.models.tiny on demand)."""
    if name == "paper":
        return [f"open_clip:{m.open_clip}" for m in PAPER_MODELS]
    if name == "paper-hf":
        return [f"hf:{m.hf}" for m in PAPER_MODELS]
    if name == "tiny":
        return [f"tiny:{n}" for n in _tiny_names()]
    raise KeyError(name)


MODEL_SETS = SET_NAMES


def parse_spec(text: str) -> ModelSpec:
    """Parse ``backend:ref``; raise UnknownModelError on an unknown backend or malformed spec."""
    backend, sep, ref = text.partition(":")
    if not sep and text in _tiny_names():  # a bare tiny name: 'tiny-a' means 'tiny:tiny-a'
        return ModelSpec("tiny", text)
    if not sep or not ref:
        raise UnknownModelError(
            text, f"Expected a model spec like 'open_clip:ViT-B-32/laion2b_s34b_b79k', 'hf:openai/clip-vit-base-patch32' "
                  f"or 'tiny:NAME' (or a bare tiny name), or a model set ({', '.join(SET_NAMES)}), but got {text!r}"
        )
    if backend not in BACKENDS:
        raise UnknownModelError(text, f"Unknown model backend {backend!r} in {text!r}.{suggest(backend, BACKENDS)}")
    if backend == "open_clip" and "/" not in ref:
        raise UnknownModelError(text, f"Expected 'open_clip:ARCH/TAG' (e.g. open_clip:ViT-B-32/openai), but got {text!r}")
    if backend == "random":
        parse_random(ref)
    if backend == "tiny":
        names = _tiny_names()
        if ref not in names:
            raise UnknownModelError(text, f"Unknown tiny model {ref!r}.{suggest(ref, names)}")
    return ModelSpec(backend, ref)


def parse_random(ref: str) -> tuple[str, str, bool, int]:
    """``open_clip/ViT-B-32/tiny/seed1`` -> ("open_clip", "ViT-B-32", True, 1)."""
    parts = ref.split("/")
    family, rest = parts[0], parts[1:]
    seed, tiny = 0, False
    while rest and (rest[-1] == "tiny" or (rest[-1].startswith("seed") and rest[-1][4:].isdigit())):
        last = rest.pop()
        if last == "tiny":
            tiny = True
        else:
            seed = int(last[4:])
    if family not in ("open_clip", "hf") or not rest:
        raise UnknownModelError(f"random:{ref}", "Expected 'random:open_clip/ARCH[/tiny][/seedN]' or "
                                                 f"'random:hf/ARCH[/tiny][/seedN]', but got 'random:{ref}'")
    return family, "/".join(rest), tiny, seed


def expand_models(text: str) -> list[ModelSpec]:
    """Expand a comma-separated list of specs and set names into specs (order kept, duplicates dropped)."""
    out: list[ModelSpec] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        specs = model_set(item) if item in SET_NAMES else [item]
        for s in specs:
            ms = parse_spec(s)
            if ms not in out:
                out.append(ms)
    return out


def paper_reference(spec: ModelSpec) -> PaperModel | None:
    """The paper entry for a spec (either backend), if it is one of the eight."""
    for m in PAPER_MODELS:
        if (spec.backend == "open_clip" and spec.ref == m.open_clip) or (spec.backend == "hf" and spec.ref == m.hf):
            return m
    return None


#: the pre-training sources :func:`training_source` names, in the report's order; a tiny model's is its
#: synthetic stand-in (``WIT-like``...), "unknown" when a spec names none of them
TRAINING_SOURCES = ("WIT", "LAION", "DataComp", "DFN", "WebLI", "COYO", "MetaCLIP",
                    "WIT-like", "LAION-like", "DataComp-like", "unknown")
_TINY_SOURCES = {"wit": "WIT-like", "laion": "LAION-like", "datacomp": "DataComp-like"}
_OPEN_CLIP_TAGS = (("openai", "WIT"), ("laion", "LAION"), ("datacomp", "DataComp"), ("commonpool", "DataComp"),
                   ("dfn", "DFN"), ("webli", "WebLI"), ("metaclip", "MetaCLIP"))
"""open_clip pretrained-tag prefixes (``laion2b_s34b_b79k``, ``laion400m_e32``, ``datacomp_xl_s13b_b90k``,
``dfn2b``, ``webli``, ``metaclip_400m``) -> source, the first match winning."""


def training_source(spec: ModelSpec | str) -> str:
    """The pre-training data of a model spec, as the report groups models by it (Bouguerra et al. read the
    effect of quantization per training source):

    * ``tiny:NAME``: the synthetic world's mix it was trained on (:data:`qclip.models.tiny.TINY_MODELS`
      ``[NAME].source``), shown as ``WIT-like``, ``LAION-like``, ``DataComp-like``;
    * ``open_clip:ARCH/TAG``: from the pretrained tag: ``openai`` -> WIT, ``laion2b*`` / ``laion400m*`` ->
      LAION, ``datacomp*`` / ``commonpool*`` -> DataComp, ``dfn*`` -> DFN, ``webli`` -> WebLI, ``metaclip*`` ->
      MetaCLIP;
    * ``hf:REPO``: ``openai/clip-*`` -> WIT, a repo naming DataComp or DFN (``laion/CLIP-ViT-B-16-DataComp.XL-...``,
      ``apple/DFN*``) -> that source, other ``laion/*`` -> LAION, ``google/siglip*`` -> WebLI,
      ``kakaobrain/align*`` -> COYO;
    * anything else (a random model, a local path, an unparsable spec): ``unknown``.

    >>> training_source("tiny:tiny-b"), training_source("open_clip:ViT-B-32/laion2b_s34b_b79k")
    ('LAION-like', 'LAION')
    >>> training_source("hf:laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K"), training_source("hf:./my-model")
    ('DataComp', 'unknown')
    """
    try:
        ms = spec if isinstance(spec, ModelSpec) else parse_spec(str(spec))
    except UnknownModelError:
        return "unknown"
    if ms.backend == "tiny":
        from .tiny import TINY_MODELS

        tiny = TINY_MODELS.get(ms.ref)
        source = str(getattr(tiny, "source", "")).lower()
        return _TINY_SOURCES.get(source, "unknown")
    if ms.backend == "open_clip":
        tag = ms.ref.rsplit("/", 1)[-1].lower()
        return next((name for prefix, name in _OPEN_CLIP_TAGS if tag.startswith(prefix)), "unknown")
    if ms.backend == "hf":
        repo = ms.ref.strip("/").lower()
        org, _, name = repo.partition("/")
        if org == "openai" and name.startswith("clip"):
            return "WIT"
        if "datacomp" in name:
            return "DataComp"
        if "dfn" in name:
            return "DFN"
        if org == "laion":
            return "LAION"
        if org == "google" and name.startswith("siglip"):
            return "WebLI"
        if org == "kakaobrain" and name.startswith("align"):
            return "COYO"
    return "unknown"
