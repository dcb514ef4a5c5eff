"""Published checksums of the reproducible tiny models: what ``qclip prepare`` compares its weights with.

Reproducible training (:mod:`.reproducible`) pins every library path we know to depend on the CPU, so two
machines with the same torch, open_clip and transformers versions and the same world should train the same
bits. ``published_checksums.json`` (beside this module) holds the checksums measured on named machines;
:func:`compare_with_published` says whether this cache's weights are that population, so a user learns on
their own machine, before gating anything, whether their numbers are the README's. A mismatch is not an
error: the weights are still a valid population, just another one (a baseline from elsewhere then warns,
see ``qclip.models.provenance``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

__all__ = ["published_records", "compare_with_published"]

_FILE = Path(__file__).with_name("published_checksums.json")
_KEYS = ("torch", "open_clip", "transformers", "world")


def published_records(path: str | Path = _FILE) -> list[dict]:
    """The records of ``published_checksums.json``: each has ``torch``, ``open_clip``, ``transformers``,
    ``world`` (the world's content digest), ``machine`` (where it was measured), ``date`` and ``sha256``
    (tiny model name -> weights sha256). A ValueError names the file and the record that is malformed."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    records = data.get("reproducible") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected an object with a list 'reproducible', got {type(data).__name__}")
    for i, rec in enumerate(records):
        missing = [k for k in (*_KEYS, "machine", "sha256") if k not in rec]
        if missing or not isinstance(rec.get("sha256"), dict):
            raise ValueError(f"{path}: record {i} lacks {', '.join(missing) or 'a sha256 object'}")
    return records


def compare_with_published(versions: Mapping[str, str], world_digest: str, checksums: Mapping[str, str],
                           records: list[dict] | None = None) -> str:
    """One line on how ``checksums`` (tiny name -> sha256, reproducible mode) compare with the published
    records for the same library ``versions`` (``torch``, ``open_clip``, ``transformers``) and world."""
    records = published_records() if records is None else records
    same = [r for r in records if all(str(r[k]) == str(versions.get(k)) for k in _KEYS[:3])
            and r["world"] == world_digest]
    if not same:
        v = ", ".join(f"{k} {versions.get(k)}" for k in _KEYS[:3])
        return (f"no published checksums for {v} and this world ({world_digest[:12]}): nothing to compare with "
                f"(docs/reproducibility.md)")
    for rec in same:
        diff = sorted(n for n, sha in checksums.items() if n in rec["sha256"] and rec["sha256"][n] != sha)
        known = [n for n in checksums if n in rec["sha256"]]
        if known and not diff:
            return (f"the same weights as published for {', '.join(known)} (measured on {rec['machine']}, "
                    f"{rec['date']}): this is the README's population")
    rec = same[0]
    diff = sorted(n for n, sha in checksums.items() if n in rec["sha256"] and rec["sha256"][n] != sha)
    return (f"WARNING: other weights than published for {', '.join(diff)} (published: {rec['machine']}, "
            f"{rec['date']}): a valid population but not the README's; compare only with baselines trained "
            f"on this machine kind, and tell us the CPU (docs/reproducibility.md)")
