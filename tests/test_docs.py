"""The docs in docs/ say what the code is: architecture.md names every module and follows one cell through
every layer, its layer list is the import-linter contract's, the links resolve, and the code blocks run."""

from __future__ import annotations

import re
import sys
import tomllib
import types
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ARCHITECTURE = (DOCS / "architecture.md").read_text(encoding="utf-8")
WALKTHROUGH_CELL = "test_facet[tiny-a-bnb-nf4-synthfacet]"

#: the seven layers of docs/architecture.md, top to bottom, and the packages/modules of each
LAYERS = {
    "entry points": ("qclip.__main__", "qclip.cli", "qclip.plugin", "qclip.perf"),
    "pytest glue": ("qclip.run",),
    "computations": ("qclip.report", "qclip.tasks"),
    "expectations": ("qclip.expect",),
    "infrastructure": ("qclip.quantize", "qclip.models", "qclip.data", "qclip.embed", "qclip.results",
                       "qclip.cache", "qclip.errors", "qclip.benchmarks"),
    "statistics": ("qclip.stats",),
    "metrics": ("qclip.metrics",),
}


def _modules() -> list[tuple[str, str]]:
    """(dotted name, path) of every module under qclip/."""
    out = []
    for path in sorted((ROOT / "qclip").rglob("*.py")):
        rel = path.relative_to(ROOT)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), rel.as_posix()))
    return out


def _code_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else len(text)]


def _layer_of(module: str) -> str:
    for layer, members in LAYERS.items():
        if any(module == m or module.startswith(m + ".") for m in members):
            return layer
    raise AssertionError(f"{module} belongs to no layer of docs/architecture.md")


def test_architecture_names_every_module():
    spans = _code_spans(ARCHITECTURE)
    missing = [path for dotted, path in _modules() if path not in spans and dotted not in spans]
    assert not missing, ("docs/architecture.md does not name these modules (write `qclip/x/y.py` or "
                         "`qclip.x.y` with a line on what each holds): " + ", ".join(missing))


def test_architecture_names_no_module_that_is_gone():
    known = {path for _, path in _modules()}
    named = {s for s in _code_spans(ARCHITECTURE) if re.fullmatch(r"qclip/[\w/]+\.py", s)}
    assert named <= known, f"docs/architecture.md names modules that do not exist: {sorted(named - known)}"


def test_only_the_plugin_and_the_glue_import_pytest():
    """What docs/architecture.md promises: everything else runs outside a test session."""
    import ast

    offenders = []
    for dotted, path in _modules():
        if dotted == "qclip.plugin" or dotted == "qclip.run" or dotted.startswith("qclip.run."):
            continue
        for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path}: {n}" for n in names if n.split(".")[0] in ("pytest", "_pytest")]
    assert not offenders, offenders


def test_every_module_belongs_to_one_layer():
    for dotted, _ in _modules():
        if dotted != "qclip":  # the root package holds only __version__
            _layer_of(dotted)


def _contract_layers() -> list[str] | None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("tool", {}).get("importlinter", {})
    layers = [c for c in config.get("contracts", []) if c.get("type") == "layers"]
    return layers[0]["layers"] if layers else None


def _documented_contract() -> list[str]:
    block = re.search(r"```text\n(.*?)```", _section(ARCHITECTURE, "## Layers"), re.S)
    assert block, "docs/architecture.md's Layers section has no ```text block listing the contract's layers"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_documented_layers_are_the_import_linter_contract():
    """The fine order in docs/architecture.md is pyproject.toml's layers contract, and it refines the seven
    layers of the table (each contract layer inside one of them, in the same order)."""
    documented = _documented_contract()
    contract = _contract_layers()
    if contract is not None:  # lint-imports enforces the contract; the doc must say the same
        assert documented == contract, "update docs/architecture.md's layer list to pyproject.toml's contract"
    order = list(LAYERS)
    seen = [_layer_of(m.strip()) for line in documented for m in re.split(r"[|:]", line)]
    assert seen == sorted(seen, key=order.index), f"contract layers out of the table's order: {seen}"
    assert set(seen) == set(order)
    table = _section(ARCHITECTURE, "## Layers")
    for m in (m for members in LAYERS.values() for m in members):
        assert f"`{m}`" in table, f"the layer table does not list {m}"


def test_following_one_cell_touches_every_layer():
    walk = _section(ARCHITECTURE, "## Following one cell")
    assert WALKTHROUGH_CELL in walk
    named = {s for s in _code_spans(walk)}
    dotted = {n for n in named if re.fullmatch(r"qclip(\.\w+)+", n)}
    dotted |= {".".join(Path(n).with_suffix("").parts) for n in named if re.fullmatch(r"qclip/[\w/]+\.py", n)}
    top = {m.split(".")[1] for m, _ in _modules() if m != "qclip"}
    # `qclip.reference`, `qclip.quantized` are the cell's fixture; modules are qclip.<top-level module>...
    touched = {_layer_of(n) for n in dotted if n.split(".")[1] in top}
    assert touched == set(LAYERS), f"the walk-through never reaches: {sorted(set(LAYERS) - touched)}"
    step_table = {line.split("|")[1].strip() for line in walk.splitlines() if line.startswith("| ")}
    assert set(LAYERS) <= step_table, "the walk-through's table must list every layer"


def test_the_walkthrough_cell_and_the_docs_cell_ids_exist():
    from qclip.benchmarks import FAMILIES
    from qclip.data.synthetic import DATASETS
    from qclip.models import expand_models
    from qclip.quantize import list_quantizers
    from qclip.run.cells import Cell

    real = {f"test_{b}[{Cell(m.spec, m.short, q, b, ds).id}]"
            for b in FAMILIES for m in expand_models("tiny") for q in list_quantizers() for ds in DATASETS}
    for doc in sorted(DOCS.glob("*.md")):
        for bench, cell_id in re.findall(r"test_(\w+)\[([^\]\s`]+)\]", doc.read_text(encoding="utf-8")):
            if bench in FAMILIES:
                assert f"test_{bench}[{cell_id}]" in real, f"{doc.name}: test_{bench}[{cell_id}] is not a cell"
    assert WALKTHROUGH_CELL in real
    cell = Cell("tiny:tiny-a", "tiny-a", "bnb-nf4", "facet", "synth-facet")
    assert f"test_facet[{cell.id}]" == WALKTHROUGH_CELL and cell.key in ARCHITECTURE


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))])
def test_relative_links_resolve(doc):
    path = ROOT / doc
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s):, mailto:
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target} (no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{doc}: broken links: {broken}"


def test_every_doc_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in sorted(DOCS.glob("*.md")):
        assert f"(docs/{doc.name})" in readme, f"README.md does not link docs/{doc.name}"


def _python_block_after(text: str, heading: str) -> str:
    match = re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_the_base_quantizer_example_runs_with_full_coverage():
    from qclip.models.random_init import random_hf, random_open_clip
    from qclip.quantize import base, create_quantizer, fresh_copy
    from qclip.quantize.coverage import CoverageWarning

    text = (DOCS / "adding-a-quantizer.md").read_text(encoding="utf-8")
    code = _python_block_after(text, "## `BaseQuantizer`")
    before = dict(base._REGISTRY)
    module = types.ModuleType("qclip_doc_example")  # dataclasses look their module up in sys.modules
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, "docs/adding-a-quantizer.md", "exec", dont_inherit=True), module.__dict__)
        (name,) = set(base._REGISTRY) - set(before)
        assert f'name = "{name}"' in code
        assert create_quantizer(name).config_json() != create_quantizer(name, per_row=False).config_json()
        for ref in (random_open_clip("ViT-B-32", tiny=True, seed=0),
                    random_hf("openai/clip-vit-base-patch32", tiny=True, seed=0)):
            with warnings.catch_warnings():
                warnings.simplefilter("error", CoverageWarning)
                model = create_quantizer(name).quantize(fresh_copy(ref))
            report = model.quant_report
            assert report["unquantized_layers"] == [], report["unquantized_layers"]
            assert all(c["quantized"] == c["total"] > 0 for c in report["coverage"].values()), report["coverage"]
            assert report["weight_bytes"] < report["fp32_weight_bytes"]
            pixels = torch.randn(4, 3, ref.image_size, ref.image_size, generator=torch.Generator().manual_seed(0))
            tokens = ref.tokenize(["a photo of a dog", "two birds on a wire"])
            with torch.no_grad():
                assert F.cosine_similarity(model.encode_image(pixels), ref.encode_image(pixels)).min() > 0.99
                assert F.cosine_similarity(model.encode_text(tokens), ref.encode_text(tokens)).min() > 0.99
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(before)
        sys.modules.pop(module.__name__, None)


def test_the_adding_a_benchmark_declaration_is_a_valid_family():
    from qclip import benchmarks

    text = (DOCS / "adding-a-benchmark.md").read_text(encoding="utf-8")
    code = _python_block_after(text, "## 1. The declaration").strip().rstrip(",")
    fam = eval(code, {"Family": benchmarks.Family, "_m": benchmarks._m})  # noqa: S307 - our own doc
    assert fam.metric("my_gap@5").direction == "zero"
    groups = {f.section for f in benchmarks.FAMILIES.values()}
    assert fam.section in groups, (fam.section, groups)
    for group in groups:
        assert f"`{group}`" in text, f"docs/adding-a-benchmark.md does not name the group {group!r}"


def test_datasets_page_names_every_kind_and_its_options():
    from qclip.data.config import _COMMON, KINDS

    text = (DOCS / "datasets.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z-]+)` \|.*$", text, re.M)}
    assert set(rows) == set(KINDS), "docs/datasets.md must have one table row per dataset kind"
    for kind, spec in KINDS.items():
        for option in sorted(spec.options - _COMMON):
            assert f"`{option}`" in rows[kind], f"docs/datasets.md: the {kind} row does not name its option {option}"
