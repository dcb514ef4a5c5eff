"""qclip.results: the SQLite store, its idempotence, WAL mode and concurrent readers."""

from __future__ import annotations

import math
import sqlite3
import threading

import numpy as np
import pandas as pd
import pytest

from qclip.results import (
    ROW_COLUMNS,
    SCHEMA_VERSION,
    ResultStore,
    SchemaVersionError,
    UnknownRunError,
    normalize_rows,
    read_rows,
    write_rows_csv,
    write_rows_json,
)


def make_row(
    run_id="r1",
    cell="test_zeroshot[tiny:a-nf4-synth]",
    metric="top1",
    subgroup="",
    value=0.7,
    reference=0.72,
    **kw,
):
    row = dict(
        run_id=run_id,
        cell_id=cell,
        model="tiny:a",
        quantizer="bnb-nf4",
        benchmark="zeroshot",
        dataset="synthimagenet",
        metric=metric,
        subgroup=subgroup,
        value=value,
        reference=reference,
        delta=value - reference,
        n=500,
        status="passed",
        extra=None,
    )
    row.update(kw)
    return row


@pytest.fixture
def store(tmp_path):
    s = ResultStore(tmp_path / "sub" / "results.sqlite")
    yield s
    s.close()


def _rows():
    return [
        make_row(),
        make_row(metric="top5", value=0.9, reference=0.91, extra={"classes": 10, "note": "x"}),
        make_row(
            cell="test_facet[tiny:a-nf4-synthfacet]",
            benchmark="facet",
            dataset="synthfacet",
            metric="max_disparity@1",
            subgroup="gender",
            value=0.05,
            reference=0.04,
        ),
        make_row(
            cell="test_calib[tiny:a-nf4-synth]",
            benchmark="calibration",
            metric="ece",
            value=float("nan"),
            reference=0.1,
            delta=float("nan"),
        ),
    ]


def test_rows_round_trip(store):
    store.start_run("r1", {"qclip_version": "0.1.0", "libraries": {"torch": "2.5"}, "device": "cpu"})
    assert store.add_rows(_rows()) == 4
    got = store.rows("r1")
    assert list(got.columns) == list(ROW_COLUMNS)
    expected = normalize_rows(pd.DataFrame(_rows()))
    pd.testing.assert_frame_equal(got, expected)
    assert math.isnan(got.loc[got.metric == "ece", "value"].item())
    assert got.loc[got.metric == "top5", "extra"].item() == {"classes": 10, "note": "x"}
    assert store.meta("r1") == {"qclip_version": "0.1.0", "libraries": {"torch": "2.5"}, "device": "cpu"}


def test_add_rows_is_idempotent(store):
    store.add_rows(_rows())
    store.add_rows(_rows())
    assert len(store.rows("r1")) == 4
    # A rerun of a cell replaces its values.
    store.add_rows([make_row(value=0.5)])
    got = store.rows("r1")
    assert len(got) == 4
    assert got.loc[got.metric == "top1", "value"].item() == 0.5


def test_delta_computed_when_absent(store):
    row = make_row(value=0.6, reference=0.65)
    del row["delta"], row["extra"]
    store.add_rows([row])
    assert store.rows("r1")["delta"].item() == pytest.approx(-0.05)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        ({"status": "ok"}, ValueError, "Expected row status"),
        ({"extra": [1, 2]}, TypeError, "Expected row `extra`"),
    ],
)
def test_add_rows_validates(store, bad, exc, match):
    with pytest.raises(exc, match=match):
        store.add_rows([make_row(**bad)])
    row = make_row()
    del row["metric"]
    with pytest.raises(ValueError, match="missing \\['metric'\\]"):
        store.add_rows([row])
    assert store.rows("r1").empty  # nothing half-written


def test_wal_mode_and_schema_version(store):
    assert store.journal_mode == "wal"
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    con.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(SchemaVersionError, match="upgrade qclip"):
        ResultStore(store.path)


def test_cell_status_and_finished_cells(store):
    store.add_cell_status("r1", "c-pass", "passed", "", 1.5)
    store.add_cell_status("r1", "c-fail", "failed", "top1 dropped 0.05 > 0.01", 2.0)
    store.add_cell_status("r1", "c-skip", "skipped", "weights not found in ~/.cache", 0.0)
    store.add_cell_status("r1", "c-crash", "error", "RuntimeError: CUDA OOM")
    cells = store.cells("r1")
    assert set(cells.cell_id) == {"c-pass", "c-fail", "c-skip", "c-crash"}
    assert cells.set_index("cell_id").loc["c-crash", "status"] == "error"
    assert math.isnan(cells.set_index("cell_id").loc["c-crash", "duration"])
    assert store.finished_cells("r1") == {"c-pass", "c-fail"}
    # A resumed cell that now passes replaces its status.
    store.add_cell_status("r1", "c-crash", "passed", "", 3.0)
    assert store.finished_cells("r1") == {"c-pass", "c-fail", "c-crash"}
    assert len(store.cells("r1")) == 4
    with pytest.raises(ValueError, match="Expected cell status"):
        store.add_cell_status("r1", "c", "crashed")


def test_runs_and_resolve(store):
    for run in ("20240101-aaa", "20240102-abc", "20240103-bcd"):
        store.start_run(run, {"run": run})
    store.add_rows([make_row(run_id="20240102-abc")])
    runs = store.runs()
    assert list(runs.run_id) == ["20240103-bcd", "20240102-abc", "20240101-aaa"]
    assert runs.set_index("run_id").loc["20240102-abc", "n_rows"] == 1
    assert store.resolve("latest") == "20240103-bcd"
    assert store.resolve("20240102-abc") == "20240102-abc"
    assert store.resolve("20240103") == "20240103-bcd"
    with pytest.raises(UnknownRunError, match="ambiguous"):
        store.resolve("2024010")
    with pytest.raises(UnknownRunError, match="Unknown run 'nope'"):
        store.resolve("nope")
    with pytest.raises(KeyError):
        store.meta("nope")


def test_resolve_latest_on_empty_store(store):
    with pytest.raises(UnknownRunError, match="has none"):
        store.resolve("latest")


def test_start_run_twice_merges_meta(store):
    store.start_run("r1", {"a": 1, "b": 2})
    store.start_run("r1", {"b": 3, "resumed": True})
    assert store.meta("r1") == {"a": 1, "b": 3, "resumed": True}
    assert len(store.runs()) == 1


def test_sqlite_url_path(tmp_path):
    with ResultStore(f"sqlite:///{tmp_path / 'u.db'}") as s:
        s.add_rows([make_row()])
    assert (tmp_path / "u.db").exists()


def test_reader_and_writer_concurrently(tmp_path):
    path = tmp_path / "shared.sqlite"
    reader = ResultStore(path)
    errors, seen = [], []

    def write():  # the writer lives in its own thread with its own connection
        try:
            writer = ResultStore(path)
            writer.start_run("r1", {})
            for i in range(40):
                writer_rows = [make_row(cell=f"c{i}", metric=m) for m in ("top1", "top5")]
                writer.add_rows(writer_rows)
                writer.add_cell_status("r1", f"c{i}", "passed", "", 0.01)
            writer.close()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    thread = threading.Thread(target=write)
    thread.start()
    while thread.is_alive():
        n = len(reader.rows("r1"))
        seen.append(n)
        assert n % 2 == 0  # a transaction is all or nothing
    thread.join()
    assert not errors
    assert len(reader.rows("r1")) == 80
    assert len(reader.finished_cells("r1")) == 40
    assert seen == sorted(seen)
    reader.close()


def test_file_round_trip(tmp_path):
    df = normalize_rows(pd.DataFrame(_rows()))
    write_rows_csv(df, tmp_path / "results.csv")
    write_rows_json(df, tmp_path / "results.json")
    pd.testing.assert_frame_equal(read_rows(tmp_path / "results.csv"), df)
    pd.testing.assert_frame_equal(read_rows(tmp_path / "results.json"), df)
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        read_rows(tmp_path / "results.txt")


def test_numpy_scalars_accepted(store):
    store.add_rows(
        [
            make_row(
                value=np.float32(0.5),
                reference=np.float64(0.6),
                delta=np.float64(-0.1),
                n=np.int64(7),
                extra={"v": np.float64(1.5), "bad": float("inf")},
            )
        ]
    )
    got = store.rows("r1")
    assert got["n"].item() == 7 and got["extra"].item() == {"v": 1.5, "bad": None}
