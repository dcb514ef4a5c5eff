"""The content-addressed cache: reuse, atomic writes under races, corrupt entries recomputed."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch

from qclip.cache import Cache, canonical_key


def test_key_is_canonical_and_config_sensitive():
    assert canonical_key({"a": 1, "b": [1, 2]}) == canonical_key({"b": [1, 2], "a": 1})
    assert canonical_key({"a": 1}) != canonical_key({"a": 2})


def test_entries_are_kept_in_memory_within_a_process(tmp_path):
    cache = Cache(tmp_path)
    cache.get_or_compute("emb", {"k": 9}, lambda: {"x": torch.ones(4)})
    (cache.entry_dir("emb", cache.key("emb", {"k": 9})) / "tensors.safetensors").unlink()
    t, _ = cache.get_or_compute("emb", {"k": 9}, lambda: {"x": torch.zeros(4)})
    assert torch.equal(t["x"], torch.ones(4)) and cache.stats.hits == 1


def test_second_call_reuses_the_entry(tmp_path):
    cache = Cache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(5.0)}, {"note": "hello"}

    t1, m1 = cache.get_or_compute("emb", {"model": "m"}, compute)
    t2, m2 = Cache(tmp_path).get_or_compute("emb", {"model": "m"}, compute)
    assert len(calls) == 1
    assert torch.equal(t1["x"], t2["x"]) and m2 == {"note": "hello"} == m1
    other, _ = cache.get_or_compute("emb", {"model": "other"}, compute)
    assert len(calls) == 2 and torch.equal(other["x"], t1["x"])


def test_truncated_entry_is_detected_and_recomputed(tmp_path):
    cache = Cache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.randn(1000)}

    first, _ = cache.get_or_compute("emb", {"k": 1}, compute)
    f = cache.entry_dir("emb", cache.key("emb", {"k": 1})) / "tensors.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])  # a half-written file
    fresh = Cache(tmp_path)  # a new process: nothing in memory
    with pytest.warns(UserWarning, match="corrupt"):
        again, _ = fresh.get_or_compute("emb", {"k": 1}, compute)
    assert len(calls) == 2 and fresh.stats.corrupt == 1
    assert again["x"].shape == first["x"].shape


def test_flipped_byte_fails_the_checksum(tmp_path):
    cache = Cache(tmp_path)
    cache.get_or_compute("emb", {"k": 2}, lambda: {"x": torch.zeros(100)})
    f = cache.entry_dir("emb", cache.key("emb", {"k": 2})) / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="checksum"):
        Cache(tmp_path).get_or_compute("emb", {"k": 2}, lambda: {"x": torch.zeros(100)})


def test_missing_manifest_counts_as_corrupt(tmp_path):
    cache = Cache(tmp_path)
    cache.get_or_compute("emb", {"k": 3}, lambda: {"x": torch.ones(3)})
    (cache.entry_dir("emb", cache.key("emb", {"k": 3})) / "manifest.json").unlink()
    with pytest.warns(UserWarning):
        t, _ = Cache(tmp_path).get_or_compute("emb", {"k": 3}, lambda: {"x": torch.ones(3)})
    assert torch.equal(t["x"], torch.ones(3))


def _race_worker(root: str, marker_dir: str, out: mp.Queue) -> None:
    cache = Cache(root)

    def compute():
        Path(marker_dir, f"computed-{mp.current_process().pid}").touch()
        time.sleep(1.0)  # hold the lock long enough for the other process to wait on it
        return {"x": torch.arange(10.0)}

    tensors, _ = cache.get_or_compute("emb", {"race": True}, compute)
    out.put(tensors["x"].tolist())


def test_two_processes_racing_write_once_and_both_read(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(str(tmp_path / "c"), str(markers), q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(list(markers.iterdir())) == 1, "the entry was computed more than once"
    assert results[0] == results[1] == list(range(10))
    entries = list((tmp_path / "c" / "emb").rglob("manifest.json"))
    assert len(entries) == 1


def test_put_stores_once_and_get_reads_it_without_computing(tmp_path):
    cache = Cache(tmp_path)
    parts = {"dataset": "d", "preprocess": "p"}
    assert cache.put("pixels", parts, {"pixels": torch.ones(2, 3)}, {"n": 2})
    assert not cache.put("pixels", parts, {"pixels": torch.zeros(2, 3)})  # already there: kept as written

    def boom():
        raise AssertionError("computed although stored")

    tensors, meta = Cache(tmp_path).get_or_compute("pixels", parts, boom)
    assert torch.equal(tensors["pixels"], torch.ones(2, 3)) and meta == {"n": 2}
