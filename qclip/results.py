"""The results store: one SQLite file, one row per (run, cell, metric, subgroup).

Only the pytest controller writes (one writer process); readers (``qclip report``,
a second terminal) may open the same file at any time: the database runs in WAL
mode, so readers never block the writer. Every write is one transaction, so a run
that dies keeps every cell it finished.

A result row is a dict with the keys of :data:`ROW_COLUMNS`:
``run_id, cell_id, model, quantizer, benchmark, dataset, metric, subgroup`` (str,
``subgroup`` is ``''`` when none), ``value, reference, delta`` (float, NaN allowed;
``reference`` is the fp32 value of the same model/dataset/metric/subgroup and
``delta = value - reference``), ``n`` (int), ``status`` (one of :data:`STATUSES`)
and ``extra`` (a JSON-able dict or None). The quantizer ``'fp32'`` is the
reference itself.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from qclip.errors import QclipError

__all__ = [
    "ROW_COLUMNS",
    "SCHEMA_VERSION",
    "STATUSES",
    "ResultStore",
    "SchemaVersionError",
    "UnknownRunError",
    "normalize_rows",
    "read_rows",
    "write_rows_csv",
    "write_rows_json",
]

SCHEMA_VERSION = 1
STATUSES = ("passed", "failed", "skipped", "error")
FINISHED = ("passed", "failed")
_STR_COLS = ("run_id", "cell_id", "model", "quantizer", "benchmark", "dataset", "metric", "subgroup")
_FLOAT_COLS = ("value", "reference", "delta")
ROW_COLUMNS = (*_STR_COLS, *_FLOAT_COLS, "n", "status", "extra")
_CELL_COLUMNS = ("run_id", "cell_id", "status", "message", "duration", "updated")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created TEXT NOT NULL, meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rows (
    run_id TEXT NOT NULL, cell_id TEXT NOT NULL, model TEXT NOT NULL, quantizer TEXT NOT NULL,
    benchmark TEXT NOT NULL, dataset TEXT NOT NULL, metric TEXT NOT NULL, subgroup TEXT NOT NULL,
    value REAL, reference REAL, delta REAL, n INTEGER NOT NULL, status TEXT NOT NULL, extra TEXT,
    PRIMARY KEY (run_id, cell_id, metric, subgroup)
);
CREATE TABLE IF NOT EXISTS cells (
    run_id TEXT NOT NULL, cell_id TEXT NOT NULL, status TEXT NOT NULL, message TEXT,
    duration REAL, updated TEXT NOT NULL, PRIMARY KEY (run_id, cell_id)
);
"""


class UnknownRunError(QclipError, KeyError):
    """A run reference that names no run, or more than one."""

    def __str__(self) -> str:
        return self.args[0]


class SchemaVersionError(QclipError):
    """The store was written by a newer qclip with a schema this one cannot read."""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def _jsonable(obj):
    """Strict-JSON copy of ``obj``: NaN/inf become None, numpy scalars become Python ones."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _dumps(obj) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True)


def _float(x) -> float:
    return math.nan if x is None else float(x)


def _validate_row(row: Mapping) -> tuple:
    missing = [k for k in ROW_COLUMNS if k not in row and k not in ("delta", "extra")]
    if missing:
        raise ValueError(
            f"Expected a result row with keys {list(ROW_COLUMNS)}, but got one missing {missing}"
        )
    if row["status"] not in STATUSES:
        raise ValueError(f"Expected row status one of {STATUSES}, but got {row['status']!r}")
    value, reference = _float(row["value"]), _float(row["reference"])
    delta = _float(row["delta"]) if "delta" in row else value - reference
    extra = row.get("extra")
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"Expected row `extra` to be a dict or None, but got {type(extra).__name__}")
    strs = tuple("" if row[k] is None else str(row[k]) for k in _STR_COLS)
    return (
        *strs,
        value,
        reference,
        delta,
        int(row["n"]),
        row["status"],
        None if extra is None else _dumps(extra),
    )


def normalize_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Result rows in canonical form: :data:`ROW_COLUMNS` order and dtypes, sorted, fresh index.

    The store, the report's CSV/JSON and a baseline read back all pass through
    here, so equal rows compare equal whatever their source.
    """
    df = df.copy()
    for col in ROW_COLUMNS:
        if col not in df:
            df[col] = None if col == "extra" else ""
    for col in _STR_COLS + ("status",):
        df[col] = df[col].fillna("").astype(str)
    for col in _FLOAT_COLS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["n"] = pd.to_numeric(df["n"], errors="coerce").fillna(0).astype("int64")
    df["extra"] = df["extra"].map(_parse_extra).astype(object)
    order = ["run_id", "model", "quantizer", "benchmark", "dataset", "metric", "subgroup", "cell_id"]
    return df[list(ROW_COLUMNS)].sort_values(order, kind="stable").reset_index(drop=True)


def _parse_extra(x):
    if x is None or (isinstance(x, float) and math.isnan(x)) or x == "":
        return None
    if isinstance(x, str):
        return json.loads(x)
    return dict(x)


def write_rows_csv(df: pd.DataFrame, path: Path) -> None:
    """Write rows as CSV (``extra`` as a JSON string, NaN as an empty field)."""
    out = normalize_rows(df)
    out["extra"] = out["extra"].map(lambda e: "" if e is None else _dumps(e))
    out.to_csv(path, index=False)


def write_rows_json(df: pd.DataFrame, path: Path) -> None:
    """Write rows as a strict-JSON list of objects (long format; NaN as null)."""
    records = normalize_rows(df).to_dict(orient="records")
    Path(path).write_text(json.dumps(_jsonable(records), indent=1) + "\n", encoding="utf-8")


def read_rows(path: Path | str) -> pd.DataFrame:
    """Read rows written by :func:`write_rows_csv` or :func:`write_rows_json` (by suffix)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        df = pd.DataFrame.from_records(json.loads(path.read_text(encoding="utf-8")))
    elif path.suffix.lower() == ".csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        raise ValueError(f"Expected a .csv or .json results file, but got {str(path)!r}")
    return normalize_rows(df)


class ResultStore:
    """SQLite store of runs, result rows and cell statuses (schema in :data:`_SCHEMA`).

    ``path`` is a file path or a ``sqlite:///path`` URL; parent folders are
    created. One process writes, any number read; a connection belongs to the
    thread that opened it, so open one store per thread.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        text = str(path)
        if text.startswith("sqlite:///"):
            text = text[len("sqlite:///") :]
        self.path = Path(text)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._con.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a commit survives a crash of the process (not necessarily of the OS).
        self._con.execute("PRAGMA synchronous = NORMAL")
        try:
            self._init_schema()
        except BaseException:
            self._con.close()
            raise

    # -- lifecycle -----------------------------------------------------------------
    def _init_schema(self) -> None:
        with self._tx() as con:
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                con.execute(stmt)
            found = con.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if found is None:
                con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif found > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"Expected a results store of schema version <= {SCHEMA_VERSION}, but "
                    f"{self.path} has version {found}; upgrade qclip to read it."
                )

    def _tx(self):
        return _Transaction(self._con)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    @property
    def journal_mode(self) -> str:
        return self._con.execute("PRAGMA journal_mode").fetchone()[0]

    # -- writing -------------------------------------------------------------------
    def start_run(self, run_id: str, meta: Mapping | None = None) -> None:
        """Record a run and its metadata; starting an existing run (a resume) merges ``meta``."""
        meta = dict(meta or {})
        with self._tx() as con:
            old = con.execute("SELECT meta FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if old is None:
                con.execute("INSERT INTO runs VALUES (?, ?, ?)", (run_id, _now(), _dumps(meta)))
            else:
                merged = {**json.loads(old[0]), **meta}
                con.execute("UPDATE runs SET meta = ? WHERE run_id = ?", (_dumps(merged), run_id))

    def add_rows(self, rows: Iterable[Mapping]) -> int:
        """Insert rows in one transaction; a row with the same (run_id, cell_id, metric,
        subgroup) replaces the stored one, so re-adding or resuming never duplicates.
        Runs not yet started are created with empty metadata. Returns the row count."""
        values = [_validate_row(r) for r in rows]
        with self._tx() as con:
            for run_id in {v[0] for v in values}:
                con.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, '{}')", (run_id, _now()))
            con.executemany(
                f"INSERT OR REPLACE INTO rows ({', '.join(ROW_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(ROW_COLUMNS))})",
                values,
            )
        return len(values)

    def add_cell_status(
        self, run_id: str, cell_id: str, status: str, message: str = "", duration: float | None = None
    ) -> None:
        """Record (or replace) the status of one cell; call it for every cell, crashes included."""
        if status not in STATUSES:
            raise ValueError(f"Expected cell status one of {STATUSES}, but got {status!r}")
        with self._tx() as con:
            con.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, '{}')", (run_id, _now()))
            con.execute(
                "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    cell_id,
                    status,
                    message or "",
                    None if duration is None else float(duration),
                    _now(),
                ),
            )

    # -- reading -------------------------------------------------------------------
    def _frame(self, sql: str, params: tuple, columns: Iterable[str]) -> pd.DataFrame:
        cur = self._con.execute(sql, params)
        return pd.DataFrame.from_records(cur.fetchall(), columns=list(columns))

    def rows(self, run_id: str) -> pd.DataFrame:
        """All result rows of a run, normalized (see :func:`normalize_rows`)."""
        cols = ", ".join(ROW_COLUMNS)
        return normalize_rows(
            self._frame(f"SELECT {cols} FROM rows WHERE run_id = ?", (run_id,), ROW_COLUMNS)
        )

    def cells(self, run_id: str) -> pd.DataFrame:
        """One row per cell: run_id, cell_id, status, message, duration, updated."""
        df = self._frame(
            f"SELECT {', '.join(_CELL_COLUMNS)} FROM cells WHERE run_id = ? ORDER BY cell_id",
            (run_id,),
            _CELL_COLUMNS,
        )
        df["duration"] = pd.to_numeric(df["duration"], errors="coerce").astype(float)
        return df

    def finished_cells(self, run_id: str) -> set[str]:
        """Cells whose status is passed or failed: a resumed run skips them."""
        cur = self._con.execute(
            f"SELECT cell_id FROM cells WHERE run_id = ? AND status IN ({', '.join('?' * len(FINISHED))})",
            (run_id, *FINISHED),
        )
        return {r[0] for r in cur.fetchall()}

    def runs(self) -> pd.DataFrame:
        """Every run, newest first: run_id, created, n_cells, n_rows, meta (dict)."""
        df = self._frame(
            "SELECT r.run_id, r.created, "
            "(SELECT count(*) FROM cells c WHERE c.run_id = r.run_id), "
            "(SELECT count(*) FROM rows x WHERE x.run_id = r.run_id), r.meta "
            "FROM runs r ORDER BY r.created DESC, r.rowid DESC",
            (),
            ("run_id", "created", "n_cells", "n_rows", "meta"),
        )
        df["meta"] = df["meta"].map(json.loads)
        return df

    def meta(self, run_id: str) -> dict:
        """The metadata given to :meth:`start_run` (merged over resumes)."""
        row = self._con.execute("SELECT meta FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRunError(_unknown_message(run_id, self.path, self._run_ids()))
        return json.loads(row[0])

    def _run_ids(self) -> list[str]:
        return [r[0] for r in self._con.execute("SELECT run_id FROM runs ORDER BY created DESC, rowid DESC")]

    def resolve(self, run_ref: str) -> str:
        """A run id from an exact id, ``'latest'`` (the newest run) or a unique id prefix."""
        ids = self._run_ids()
        if run_ref in ids:
            return run_ref
        if run_ref == "latest":
            if not ids:
                raise UnknownRunError(f"Expected at least one run in {self.path}, but it has none.")
            return ids[0]
        matches = [i for i in ids if run_ref and i.startswith(run_ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UnknownRunError(
                f"Run prefix {run_ref!r} is ambiguous: it matches {', '.join(sorted(matches))}."
            )
        raise UnknownRunError(_unknown_message(run_ref, self.path, ids))


def _unknown_message(ref: str, path: Path, ids: list[str]) -> str:
    close = difflib.get_close_matches(ref, ids, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    recent = f" Newest runs: {', '.join(ids[:5])}." if ids else " The store has no runs."
    return f"Unknown run {ref!r} in {path}.{hint}{recent}"


class _Transaction:
    """``with`` block running its statements in one IMMEDIATE transaction."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, exc_type, exc, tb) -> None:
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")
