"""Where a run's numbers came from: the models' weights checksums, the tiny models' training mode, the world's
checksum and the machine's CPU capability as torch reports it (stored with the run as ``meta["provenance"]``,
compared with a baseline's by :mod:`qclip.expect.provenance`). Nothing is trained or downloaded here."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..cache import Cache
from ..errors import ModelUnavailable

__all__ = ["model_provenance", "run_provenance"]


def model_provenance(spec: str, cache: Cache, mode: str | None = None) -> dict:
    """``{"weights": checksum, ...}`` of one model spec. Tiny: the trained weights' sha256 with ``mode`` and the
    CPU capability of the machine that trained them (``{"weights": "not trained"}`` before training); other
    backends: their weights digest (:func:`qclip.models.loader.weights_digest_for`)."""
    from .loader import weights_digest_for
    from .specs import parse_spec

    parsed = parse_spec(spec)
    if parsed.backend == "tiny":
        from .tiny.weights import tiny_provenance

        prov = tiny_provenance(parsed.ref, cache, mode)
        if prov is None:
            return {"weights": "not trained"}
        return {"weights": prov["sha256"], "mode": prov["mode"], "trained_cpu_capability": prov["cpu_capability"]}
    try:
        return {"weights": weights_digest_for(parsed, cache)}
    except (ModelUnavailable, OSError) as exc:
        return {"weights": f"unavailable ({exc})"[:200]}


def run_provenance(specs: Iterable[str], cache: Cache, data: str | None = None, mode: str | None = None) -> dict:
    """The provenance of a run over ``specs``: this machine (torch's CPU capability, CPU, libc), the tiny
    training mode, the data (the synthetic world's content digest, or the dataset config ``data``) and
    :func:`model_provenance` per spec."""
    from ..data.synthetic.location import world_root
    from ..data.synthetic.world import read_manifest
    from .tiny.reproducible import machine_info, tiny_mode

    machine = machine_info()
    out: dict = {"cpu_capability": machine["cpu_capability"], "machine": dict(machine), "tiny_mode": tiny_mode(mode, cache.root)}
    if data:
        out["data"] = {"config": str(Path(data))}
    else:
        root = world_root(cache)
        try:
            digest = read_manifest(root)["content_digest"]
        except (OSError, ValueError, KeyError):
            digest = "not generated"
        out["data"] = {"world": root.name, "world_digest": digest}
    out["models"] = {spec: model_provenance(spec, cache, mode) for spec in sorted(set(specs))}
    return out
