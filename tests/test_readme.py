"""The README's examples run as written: the quantizer snippet, the cell ids it shows, the install line."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _python_block_after(heading: str) -> str:
    section = README[README.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_the_adding_a_quantizer_snippet_runs_verbatim():
    from qclip.models.random_init import random_open_clip
    from qclip.quantize import base, create_quantizer, fresh_copy, is_quantizer

    code = _python_block_after("## Adding a quantizer")
    before = dict(base._REGISTRY)
    try:
        exec(compile(code, "README.md:adding-a-quantizer", "exec"), {"__name__": "readme_snippet"})
        names = set(base._REGISTRY) - set(before)
        assert len(names) == 1, names
        (name,) = names
        q = create_quantizer(name)
        assert is_quantizer(q) and q.available() == (True, "")
        ref = random_open_clip("ViT-B-32", tiny=True, seed=0)
        model = q.quantize(fresh_copy(ref))
        pixels = torch.randn(4, 3, ref.image_size, ref.image_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            got, want = model.encode_image(pixels), ref.encode_image(pixels)
        assert torch.isfinite(got).all() and not torch.equal(got, want)
        assert F.cosine_similarity(got, want).min() > 0.99
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(before)


def test_the_cell_ids_it_shows_exist():
    from qclip.benchmarks import FAMILIES
    from qclip.data.synthetic import DATASETS
    from qclip.models import expand_models
    from qclip.quantize import list_quantizers
    from qclip.run.cells import Cell

    shown = re.findall(r"test_(\w+)\[([^\]\s`]+)\]", README)
    assert shown, "the README shows no cell id"
    real = {f"test_{b}[{Cell(m.spec, m.short, q, b, ds).id}]"
            for b in FAMILIES for m in expand_models("tiny") for q in list_quantizers() for ds in DATASETS}
    for bench, cell_id in shown:
        assert f"test_{bench}[{cell_id}]" in real, f"test_{bench}[{cell_id}] is not a cell of the default run"


def test_the_install_lines_use_the_tested_versions():
    ci = (ROOT / ".ci" / "run").read_text()
    for text, where in ((README, "README.md"), (ci, ".ci/run")):
        installs = re.findall(r"pip install[^\n&]*-e '\.\[dev\]'[^\n&]*", text)
        assert installs, f"{where} installs nothing"
        assert all("-c constraints.txt" in line for line in installs), (where, installs)


def test_the_constraints_pin_every_dependency_within_its_lower_bound():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (str(req), pins[name])
        assert not any(s.operator == "==" for s in req.specifier), f"pyproject pins {req}: keep lower bounds there"
