"""The reproducible training mode of the tiny models (qclip.models.tiny.reproducible) and the provenance that
travels with a run: a few training steps under forced CPU capability levels give one checksum in
reproducible mode (and several in native mode: the differences are printed), ``qclip prepare
--reproducible`` gives the same checksums in two fresh caches and records them in world.json, the mode is
part of the cache key, and a gate against a baseline of other weights, libraries or CPU capability warns
naming each difference."""

from __future__ import annotations

import dataclasses
import json
import os
import platform

import pandas as pd
import pytest

from qclip.cache import Cache
from qclip.models.tiny.model import TINY_MODELS
from qclip.models.tiny.reproducible import (
    PORTABLE_ENV,
    cpu_capability,
    state_sha256,
    subprocess_env,
    tiny_mode,
    train_in_subprocesses,
)

x86_only = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                              reason="the forced levels are x86_64 ones (ATen avx2/avx512, MKL, oneDNN ISAs)")

#: machines to emulate by forcing each library's code path (ATen default/avx2/avx512, oneDNN and MKL levels)
FORCED = {
    "this machine": {},
    "ATen avx2, oneDNN AVX2, MKL AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                         "MKL_CBWR": "AVX2"},
    "ATen default, oneDNN SSE41, MKL COMPATIBLE": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                                                  "MKL_CBWR": "COMPATIBLE"},
    "ATen avx512, oneDNN AVX512_CORE, MKL instructions AVX2": {
        "ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def _short(name: str, **kw):
    return dataclasses.replace(TINY_MODELS[name], steps=3, batch_size=32, warmup_steps=1, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from qclip.data.synthetic import generate_world

    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=0, size="test", progress=False)
    return root


def _checksums(world, mode: str) -> dict[str, tuple[str, str]]:
    """label -> (weights sha256, the trainer's torch CPU capability) of a few steps of tiny-a under each level."""
    from concurrent.futures import ThreadPoolExecutor

    spec = _short("tiny-a")

    def one(extra):
        (_, info), = train_in_subprocesses([spec], world, mode, progress=False,
                                           env={**os.environ, **extra}).values()
        return info["sha256"], info["cpu_capability"]

    with ThreadPoolExecutor(2) as pool:  # two processes at a time (2 cores)
        return dict(zip(FORCED, pool.map(one, FORCED.values()), strict=True))


@x86_only
@pytest.mark.slow
def test_forced_capability_levels_give_one_checksum_in_reproducible_mode_only(world):
    reproducible = _checksums(world, "reproducible")
    native = _checksums(world, "native")
    print("\nweights sha256 of 3 steps of tiny-a under each forced level:")
    for label in FORCED:
        print(f"  {label:<58} native {native[label][0][:16]} ({native[label][1]:<7})  "
              f"reproducible {reproducible[label][0][:16]} ({reproducible[label][1]})")
    assert len({sha for sha, _ in reproducible.values()}) == 1, reproducible
    assert {cap for _, cap in reproducible.values()} == {"DEFAULT"}
    if cpu_capability() != "DEFAULT":  # native training follows the levels: that is what the mode is for
        assert len({sha for sha, _ in native.values()}) >= 2, native
    # the portable bits are not this machine's native ones unless the machine has no vector unit to use
    assert reproducible["this machine"][0] != native["this machine"][0] or cpu_capability() == "DEFAULT"


def test_the_environment_of_each_mode():
    base = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512", "GLIBC_TUNABLES":
            "glibc.malloc.check=3:glibc.cpu.hwcaps=-AVX512F", "HOME": "/home/x"}
    assert subprocess_env("native", base) == base
    env = subprocess_env("reproducible", base)
    assert {k: env[k] for k in PORTABLE_ENV} == PORTABLE_ENV and env["HOME"] == "/home/x"
    assert "MKL_ENABLE_INSTRUCTIONS" not in env
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.check=3:glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4"


def test_the_mode_comes_from_the_argument_the_environment_then_the_cache(monkeypatch, tmp_path):
    from qclip.models.tiny.reproducible import DEFAULT_MODE, remember_mode

    monkeypatch.delenv("QCLIP_TINY_MODE", raising=False)
    assert tiny_mode() == DEFAULT_MODE == tiny_mode(None, tmp_path)
    remember_mode(tmp_path, "native")  # what `qclip prepare --native` leaves in the cache
    assert tiny_mode(None, tmp_path) == "native" and tiny_mode("reproducible", tmp_path) == "reproducible"
    monkeypatch.setenv("QCLIP_TINY_MODE", "reproducible")
    assert tiny_mode(None, tmp_path) == "reproducible"
    monkeypatch.setenv("QCLIP_TINY_MODE", "fast")
    with pytest.raises(ValueError, match=r"Expected \$QCLIP_TINY_MODE to be one of reproducible, native, but got 'fast'"):
        tiny_mode()
    monkeypatch.delenv("QCLIP_TINY_MODE")
    (tmp_path / "tiny-mode").write_text("fast\n")
    with pytest.raises(ValueError, match=r"tiny-mode to be one of reproducible, native, but got 'fast'"):
        tiny_mode(None, tmp_path)


def test_the_checksum_covers_names_dtypes_shapes_and_bytes():
    import torch

    a = {"w": torch.ones(2, 3), "s": torch.tensor(1.0)}
    assert state_sha256(a) == state_sha256({"s": torch.tensor(1.0), "w": torch.ones(2, 3)})
    for other in ({"w": torch.ones(3, 2), "s": torch.tensor(1.0)}, {"w": torch.ones(2, 3, dtype=torch.float64),
                  "s": torch.tensor(1.0)}, {"v": torch.ones(2, 3), "s": torch.tensor(1.0)},
                  {"w": torch.ones(2, 3), "s": torch.tensor(1.0 + 1e-7)}):
        assert state_sha256(other) != state_sha256(a)


# ----- qclip prepare --reproducible: two fresh caches, the key, world.json, the provenance --------------------
@pytest.fixture(scope="module")
def prepared(tmp_path_factory, world):
    """Two fresh caches prepared with ``qclip prepare --reproducible --models tiny-a`` (tiny-a cut to 3 steps,
    the test world)."""
    from qclip import cli
    from qclip.data.synthetic import location
    from qclip.models.tiny import model

    mp = pytest.MonkeyPatch()
    mp.setitem(model.TINY_MODELS, "tiny-a", _short("tiny-a"))
    mp.setattr(location, "WORLD_SIZE", "test")
    mp.delenv("QCLIP_TINY_MODE", raising=False)
    caches, outputs = [], []
    try:
        for i in range(2):
            root = tmp_path_factory.mktemp(f"cache{i}")
            import contextlib
            import io

            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert cli.main(["prepare", "--reproducible", "--models", "tiny-a", "--quiet", "--cache",
                                 str(root)]) == 0
            caches.append(Cache(root))
            outputs.append(out.getvalue())
        yield mp, caches, outputs
    finally:
        mp.undo()


@pytest.mark.slow
def test_prepare_reproducible_twice_in_fresh_caches_gives_the_same_checksums(prepared):
    from qclip.data.synthetic.location import world_root
    from qclip.data.synthetic.world import read_manifest, world_is_complete
    from qclip.models.tiny.weights import tiny_provenance

    _, caches, outputs = prepared
    provs = [tiny_provenance("tiny-a", c, "reproducible") for c in caches]
    assert provs[0]["sha256"] == provs[1]["sha256"] and len(provs[0]["sha256"]) == 64
    assert provs[0]["mode"] == "reproducible" and provs[0]["cpu_capability"] == cpu_capability()
    for cache, out in zip(caches, outputs, strict=True):
        assert f"tiny-a  {provs[0]['sha256']}" in out and "reproducible mode" in out, out
        assert tiny_mode(None, cache.root) == "reproducible"  # the sessions on this cache load these weights
        root = world_root(cache)
        manifest = read_manifest(root)
        entry = manifest["tiny_models"]["reproducible"]["tiny-a"]
        assert entry["sha256"] == provs[0]["sha256"] and entry["cpu_capability"] == cpu_capability()
        assert manifest["generated_on"]["cpu_capability"] == cpu_capability()
        assert world_is_complete(root), "recording a model must leave the world complete"
    assert read_manifest(world_root(caches[0]))["content_digest"] == read_manifest(world_root(caches[1]))[
        "content_digest"]
    from qclip.models.tiny.weights import tiny_weights, tiny_weights_key

    assert tiny_provenance("tiny-a", caches[0], "native") is None  # nothing trained in native mode here
    state, key = tiny_weights("tiny-a", caches[0], progress=False)  # a cache hit, in the cache's mode
    assert key == tiny_weights_key("tiny-a", caches[0], "reproducible") and state_sha256(state) == provs[0]["sha256"]


# ----- the mode in the key, the provenance of a run and the report (a cache entry written without training) --
@pytest.fixture()
def cache_with_tiny_a(tmp_path, world, monkeypatch):
    """A cache holding the test world and an untrained tiny-a stored as its reproducible weights."""
    import shutil

    from qclip.data.synthetic import location
    from qclip.models.tiny.model import build_tiny_module
    from qclip.models.tiny.reproducible import machine_info, remember_mode
    from qclip.models.tiny.weights import _tiny_parts

    monkeypatch.setattr(location, "WORLD_SIZE", "test")
    monkeypatch.delenv("QCLIP_TINY_MODE", raising=False)
    cache = Cache(tmp_path / "cache")
    shutil.copytree(world, location.world_root(cache))
    state = build_tiny_module(TINY_MODELS["tiny-a"]).state_dict()
    meta = {"name": "tiny-a", "mode": "reproducible", "sha256": state_sha256(state), "machine": machine_info(),
            "cpu_capability": "AVX512", "kernels": "DEFAULT"}
    cache.get_or_compute("tiny-weights", _tiny_parts("tiny-a", cache, "reproducible"), lambda: (state, meta))
    remember_mode(cache.root, "reproducible")  # as `qclip prepare --reproducible` leaves it
    return cache, meta["sha256"]


def test_the_mode_is_part_of_the_cache_key(cache_with_tiny_a):
    from qclip.data.synthetic.location import world_root
    from qclip.data.synthetic.world import read_manifest, world_is_complete
    from qclip.models.tiny.weights import _tiny_parts, tiny_provenance, tiny_weights, tiny_weights_key

    cache, sha = cache_with_tiny_a
    keys = {m: tiny_weights_key("tiny-a", cache, m) for m in ("reproducible", "native")}
    assert keys["reproducible"] != keys["native"]
    # native weights keep the key they had before modes existed (their parts have no mode)
    assert "mode" not in _tiny_parts("tiny-a", cache, "native")
    assert tiny_provenance("tiny-a", cache, "native") is None
    state, key = tiny_weights("tiny-a", cache, progress=False, mode="reproducible")  # a cache hit
    assert key == keys["reproducible"] and state_sha256(state) == sha
    assert tiny_provenance("tiny-a", cache, "reproducible") == {"sha256": sha, "mode": "reproducible",
                                                                "cpu_capability": "AVX512", "cache_key": key}
    # loading it recorded it in world.json, and the world stays complete
    root = world_root(cache)
    assert read_manifest(root)["tiny_models"]["reproducible"]["tiny-a"]["sha256"] == sha and world_is_complete(root)


def test_run_provenance_and_the_report_show_the_checksums(cache_with_tiny_a, tmp_path):
    from qclip.models.provenance import run_provenance
    from qclip.report import write_report
    from qclip.results import ResultStore

    cache, sha = cache_with_tiny_a
    prov = run_provenance(["tiny:tiny-a"], cache)
    assert prov["models"]["tiny:tiny-a"] == {"weights": sha, "mode": "reproducible",
                                             "trained_cpu_capability": "AVX512"}
    assert prov["cpu_capability"] == cpu_capability() and prov["tiny_mode"] == "reproducible"
    assert len(prov["data"]["world_digest"]) == 64
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.start_run("run-1", {"provenance": prov})
        store.add_rows([_row("run-1")])
        out = write_report(store, "run-1", tmp_path / "reports")
    md = (out / "report.md").read_text()
    assert sha in md and "Trained where torch reports" in md and prov["data"]["world_digest"] in md
    assert json.loads((out / "run.json").read_text())["provenance"] == json.loads(json.dumps(prov))


# ----- baselines that know where they came from -----------------------------------------------------------
def _row(run_id: str, value: float = 0.8, model: str = "tiny:tiny-a") -> dict:
    return {"run_id": run_id, "cell_id": f"zeroshot[{model}-fp32-synth-imagenet]", "model": model,
            "quantizer": "fp32", "benchmark": "zeroshot", "dataset": "synth-imagenet", "metric": "top1",
            "subgroup": "", "value": value, "reference": value, "n": 500, "status": "passed"}


def _meta(weights="a" * 64, mode="reproducible", trained="AVX512", torch_version="2.14.1", cpu="AVX512",
          world="c" * 64) -> dict:
    return {"libraries": {"torch": torch_version, "open_clip_torch": "3.3.0"},
            "provenance": {"cpu_capability": cpu, "tiny_mode": mode, "data": {"world": "w", "world_digest": world},
                           "models": {"tiny:tiny-a": {"weights": weights, "mode": mode,
                                                      "trained_cpu_capability": trained},
                                      "tiny:tiny-b": {"weights": "d" * 64, "mode": mode,
                                                      "trained_cpu_capability": trained}}}}


def test_provenance_differences_name_each_difference():
    from qclip.expect.provenance import provenance_differences

    assert provenance_differences(_meta(), _meta()) == []
    # the same weights trained on another machine are the same weights (the run's own CPU still counts)
    assert provenance_differences(_meta(), _meta(trained="AVX2")) == []
    lines = provenance_differences(_meta(), _meta(weights="b" * 64, mode="native", trained="AVX2",
                                                  torch_version="2.13.0", cpu="AVX2", world="e" * 64))
    assert lines == [
        f"model tiny:tiny-a: weights {'a' * 16} (reproducible, trained on AVX512) in the baseline, "
        f"{'b' * 16} (native, trained on AVX2) now",
        "library torch: 2.14.1 in the baseline, 2.13.0 now",
        "torch CPU capability: AVX512 in the baseline, AVX2 now (fp32 and quantized kernels pick other code paths)",
        f"synthetic world: digest {'c' * 16} in the baseline, {'e' * 16} now",
    ]
    assert "records no provenance" in provenance_differences({"libraries": {}}, _meta())[0]


def test_qclip_gate_warns_naming_what_differs(tmp_path, capsys):
    from qclip import cli
    from qclip.report import write_report
    from qclip.results import ResultStore

    store_path = tmp_path / "results.sqlite"
    with ResultStore(store_path) as store:
        store.start_run("base-run", _meta())
        store.add_rows([_row("base-run", 0.80)])
        store.start_run("new-run", _meta(weights="b" * 64, mode="native", trained="AVX2", cpu="AVX2"))
        store.add_rows([_row("new-run", 0.80)])
        folder = write_report(store, "base-run", tmp_path / "reports")
    args = ["gate", "--results", str(store_path), "--compare-fail", "top1:0.01", "--current", "new-run"]
    assert cli.main([*args, "--baseline", "base-run"]) == 0  # a warning, not a failure
    err = capsys.readouterr().err
    assert "warning: baseline base-run differs from this run" in err
    assert f"model tiny:tiny-a: weights {'a' * 16} (reproducible, trained on AVX512) in the baseline, " \
           f"{'b' * 16} (native, trained on AVX2) now" in err
    assert "torch CPU capability: AVX512 in the baseline, AVX2 now" in err
    # a report folder carries the run's metadata in run.json, and so does its results.csv beside it
    for ref in (folder, folder / "results.csv"):
        cli.main([*args, "--baseline", str(ref)])
        assert "model tiny:tiny-a: weights aaaaaaaaaaaaaaaa" in capsys.readouterr().err
    # the same provenance: silent
    assert cli.main([*args[:-1], "base-run", "--baseline", "base-run"]) == 0
    assert capsys.readouterr().err == ""
    # a bare results file has no provenance: said once
    pd.read_csv(folder / "results.csv").to_csv(tmp_path / "bare.csv", index=False)
    cli.main([*args, "--baseline", str(tmp_path / "bare.csv")])
    assert "the baseline records no provenance" in capsys.readouterr().err


def test_the_controller_stores_provenance_and_warns_against_the_baseline(cache_with_tiny_a, tmp_path):
    from types import SimpleNamespace

    from qclip.results import ResultStore
    from qclip.run.controller import Controller

    cache, sha = cache_with_tiny_a
    store_path = tmp_path / "results.sqlite"
    with ResultStore(store_path) as store:
        store.start_run("base-run", _meta(torch_version="0.0.1"))
        store.add_rows([_row("base-run")])
    opts = {"qclip_resume": None, "qclip_compare_fail": ["top1:0.01"], "qclip_baseline": "base-run",
            "qclip_results": str(store_path)}
    session = SimpleNamespace(cache=cache, options=SimpleNamespace(data=None))
    ctl = Controller(SimpleNamespace(getoption=opts.__getitem__), session)
    ctl._run_id = "new-run"
    ctl.store.start_run("new-run", {"libraries": {"torch": "2.14.1"}})
    ctl._record_provenance(pd.DataFrame([_row("new-run")]))
    meta = ctl.store.meta("new-run")
    assert meta["provenance"]["models"]["tiny:tiny-a"]["weights"] == sha
    assert meta["provenance"]["tiny_mode"] == "reproducible"
    text = "\n".join(ctl.baseline_warnings)
    assert text.startswith("WARNING: baseline base-run differs from this run")
    assert f"model tiny:tiny-a: weights {'a' * 16} (reproducible, trained on AVX512) in the baseline, {sha[:16]}" in text
    assert "library torch: 0.0.1 in the baseline, 2.14.1 now" in text
    assert meta["baseline"]["ref"] == "base-run" and len(meta["baseline"]["differences"]) >= 2
