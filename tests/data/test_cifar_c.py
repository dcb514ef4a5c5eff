"""CIFAR-10-C reader: the release's layout (one uint8 .npy per corruption, 5 severities stacked, labels.npy)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from qclip.data import read_cifar_c
from qclip.data.cifar_c import CIFAR10_CLASSES
from qclip.data.config import DataConfig
from qclip.errors import DataFormatError, DatasetUnavailable

N = 4  # images per severity (10,000 in the release)


def _write(root, corruptions=("gaussian_noise", "defocus_blur"), n=N, size=8):
    root.mkdir(parents=True, exist_ok=True)
    labels = np.tile(np.arange(n) % 10, 5).astype(np.uint8)
    np.save(root / "labels.npy", labels)
    for k, c in enumerate(corruptions):
        arr = np.zeros((5 * n, size, size, 3), dtype=np.uint8)
        for r in range(5 * n):  # each pixel encodes (corruption, row): the test can tell rows apart
            arr[r] = (k * 100 + r) % 256
        np.save(root / f"{c}.npy", arr)
    return root


def test_reads_every_corruption_and_severity_in_the_release_order(tmp_path):
    ds = read_cifar_c(_write(tmp_path / "CIFAR-10-C"))
    assert len(ds) == 2 * 5 * N and ds.classnames == list(CIFAR10_CLASSES)
    assert ds.meta["corruptions"] == "defocus_blur,gaussian_noise" and ds.meta["per_severity"] == N
    row = ds.table[(ds.table.corruption == "gaussian_noise") & (ds.table.severity == 3)].iloc[1]
    assert row["index"] == 2 * N + 1 and row["label"] == (2 * N + 1) % N % 10
    i = int(row.name)
    img = ds.load_image(i)
    assert img.size == (8, 8) and img.mode == "RGB" and img.getpixel((0, 0)) == (2 * N + 1,) * 3  # gaussian_noise was written first (k = 0)
    assert ds.exclusions.empty


def test_subset_and_selection_options(tmp_path):
    root = _write(tmp_path / "c")
    ds = read_cifar_c(root, corruptions=["gaussian_noise"], severities=[1, 5])
    assert set(ds.table.corruption) == {"gaussian_noise"} and set(ds.table.severity) == {1, 5}
    sub = ds.subset("gaussian_noise", 5)
    assert len(sub) == N and sub.name == "cifar10c/gaussian_noise-5" and list(sub.table["index"]) == list(range(4 * N, 5 * N))
    assert sub.load_image(0).getpixel((0, 0)) == (4 * N,) * 3
    with pytest.raises(KeyError, match="severity 3"):
        ds.subset("gaussian_noise", 3)
    with pytest.raises(DataFormatError, match=r"no array for corruption\(s\) \['fog'\]; present: defocus_blur, gaussian_noise"):
        read_cifar_c(root, corruptions=["fog"])
    with pytest.raises(DataFormatError, match="severities must be"):
        read_cifar_c(root, severities=[0, 6])


def test_fingerprint_tracks_files_and_rows(tmp_path):
    root = _write(tmp_path / "c")
    a, b = read_cifar_c(root), read_cifar_c(root)
    assert a.fingerprint() == b.fingerprint()
    assert read_cifar_c(root, severities=[1]).fingerprint() != a.fingerprint()
    assert a.subset("defocus_blur", 1).fingerprint() != a.subset("defocus_blur", 2).fingerprint()
    np.save(root / "defocus_blur.npy", np.ones((5 * N, 8, 8, 3), dtype=np.uint8))
    os.utime(root / "defocus_blur.npy", ns=(1, 1))
    assert read_cifar_c(root).fingerprint() != a.fingerprint()


@pytest.mark.parametrize("bad, match", [
    (np.zeros((5 * N, 8, 8, 3), dtype=np.float32), r"expected uint8 \[20, H, W, 3\].*got dtype float32"),
    (np.zeros((5 * N - 1, 8, 8, 3), dtype=np.uint8), r"got dtype uint8 and shape \(19, 8, 8, 3\)"),
    (np.zeros((5 * N, 8, 8), dtype=np.uint8), r"shape \(20, 8, 8\)"),
])
def test_malformed_arrays_are_errors_naming_the_file_and_shape(tmp_path, bad, match):
    root = _write(tmp_path / "c")
    np.save(root / "defocus_blur.npy", bad)
    with pytest.raises(DataFormatError, match=match) as err:
        read_cifar_c(root)
    assert "defocus_blur.npy" in str(err.value)


def test_labels_must_be_five_severities_of_integers_in_range(tmp_path):
    root = _write(tmp_path / "c")
    np.save(root / "labels.npy", np.zeros(5 * N + 1, dtype=np.int64))
    with pytest.raises(DataFormatError, match="21 labels is not 5 severities x N"):
        read_cifar_c(root)
    np.save(root / "labels.npy", np.full(5 * N, 10, dtype=np.int64))
    with pytest.raises(DataFormatError, match=r"labels \[10\] are outside 0..9"):
        read_cifar_c(root)
    np.save(root / "labels.npy", np.zeros(5 * N, dtype=np.float64))
    with pytest.raises(DataFormatError, match="1-d integer array"):
        read_cifar_c(root)


def test_an_object_array_is_never_unpickled(tmp_path):
    root = _write(tmp_path / "c")
    flag = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (open, (str(flag), "w"))

    arr = np.empty(5 * N, dtype=object)
    arr[:] = [Boom() for _ in range(5 * N)]
    with open(root / "labels.npy", "wb") as f:
        np.lib.format.write_array(f, arr, allow_pickle=True)
    with pytest.raises(DataFormatError, match="labels.npy: labels.npy is an object array, which only unpickling could read; refused"):
        read_cifar_c(root)
    assert not flag.exists()


def test_missing_layout_and_truncated_file(tmp_path):
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        read_cifar_c(tmp_path / "nope")
    root = tmp_path / "c"
    root.mkdir()
    np.save(root / "labels.npy", np.zeros(5, dtype=np.int64))
    with pytest.raises(DatasetUnavailable, match=r"no corruption array"):
        read_cifar_c(root)
    (root / "fog.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataFormatError, match="fog.npy: corruption 'fog' cannot be read"):
        read_cifar_c(root)


def test_a_corruption_file_linked_outside_the_root_is_excluded(tmp_path):
    root = _write(tmp_path / "c")
    outside = _write(tmp_path / "elsewhere", corruptions=("fog",))
    (root / "fog.npy").symlink_to(outside / "fog.npy")
    with pytest.warns(UserWarning, match="path outside root"):
        ds = read_cifar_c(root)
    assert "fog" not in set(ds.table.corruption) and len(ds.exclusions) == 1
    with pytest.raises(DataFormatError, match="outside"):
        read_cifar_c(root, strict=True)


def test_configured_as_a_dataset_kind(tmp_path):
    root = _write(tmp_path / "c")
    cfg = tmp_path / "qclip.toml"
    cfg.write_text(f'[datasets.c10c]\nkind = "cifar-c"\nroot = "{root}"\nseverities = [2]\ncorruptions = ["defocus_blur"]\n')
    ds = DataConfig.load(cfg).get("c10c").load()
    assert len(ds) == N and set(ds.table.severity) == {2}
    cfg.write_text(f'[datasets.c10c]\nkind = "cifar-c"\nroot = "{root}"\nseverities = [7]\n')
    with pytest.raises(Exception, match="severities"):
        DataConfig.load(cfg)
