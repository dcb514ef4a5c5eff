"""The report's "Data" section: what each dataset of the run read, and every record it left out.

The controller gathers one summary per dataset the run's rows use (:func:`collect_summaries`: the tables are
read, no pixel is decoded; datasets it already loaded cost nothing) and stores them with the run, under
:data:`META_KEY` of the run's metadata, so ``qclip report`` rebuilds the section from the store alone.
A summary is :meth:`qclip.data.base.ImageTable.exclusion_summary`: items, exclusions per reason (category)
and the first records of each reason, each naming its source file, row and offending value.
"""

from __future__ import annotations

import pandas as pd

from qclip.report.blocks import Details, Para, Section, Table

__all__ = ["META_KEY", "FIRST_ROWS", "collect_summaries", "data_section"]

META_KEY = "datasets"
#: records shown per exclusion reason
FIRST_ROWS = 5


def _used(rows: pd.DataFrame | None) -> set[str]:
    """Dataset names the rows refer to: their ``dataset`` and, for OOD cells, the OOD set in ``subgroup``."""
    if rows is None or rows.empty:
        return set()
    return set(rows["dataset"].astype(str)) | set(rows.loc[rows["benchmark"] == "ood", "subgroup"].astype(str))


def collect_summaries(rows: pd.DataFrame | None, session, first: int = FIRST_ROWS) -> dict[str, dict]:
    """``{name: summary}`` for each configured dataset the ``rows`` use, read through ``session.dataset``
    (a :class:`qclip.run.session.QclipSession`: its data config and its per-process dataset cache).

    Never raises: a dataset that cannot be read now gets ``{"name", "error"}`` instead of its counts."""
    used = _used(rows)
    if not used:
        return {}
    try:
        names = [n for n in session.data_config.names() if n in used]
    except Exception as exc:  # noqa: BLE001 - the report must be written whatever the config does
        return {"(data config)": {"name": "(data config)", "error": _one_line(exc)}}
    out: dict[str, dict] = {}
    for name in names:
        try:
            out[name] = session.dataset(name).exclusion_summary(first=first)
        except Exception as exc:  # noqa: BLE001
            out[name] = {"name": name, "error": _one_line(exc)}
    return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _counts(summary: dict) -> str:
    reasons = summary.get("reasons") or []
    return "; ".join(f"{r['count']} {r['reason']}" for r in reasons) if reasons else "none"


def data_section(meta: dict | None) -> Section:
    """One table of the run's datasets (items, exclusions per reason), then per dataset with exclusions the
    first records of each reason (collapsed in HTML)."""
    sec = Section("Data")
    summaries = (meta or {}).get(META_KEY)
    if not summaries:
        sec.blocks.append(Para("No dataset summary was stored with this run (its cells used no dataset, or it "
                               "was recorded by a qclip that did not store one)."))
        return sec
    overview = []
    for name in sorted(summaries):
        s = summaries[name]
        if "error" in s:
            overview.append({"Dataset": name, "Type": "—", "Items": "—", "Excluded": "—",
                             "Exclusions per reason": f"could not be read: {s['error']}", "Root": "—"})
            continue
        overview.append({"Dataset": name, "Type": str(s.get("type", "")), "Items": str(s.get("items", "")),
                         "Excluded": str(s.get("excluded", 0)), "Exclusions per reason": _counts(s),
                         "Root": str(s.get("root", ""))})
    total = sum(int(s.get("excluded", 0)) for s in summaries.values() if "error" not in s)
    sec.blocks.append(Table(pd.DataFrame(overview),
                            "What each dataset of the run read. Every record a reader skipped is counted here: "
                            "nothing is dropped silently." + (f" {total} record(s) excluded in all; the first of "
                                                              "each reason below." if total else "")))
    for name in sorted(summaries):
        s = summaries[name]
        if "error" in s or not s.get("reasons"):
            continue
        records = [{"Reason": r["reason"], "Source": rec["source"], "Row": str(rec["row"]) if rec["row"] >= 0 else "—",
                    "What": rec["reason"]}
                   for r in s["reasons"] for rec in r.get("first", [])]
        shown = len(records)
        sec.blocks.append(Details(
            f"{name}: {s['excluded']} excluded ({_counts(s)})",
            [Table(pd.DataFrame(records),
                   f"`{name}`: the first {FIRST_ROWS} records of each reason ({shown} of {s['excluded']}); `Row` "
                   "is the record's index in its source (CSV: data row after the header; JSON: index in its "
                   "list), — when the exclusion concerns a file or folder rather than a record.")]))
    return sec
