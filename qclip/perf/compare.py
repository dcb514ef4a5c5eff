"""The three side-by-side measurements of ``qclip perf``.

(a) :func:`embed_vs_plain` — qclip's embedding path vs a plain open_clip loop on the same model, batch
    size and images (JPEG files of real sizes, generated). Two ratios, each plain_time / qclip_time
    (1.0 = as fast; target >= 0.95): *end to end* (decode + preprocess + encode from the JPEGs, qclip with
    an empty cache so it also writes its pixel and embedding cache entries) and *encode* (the same
    preprocessed pixels in memory: the Embedder's batched loop vs ``for x in batches:
    module.encode_image(x)``). Runs alternate (plain, qclip, plain, ...) so background load hits both.
(b) :func:`cold_warm` — a full ``pytest bench`` run on a cold cache vs the same command again (warm).
    "cold" is ``embeddings`` (a fresh cache folder that links the prepared world and model weights of
    the main cache but holds no pixels, embeddings or model metadata) or ``all`` (an empty cache: the
    world is written and the tiny models trained inside the timed run).
(c) :func:`families_vs_per_task` — five benchmark families (zeroshot, retrieval, calibration, OOD,
    FairFace skew) on one (model, quantizer), each with its fp32 reference, as qclip computes them
    (one session, shared cache) vs one evaluation per (task, dataset, model variant) the way
    CLIP_benchmark runs them: each evaluation loads the model, decodes its dataset and encodes from
    scratch, then computes the same metric.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .throughput import median

__all__ = ["make_jpegs", "JpegSet", "embed_vs_plain", "cold_warm", "families_vs_per_task", "linked_cache",
           "EMBEDDING_KINDS", "FAMILIES"]

#: cache entries a "cold" run starts without (everything else, the world and weights, is linked in)
EMBEDDING_KINDS = ("pixels", "image-emb", "text-emb", "model-meta")
#: what a cold run (b) starts without: every product of a session (memoized report figures too)
COLD_KINDS = (*EMBEDDING_KINDS, "figures")
FAMILIES = ("zeroshot", "retrieval", "calibration", "ood", "fairface")


def _quiet() -> None:
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


# ----- images ---------------------------------------------------------------------------------------
def make_jpegs(root: str | Path, n: int, size: tuple[int, int] = (500, 375), seed: int = 0,
               quality: int = 90) -> list[Path]:
    """``n`` JPEG files of ``size`` (ImageNet's typical 500x375) with smooth content plus noise, so they
    compress like photographs (~50-150 kB), not like flat colour."""
    import numpy as np
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    paths = []
    for i in range(n):
        low = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((w, h), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-24, 25, (h, w, 3), dtype=np.int16)
        p = root / f"{i:07d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(p, quality=quality)
        paths.append(p)
    return paths


class JpegSet:
    """The minimal dataset interface the Embedder reads: ``name``, ``fingerprint()``, ``load_image(i)``."""

    def __init__(self, paths: Sequence[Path], name: str = "jpegs"):
        self.paths, self.name = list(paths), name

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(self.name.encode())
        for p in self.paths:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()

    def load_image(self, i: int):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return im.convert("RGB")


class _PlainFiles(torch.utils.data.Dataset):
    """What an open_clip user writes: open, convert, preprocess."""

    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        return self.preprocess(Image.open(self.paths[i]).convert("RGB"))


def _plain_encode(model):
    """``module.encode_image`` for open_clip models (the plain loop), else the wrapper's encoder."""
    mod = model.module
    return mod.encode_image if hasattr(mod, "encode_image") else model.encode_image


# ----- (a) ------------------------------------------------------------------------------------------
def embed_vs_plain(spec: str = "random:open_clip/ViT-B-32", n_images: int = 128, batch_size: int = 64,
                   repeats: int = 3, device: str = "cpu", workdir: str | Path | None = None, cache=None,
                   log: Callable[[str], None] = print) -> dict:
    """(a): end-to-end and encode-only ratios plain_time / qclip_time, medians of ``repeats`` runs."""
    from ..cache import Cache
    from ..embed import Embedder, EmbedKey
    from ..models import load_model

    _quiet()
    work = Path(workdir or tempfile.mkdtemp(prefix="qclip-perf-a-"))
    model = load_model(spec, cache or Cache(None), progress=False).to(device)
    model.module.eval()
    paths = make_jpegs(work / "jpegs", n_images)
    ds = JpegSet(paths)
    dev = torch.device(device)
    enc = _plain_encode(model)

    def plain_e2e():
        loader = torch.utils.data.DataLoader(_PlainFiles(paths, model.preprocess), batch_size=batch_size)
        feats = []
        with torch.no_grad():
            for x in loader:
                feats.append(enc(x.to(dev)).float().cpu())
        return torch.cat(feats)

    runs = {"n": 0}

    def qclip_e2e():
        runs["n"] += 1
        d = work / f"cache-{runs['n']}"
        emb = Embedder(Cache(d), device=device, batch_size=batch_size, progress=False)
        key = EmbedKey(spec, model.info.weights_digest, "fp32", "{}", device)
        out = emb.image_embeddings(key, lambda: model, ds)
        shutil.rmtree(d, ignore_errors=True)
        return out

    pix = torch.stack([model.preprocess(ds.load_image(i)) for i in range(len(ds))])
    emb = Embedder(Cache(work / "cache-enc"), device=device, batch_size=batch_size, progress=False)

    def plain_enc():
        feats = []
        with torch.no_grad():
            for s in range(0, pix.shape[0], batch_size):
                feats.append(enc(pix[s:s + batch_size].to(dev)).float().cpu())
        return torch.cat(feats)

    def qclip_enc():
        return emb._encode_images(model, pix, None, "perf")

    out: dict = {"spec": spec, "n_images": n_images, "batch_size": batch_size, "device": device,
                 "image_size": list(model.preprocess(ds.load_image(0)).shape)}
    for name, (fp, fq) in {"end_to_end": (plain_e2e, qclip_e2e), "encode": (plain_enc, qclip_enc)}.items():
        fp(), fq()  # warm-up (allocator, thread pools, file cache)
        tp, tq = [], []
        for _ in range(repeats):
            for f, acc in ((fp, tp), (fq, tq)):
                t0 = time.perf_counter()
                f()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                acc.append(time.perf_counter() - t0)
        a = fp()
        b = fq()
        out[name] = {"plain_s": tp, "qclip_s": tq, "plain_images_per_s": n_images / median(tp),
                     "qclip_images_per_s": n_images / median(tq), "ratio": median(tp) / median(tq),
                     "max_abs_diff": float((a - b).abs().max())}
        log(f"(a) {name}: plain {n_images / median(tp):.1f} img/s, qclip {n_images / median(tq):.1f} img/s, "
            f"ratio {median(tp) / median(tq):.3f}")
    if workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return out


# ----- (b) ------------------------------------------------------------------------------------------
def linked_cache(base: str | Path, dest: str | Path, drop: Sequence[str] = COLD_KINDS) -> Path:
    """A cache folder ``dest`` whose entries link to ``base``'s, less the kinds in ``drop`` (and the
    results store): the prepared world and weights without any embedding."""
    base, dest = Path(base), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if base.is_dir():
        for entry in base.iterdir():
            if entry.name in drop or entry.name.startswith("results") or entry.name.endswith(".lock"):
                continue
            (dest / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return dest


def _run(cmd: list[str], env: dict, log) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]
    log(f"    {dt:7.1f} s  rc={p.returncode}  {tail[0][:150]}")
    return dt, p.returncode, (p.stdout + p.stderr)[-3000:]


def cold_warm(bench_args: Sequence[str] = (), runs: int = 1, cold: str = "embeddings",
              base_cache: str | Path | None = None, workdir: str | Path | None = None,
              log: Callable[[str], None] = print) -> dict:
    """(b): ``pytest bench ARGS`` on a cold cache, then again warm; ``runs`` pairs, medians and ratio."""
    from ..cache import Cache

    if cold not in ("embeddings", "all"):
        raise ValueError(f"Expected cold 'embeddings' or 'all', but got {cold!r}")
    base = Path(base_cache) if base_cache else Cache(None).root
    work = Path(workdir or tempfile.mkdtemp(prefix="qclip-perf-b-"))
    colds, warms, rcs, tails = [], [], [], []
    for i in range(runs):
        d = work / f"run{i}"
        cache = d / "cache"
        if cold == "embeddings":
            linked_cache(base, cache)
        else:
            cache.mkdir(parents=True)
        cmd = [sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               f"--qclip-cache={cache}", f"--qclip-results={d / 'results.sqlite'}",
               f"--qclip-reports={d / 'reports'}", *bench_args]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        log(f"(b) run {i + 1}/{runs}: {' '.join(cmd[3:])}")
        for acc in (colds, warms):
            dt, rc, tail = _run(cmd, env, log)
            acc.append(dt)
            rcs.append(rc)
            tails.append(tail)
        if workdir is None:
            shutil.rmtree(d, ignore_errors=True)
    out = {"cold": cold, "bench_args": list(bench_args), "cold_s": colds, "warm_s": warms, "returncodes": rcs,
           "ratio": median(warms) / median(colds), "last_output": tails[-1][-1500:]}
    log(f"(b) cold {median(colds):.1f} s, warm {median(warms):.1f} s: warm/cold = {out['ratio']:.3f}")
    return out


# ----- (c) ------------------------------------------------------------------------------------------
class _PlainSource:
    """One evaluation's source, CLIP_benchmark-style: its own model, its own decode and encode, no cache
    (memoized only within the one evaluation, as CLIP_benchmark encodes a dataset once per run)."""

    def __init__(self, model, device: str, batch_size: int):
        self.model, self.device, self.batch_size = model, device, batch_size
        self._img: dict = {}
        self._txt: dict = {}

    def image_embeddings(self, dataset, transform=None, transform_id: str = "") -> torch.Tensor:
        k = (id(dataset), transform_id)
        if k not in self._img:
            from ..embed import _Preprocessed

            loader = torch.utils.data.DataLoader(_Preprocessed(dataset, self.model.preprocess),
                                                 batch_size=self.batch_size)
            feats = []
            with torch.no_grad():
                for x in loader:
                    if transform is not None:
                        x = transform(x)
                    feats.append(self.model.encode_image(x.to(self.device)).float().cpu())
            self._img[k] = torch.cat(feats)
        return self._img[k]

    def text_embeddings(self, texts) -> torch.Tensor:
        texts = list(texts)
        k = hash(tuple(texts))
        if k not in self._txt:
            feats = []
            with torch.no_grad():
                for s in range(0, len(texts), self.batch_size):
                    tok = self.model.tokenize(texts[s:s + self.batch_size]).to(self.device)
                    feats.append(self.model.encode_text(tok).float().cpu())
            self._txt[k] = torch.cat(feats)
        return self._txt[k]

    @property
    def logit_scale(self) -> float:
        return self.model.logit_scale


def _evaluations(data_config, datasets: Callable[[str], object]) -> list[tuple[str, Callable]]:
    """(label, fn(src)) for every (family, dataset) evaluation of :data:`FAMILIES` on the config."""
    from .. import tasks
    from ..tasks import calibration, fairface_skews, ood_detection

    evs: list[tuple[str, Callable]] = []
    names = {kind: data_config.names(kind) for kind in ("imagefolder", "coco", "ood", "fairface")}
    for n in names["imagefolder"]:
        evs.append((f"zeroshot/{n}", lambda s, n=n: tasks.zeroshot(s, datasets(n))))
    for n in names["coco"]:
        evs.append((f"retrieval/{n}", lambda s, n=n: tasks.retrieval(s, datasets(n))))
    for n in names["imagefolder"]:
        evs.append((f"calibration/{n}", lambda s, n=n: calibration(s, datasets(n))))
    if names["ood"]:
        for n in names["imagefolder"]:
            evs.append((f"ood/{n}", lambda s, n=n: ood_detection(s, datasets(n),
                                                                {o: datasets(o) for o in names["ood"]})))
    for n in names["fairface"]:
        evs.append((f"fairface/{n}", lambda s, n=n: fairface_skews(s, datasets(n))))
    return evs


def families_vs_per_task(spec: str, quantizer: str = "bnb-int8", data: str | None = None, device: str = "cpu",
                         batch_size: int = 256, repeats: int = 1, base_cache: str | Path | None = None,
                         log: Callable[[str], None] = print) -> dict:
    """(c): time of qclip (one session, cold embedding cache) vs the per-task baseline, and the ratio."""
    from ..cache import Cache
    from ..data.config import DataConfig
    from ..models import load_model
    from ..quantize import create_quantizer
    from ..run.session import EmbeddingSource, QclipSession, SessionOptions

    _quiet()
    base = Path(base_cache) if base_cache else Cache(None).root
    if data is None:
        from ..data.synthetic.location import ensure_world

        data = str(ensure_world(Cache(base), progress=False) / "qclip.toml")
    cfg = DataConfig.load(data)
    variants = ["fp32"] if quantizer == "fp32" else ["fp32", quantizer]
    tq, tb = [], []
    labels: list[str] = []
    for _ in range(repeats):
        # qclip: one session over a cache with the world and weights but no embeddings
        work = Path(tempfile.mkdtemp(prefix="qclip-perf-c-"))
        t0 = time.perf_counter()
        session = QclipSession(SessionOptions(models=spec, data=data, cache=str(linked_cache(base, work / "c")),
                                              device=device, batch_size=batch_size, progress=False))
        evs = _evaluations(session.data_config, session.dataset)
        for v in variants:
            src = EmbeddingSource(session, spec, v)
            for _, fn in evs:
                fn(src)
        tq.append(time.perf_counter() - t0)
        shutil.rmtree(work, ignore_errors=True)
        log(f"(c) qclip, {len(evs)} evaluations x {len(variants)} variants: {tq[-1]:.1f} s")
        # baseline: each evaluation loads the model, its data, decodes and encodes from scratch
        t0 = time.perf_counter()
        loaded: dict = {}

        def fresh_dataset(name, loaded=loaded):  # per evaluation: a fresh reader (CLIP_benchmark builds one)
            if name not in loaded:
                loaded[name] = cfg.get(name).load()
            return loaded[name]

        evs_b = _evaluations(cfg, fresh_dataset)
        labels = [lab for lab, _ in evs_b]
        for v in variants:
            for _lab, fn in evs_b:
                loaded.clear()
                model = load_model(spec, Cache(base), progress=False).to(device)
                if v != "fp32":
                    model = create_quantizer(v).quantize(model)
                fn(_PlainSource(model, device, batch_size))
                del model
        tb.append(time.perf_counter() - t0)
        log(f"(c) per-task baseline, {len(evs_b) * len(variants)} evaluations: {tb[-1]:.1f} s")
    out = {"spec": spec, "quantizer": quantizer, "data": data, "evaluations": labels, "variants": variants,
           "qclip_s": tq, "per_task_s": tb, "ratio": median(tb) / median(tq)}
    log(f"(c) per-task / qclip = {out['ratio']:.2f}x")
    return out
