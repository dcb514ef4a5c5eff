"""The training modes of the tiny models: ``reproducible`` (portable kernels, the same bits on every x86_64
machine) and ``native`` (the machine's fastest kernels, bits that depend on its instruction set).

Floating point sums in another order give other bits, and torch, MKL, oneDNN and glibc's libm each pick
their code path by the CPU's instruction set. One step's difference grows over 400-750 training steps into
other weights, so on another machine ``native`` training gives another population (another fp32 top-1 in
the third decimal, sometimes another sign of a weak planted effect). ``reproducible`` trains in a
subprocess whose environment pins the most portable path of each (these variables are read when the
libraries load, so they cannot be set in a process that has imported torch):

======================================  ==================================================================
``ATEN_CPU_CAPABILITY=default``         torch's ATen CPU kernels: the baseline x86_64 build instead of the
                                        AVX2 / AVX512 ones (element-wise ops, reductions, softmax, norms)
``MKL_CBWR=COMPATIBLE``                 MKL's conditional numerical reproducibility: its SSE2 path on every
                                        Intel or AMD CPU (the matrix products)
``ONEDNN_MAX_CPU_ISA=SSE41`` and        oneDNN has no cross-machine reproducibility mode (its blocking also
``torch.backends.mkldnn.enabled=False`` follows cache sizes), so it is switched off: the patch convolution
                                        and GELU run in ATen and MKL; the ISA cap is a second fence
``GLIBC_TUNABLES=glibc.cpu.hwcaps=      libm's SSE2 variants of the double ``exp/log/pow/sin/cos`` instead
-AVX2,-FMA,-FMA4``                      of its FMA ones (they differ in the last bit): Python floats in the
                                        learning-rate schedule and AdamW's bias corrections
``OMP_NUM_THREADS=MKL_NUM_THREADS=1``   one thread (training is single-threaded anyway; CBWR requires a
                                        fixed thread count)
======================================  ==================================================================

A test (``tests/models/test_reproducible.py``) trains a few steps under every forced capability level of
ATen, MKL and oneDNN and checks that ``native`` gives several checksums and ``reproducible`` one. The
cost and the spread of ``native`` across machines are measured in ``docs/reproducibility.md``.

The mode is part of the tiny weights' cache key. Which mode ``qclip prepare`` and the pytest sessions use:
``qclip prepare --reproducible`` / ``--native`` if given, else ``$QCLIP_TINY_MODE``, else the mode the
cache's last ``qclip prepare`` used (the file ``<cache>/tiny-mode``), else :data:`DEFAULT_MODE`; so the
sessions load the weights ``qclip prepare`` trained.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch

__all__ = ["MODES", "DEFAULT_MODE", "MODE_ENV", "MODE_FILE", "PORTABLE_ENV", "tiny_mode", "remember_mode",
           "subprocess_env", "cpu_capability", "machine_info", "state_sha256", "train_in_subprocesses"]

MODES = ("reproducible", "native")
#: the mode of ``qclip prepare`` and of the pytest sessions when ``QCLIP_TINY_MODE`` is unset
DEFAULT_MODE = "reproducible"
MODE_ENV = "QCLIP_TINY_MODE"
#: the file in a cache folder holding the mode its last ``qclip prepare`` used
MODE_FILE = "tiny-mode"

#: the environment of a ``reproducible`` training process (see the module doc)
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "DNNL_MAX_CPU_ISA": "SSE41",  # the name oneDNN read before v2.5
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_GLIBC_HWCAPS = "glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4"
#: oneDNN's and MKL's own switches that a user's environment may hold (other ISA caps, verbose): removed
_DROPPED = ("MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE")


def tiny_mode(mode: str | None = None, cache_root: str | Path | None = None) -> str:
    """``mode`` if given, else ``$QCLIP_TINY_MODE``, else the mode recorded in ``cache_root`` by
    :func:`remember_mode`, else :data:`DEFAULT_MODE`; a ValueError names where a bad value came from."""
    recorded = Path(cache_root) / MODE_FILE if cache_root is not None else None
    if mode is not None:
        chosen, origin = mode, "mode"
    elif os.environ.get(MODE_ENV):
        chosen, origin = os.environ[MODE_ENV], f"${MODE_ENV}"
    elif recorded is not None and recorded.is_file():
        chosen, origin = recorded.read_text(encoding="utf-8").strip(), str(recorded)
    else:
        chosen, origin = DEFAULT_MODE, "DEFAULT_MODE"
    if chosen not in MODES:
        raise ValueError(f"Expected {origin} to be one of {', '.join(MODES)}, but got {chosen!r}")
    return chosen


def remember_mode(cache_root: str | Path, mode: str) -> None:
    """Record ``mode`` as the cache's training mode (what ``qclip prepare`` does), atomically."""
    path = Path(cache_root) / MODE_FILE
    tmp = path.with_name(f".{MODE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(tiny_mode(mode) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def subprocess_env(mode: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a training process in ``mode``: ``base`` (default ``os.environ``) as is for
    ``native``; with :data:`PORTABLE_ENV` and the libm tunable for ``reproducible``."""
    env = dict(os.environ if base is None else base)
    if tiny_mode(mode) == "native":
        return env
    for name in _DROPPED:
        env.pop(name, None)
    env.update(PORTABLE_ENV)
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t and not t.startswith("glibc.cpu.hwcaps=")]
    env["GLIBC_TUNABLES"] = ":".join([*tunables, _GLIBC_HWCAPS])
    return env


def cpu_capability() -> str:
    """The CPU capability of torch's ATen kernels in this process, as torch reports it (``AVX512``,
    ``AVX2``, ``DEFAULT``; ``ATEN_CPU_CAPABILITY`` lowers it)."""
    return str(torch.backends.cpu.get_cpu_capability())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def machine_info() -> dict[str, str]:
    """What decides the bits of ``native`` training on this machine: torch's CPU capability, the CPU, libc."""
    libc, libc_version = platform.libc_ver()
    return {"cpu_capability": cpu_capability(), "machine": platform.machine(), "cpu": _cpu_model(),
            "libc": f"{libc} {libc_version}".strip()}


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes (sorted by name): the weights' checksum,
    independent of the file format they are stored in."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def train_in_subprocesses(specs, world_root: str | Path, mode: str, jobs: int = 1, progress: bool = True,
                          env: Mapping[str, str] | None = None) -> dict[str, tuple[dict[str, torch.Tensor], dict]]:
    """Train each :class:`~qclip.models.tiny.model.TinySpec` in its own single-thread Python process in
    ``mode``, ``jobs`` at a time. ``env`` is the environment the mode starts from (default ``os.environ``).
    Returns name -> (state dict, info: mode, sha256, the trainer's ``cpu_capability`` and seconds)."""
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    mode = tiny_mode(mode)
    child_env = subprocess_env(mode, env)
    # the child imports qclip from where this process did (an uninstalled checkout included)
    package_root = str(Path(__file__).resolve().parents[3])
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, child_env.get("PYTHONPATH", "")) if p)
    out: dict[str, tuple[dict[str, torch.Tensor], dict]] = {}
    with tempfile.TemporaryDirectory(prefix="qclip-train-") as tmp:
        pending = list(specs)
        running: list[tuple[subprocess.Popen, object, Path, object]] = []
        bar = tqdm(total=len(pending), desc=f"train tiny models ({mode})", disable=not progress)
        try:
            while pending or running:
                while pending and len(running) < max(1, jobs):
                    spec = pending.pop(0)
                    weights = Path(tmp) / f"{spec.name}.safetensors"
                    log = open(Path(tmp) / f"{spec.name}.log", "w+b")  # noqa: SIM115 (closed below)
                    cmd = [sys.executable, "-m", "qclip.models.tiny.reproducible", "--mode", mode,
                           "--spec", json.dumps(asdict(spec)), "--world", str(world_root), "--out", str(weights)]
                    running.append((subprocess.Popen(cmd, env=child_env, stdout=log, stderr=subprocess.STDOUT),
                                    spec, weights, log))
                proc, spec, weights, log = running[0]
                for item in running:  # collect whichever finished first
                    if item[0].poll() is not None:
                        proc, spec, weights, log = item
                        break
                else:
                    time.sleep(0.05)
                    continue
                running.remove((proc, spec, weights, log))
                log.seek(0)
                text = log.read().decode(errors="replace")
                log.close()
                if proc.returncode != 0:
                    raise RuntimeError(f"training tiny:{spec.name} in {mode} mode failed (exit status "
                                       f"{proc.returncode}):\n{text[-3000:]}")
                info = json.loads(weights.with_suffix(".json").read_text())
                out[spec.name] = (load_file(str(weights)), info)
                bar.update(1)
        finally:
            for proc, _, _, log in running:
                proc.kill()
                proc.wait()
                log.close()
            bar.close()
    return {spec.name: out[spec.name] for spec in specs}


def _worker(argv: list[str] | None = None) -> int:
    """``python -m qclip.models.tiny.reproducible --mode M --spec JSON --world DIR --out FILE``: train one
    spec (the environment was set by the parent) and write its weights and an info JSON beside them."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m qclip.models.tiny.reproducible")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--spec", required=True, help="a TinySpec as JSON")
    p.add_argument("--world", required=True)
    p.add_argument("--out", required=True, help="weights file (.safetensors); the info goes to .json beside it")
    args = p.parse_args(argv)
    from safetensors.torch import save_file

    from .model import TinySpec, train_tiny

    if args.mode == "reproducible":
        if cpu_capability() != "DEFAULT":
            raise SystemExit(f"reproducible training needs ATEN_CPU_CAPABILITY=default before torch loads, but "
                             f"torch reports {cpu_capability()}")
        torch.backends.mkldnn.enabled = False
    spec = TinySpec(**json.loads(args.spec))
    marks: list[tuple[float, float]] = []  # (wall, CPU) after each step: the per-step cost, without start-up
    t0, c0 = time.perf_counter(), time.process_time()
    state = train_tiny(spec, args.world, progress=False, threads=1,
                       log=lambda step, loss: marks.append((time.perf_counter(), time.process_time())))
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    steps = len(marks) - 1
    per_step = {"step_seconds": round((marks[-1][0] - marks[0][0]) / steps, 4),
                "step_cpu_seconds": round((marks[-1][1] - marks[0][1]) / steps, 4)} if steps > 0 else {}
    out = Path(args.out)
    save_file(state, str(out))
    info = {"mode": args.mode, "sha256": state_sha256(state), "cpu_capability": cpu_capability(),
            "mkldnn": bool(torch.backends.mkldnn.enabled), "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2), **per_step}
    out.with_suffix(".json").write_text(json.dumps(info, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker())
