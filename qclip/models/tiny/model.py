"""The embedded tiny CLIP population: small open_clip and transformers CLIPs trained on CPU.

Each :class:`TinySpec` fixes an architecture, a seed and a training mix of the synthetic
world (:mod:`qclip.data.synthetic`: sources ``wit``, ``laion``, ``datacomp``), so the
population varies in size, family, data and initialisation like the paper's models do.

* :func:`build_tiny_module` -- the untrained module (deterministic init from ``spec.seed``):
  ``open_clip.model.CLIP`` (standard GELU; open_clip's text tower defaults -- width 512,
  12 layers, 77 tokens -- are all overridden) or ``transformers.CLIPModel``
  (``hidden_act="gelu"``, the OpenAI BPE ids: bos 49406, eos 49407, pad 0, vocab 49408).
* :func:`tiny_tokenizer` -- open_clip's ``SimpleTokenizer`` (its BPE ships with open_clip).
* :func:`tiny_preprocess` -- open_clip's eval transform at 32 px with the OpenAI mean/std.
* :func:`train_tiny` -- contrastive (InfoNCE) training with a learned logit scale, AdamW and
  a warmup + cosine schedule; single-threaded and deterministic for a given spec and world on one
  machine (across machines in a process set up by :mod:`.reproducible`, which ``qclip prepare`` uses).
  :func:`train_tiny_many` trains several at once in worker processes (2 cores: ~5 min for all).

Use a trained module through the same calls as any CLIP of its family: open_clip
``module.encode_image(pixels)``, ``module.encode_text(tokens)``, ``module.logit_scale.exp()``;
transformers ``module.get_image_features(pixel_values=...).pooler_output`` and
``module.get_text_features(input_ids=...).pooler_output``.

``python -m qclip.models.tiny --check`` generates the world, trains every model and prints its
zero-shot top-1, retrieval R@5 and planted-effect numbers (see :func:`evaluate_tiny`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TinySpec", "TINY_MODELS", "build_tiny_module", "tiny_tokenizer", "tiny_preprocess", "train_tiny",
           "train_tiny_many", "tiny_features", "load_training_pool", "evaluate_tiny"]

VOCAB_SIZE = 49408
BOS, EOS, PAD = 49406, 49407, 0


@dataclass(frozen=True)
class TinySpec:
    """One tiny CLIP: architecture, initialisation seed and training recipe."""

    name: str
    family: str  # "open_clip" | "hf"
    source: str  # training mix of the synthetic world: "wit" | "laion" | "datacomp"
    seed: int
    image_size: int = 32
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_width: int = 64
    text_layers: int = 1
    text_heads: int = 2
    context_length: int = 16
    embed_dim: int = 64
    mlp_ratio: int = 4
    steps: int = 600
    batch_size: int = 256
    lr: float = 5e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    description: str = ""


def _spec(name: str, family: str, source: str, seed: int, description: str, **kw) -> tuple[str, TinySpec]:
    return name, TinySpec(name=name, family=family, source=source, seed=seed, description=description, **kw)


#: the population: 4 open_clip ViTs (two widths) and 2 transformers CLIPs, over the world's three
#: training mixes and six seeds. Steps are set so that training all six takes ~6 min on 2 CPU cores.
TINY_MODELS: dict[str, TinySpec] = dict([
    _spec("tiny-a", "open_clip", "wit", 0, "open_clip ViT w64, 2 vision + 1 text layers, WIT-like mix", steps=650),
    _spec("tiny-b", "open_clip", "laion", 1, "open_clip ViT w64, 2 vision + 1 text layers, LAION-like mix",
          steps=650),
    _spec("tiny-c", "open_clip", "datacomp", 2, "open_clip ViT w64, 2 vision + 1 text layers, DataComp-like mix"),
    _spec("tiny-d", "open_clip", "wit", 3, "open_clip ViT w96, 3 vision + 1 text layers, WIT-like mix",
          vision_width=96, vision_layers=3, vision_heads=3, embed_dim=96, steps=420, lr=4e-3),
    _spec("tiny-e", "hf", "laion", 4, "transformers CLIPModel w64, 2 vision + 1 text layers, LAION-like mix",
          steps=700, lr=3e-3, warmup_steps=25),
    _spec("tiny-f", "hf", "datacomp", 5, "transformers CLIPModel w64, 2 vision + 2 text layers, DataComp-like mix",
          text_layers=2, steps=750, lr=3e-3, warmup_steps=25),
])


# ----- construction ----------------------------------------------------------------------------
def build_tiny_module(spec: TinySpec) -> nn.Module:
    """The untrained module of ``spec``; the same spec always gives the same initial weights."""
    if spec.family not in ("open_clip", "hf"):
        raise ValueError(f"Expected family 'open_clip' or 'hf', but got {spec.family!r}")
    state = torch.random.get_rng_state()
    torch.manual_seed(spec.seed)
    try:
        return _build_open_clip(spec) if spec.family == "open_clip" else _build_hf(spec)
    finally:
        torch.random.set_rng_state(state)


def _build_open_clip(spec: TinySpec) -> nn.Module:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=spec.vision_layers, width=spec.vision_width,
                           head_width=spec.vision_width // spec.vision_heads, mlp_ratio=spec.mlp_ratio,
                           patch_size=spec.patch_size, image_size=spec.image_size)
    text = CLIPTextCfg(context_length=spec.context_length, vocab_size=VOCAB_SIZE, width=spec.text_width,
                       heads=spec.text_heads, layers=spec.text_layers, mlp_ratio=spec.mlp_ratio)
    return CLIP(spec.embed_dim, vision, text, quick_gelu=False)


def _build_hf(spec: TinySpec) -> nn.Module:
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={"vocab_size": VOCAB_SIZE, "hidden_size": spec.text_width,
                     "intermediate_size": spec.text_width * spec.mlp_ratio, "num_hidden_layers": spec.text_layers,
                     "num_attention_heads": spec.text_heads, "max_position_embeddings": spec.context_length,
                     "hidden_act": "gelu", "bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD},
        vision_config={"hidden_size": spec.vision_width, "intermediate_size": spec.vision_width * spec.mlp_ratio,
                       "num_hidden_layers": spec.vision_layers, "num_attention_heads": spec.vision_heads,
                       "image_size": spec.image_size, "patch_size": spec.patch_size, "hidden_act": "gelu"},
        projection_dim=spec.embed_dim,
    )
    return CLIPModel(config)


def tiny_tokenizer(spec: TinySpec) -> Callable[[list[str]], torch.Tensor]:
    """``texts -> LongTensor [N, context_length]`` with open_clip's SimpleTokenizer."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=spec.context_length)


def tiny_preprocess(spec: TinySpec) -> Callable:
    """The eval transform ``PIL image -> float tensor [3, S, S]`` (resize, centre crop, OpenAI mean/std)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.transform import image_transform

    return image_transform(spec.image_size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)


def tiny_features(spec: TinySpec, module: nn.Module, pixels: torch.Tensor | None = None,
                  tokens: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Un-normalised image and text features through the family's public calls."""
    img = txt = None
    if spec.family == "open_clip":
        img = module.encode_image(pixels) if pixels is not None else None
        txt = module.encode_text(tokens) if tokens is not None else None
    else:
        img = module.get_image_features(pixel_values=pixels).pooler_output if pixels is not None else None
        txt = module.get_text_features(input_ids=tokens).pooler_output if tokens is not None else None
    return img, txt


# ----- training --------------------------------------------------------------------------------
def load_training_pool(world_root: str | Path, source: str) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """``(images uint8 [N, S, S, 3], image index per row, caption per row)`` of one source."""
    import pandas as pd
    from safetensors.numpy import load_file

    root = Path(world_root) / "train"
    images = torch.from_numpy(load_file(str(root / "images.safetensors"))["images"])
    caps = pd.read_csv(root / "captions.csv", keep_default_na=False, dtype={"caption": str, "source": str})
    rows = caps[caps["source"] == source]
    if rows.empty:
        known = sorted(caps["source"].unique())
        raise ValueError(f"Expected a training source among {known}, but got {source!r}")
    return images, rows["index"].to_numpy(np.int64), rows["caption"].tolist()


def _tokenize_unique(tokenizer, captions: list[str]) -> torch.Tensor:
    uniq = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    table = tokenizer(list(uniq))
    return table[torch.tensor([uniq[c] for c in captions])]


def _normalize_pixels(batch_u8: torch.Tensor) -> torch.Tensor:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    x = batch_u8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(OPENAI_DATASET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        exempt = p.ndim < 2 or "logit_scale" in name or "embedding" in name
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_tiny(spec: TinySpec, world_root: str | Path, progress: bool = True,
               log: Callable[[int, float], None] | None = None,
               device: str | torch.device = "cpu", threads: int | None = 1) -> dict[str, torch.Tensor]:
    """Train ``spec`` on its source of the world at ``world_root``; returns the (CPU) state dict.

    CLIP's symmetric InfoNCE over each batch with a learned temperature (clamped to <= 100),
    AdamW (no decay on gains, biases, embeddings, temperature), linear warmup then cosine decay.
    ``log(step, loss)`` is called every step when given. The default ``device="cpu"`` is the
    reference (the cached weights); another device trains faster but to other bits. ``threads``
    sets torch's CPU threads for the run (restored after; ``None`` keeps torch's setting). One
    thread is the default: it makes the weights independent of the machine's core count, these
    models gain little from a second thread, and on a shared 2-core machine two-thread training
    was measured up to 10x slower per step than one thread. Train several models at once in
    separate processes instead (:func:`train_tiny_many`).
    """
    from tqdm.auto import tqdm

    images, row_image, captions = load_training_pool(world_root, spec.source)
    tokens = _tokenize_unique(tiny_tokenizer(spec), captions)
    module = build_tiny_module(spec).to(device)
    module.train()
    tokens = tokens.to(device)
    gen = torch.Generator().manual_seed(spec.seed + 1_000_003)
    opt = torch.optim.AdamW(_param_groups(module, spec.weight_decay), lr=spec.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        t = (step - spec.warmup_steps) / max(spec.steps - spec.warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    n = len(row_image)
    order, cursor = torch.randperm(n, generator=gen), 0
    labels = torch.arange(spec.batch_size, device=device)
    deterministic, n_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads is not None:
        torch.set_num_threads(threads)
    bar = tqdm(range(spec.steps), desc=f"train tiny:{spec.name}", disable=not progress, leave=False)
    try:
        for step in bar:
            if cursor + spec.batch_size > n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor:cursor + spec.batch_size]
            cursor += spec.batch_size
            pixels = _normalize_pixels(images[torch.from_numpy(row_image[idx.numpy()])].to(device))
            img, txt = tiny_features(spec, module, pixels, tokens[idx.to(device)])
            logits = module.logit_scale.exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
            loss = (F.cross_entropy(logits, labels[:len(idx)]) + F.cross_entropy(logits.T, labels[:len(idx)])) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                module.logit_scale.clamp_(0, math.log(100))
            if log is not None:
                log(step, loss.item())
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(n_threads)
        bar.close()
    module.eval()
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def _train_one(spec: TinySpec, world_root: str) -> dict[str, torch.Tensor]:
    return train_tiny(spec, world_root, progress=False, threads=1)


def train_tiny_many(specs: list[TinySpec], world_root: str | Path, jobs: int = 2,
                    progress: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """Train several specs, ``jobs`` at a time in single-thread worker processes (the same
    weights as :func:`train_tiny` with ``threads=1``). Returns name -> state dict."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    out: dict[str, dict[str, torch.Tensor]] = {}
    with ProcessPoolExecutor(max(1, jobs), mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_train_one, spec, str(world_root)): spec.name for spec in specs}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="train tiny models", disable=not progress):
            out[futures[fut]] = fut.result()
    return {spec.name: out[spec.name] for spec in specs}


# ----- evaluation (the slow acceptance check) -----------------------------------------------------
@torch.no_grad()
def _encode_images(spec, module, ds, batch: int = 512) -> torch.Tensor:
    pre = tiny_preprocess(spec)
    out = []
    for i in range(0, len(ds), batch):
        px = torch.stack([pre(ds.load_image(j)) for j in range(i, min(i + batch, len(ds)))])
        out.append(F.normalize(tiny_features(spec, module, pixels=px)[0].float(), dim=-1))
    return torch.cat(out)


@torch.no_grad()
def _encode_texts(spec, module, texts: list[str]) -> torch.Tensor:
    return F.normalize(tiny_features(spec, module, tokens=tiny_tokenizer(spec)(texts))[1].float(), dim=-1)


def _classifier(spec, module, classnames, templates) -> torch.Tensor:
    w = torch.stack([_encode_texts(spec, module, [t.replace("{}", c) for t in templates]).mean(0) for c in classnames])
    return F.normalize(w, dim=-1)


def _auroc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    return float((pos[:, None] > neg[None, :]).float().mean() + 0.5 * (pos[:, None] == neg[None, :]).float().mean())


def evaluate_tiny(spec: TinySpec, module: nn.Module, world_root: str | Path) -> dict:
    """fp32 numbers of a trained tiny model on the world, read through qclip's dataset readers.

    ``top1`` / ``shift_top1``: zero-shot (mean of normalised template embeddings per class);
    ``image_R@5`` / ``text_R@5``: COCO-format retrieval; ``facet``: per planted class, the
    recall@1 disparity on its planted pair (expected sign in ``world.json``) and, per pair, the
    mean |disparity| of the unplanted classes; ``fairface``: per planted concept, Skew@k of its
    planted values (expected > 0) averaged over templates, and the unplanted concepts' mean Skew@k
    of the same values (the planted one should exceed it);
    ``worst_group``: zero-shot worst-group accuracy on the spurious test split; ``ood_auroc``: MCM.
    """
    from qclip.data.config import DataConfig
    from qclip.data.synthetic import read_manifest

    root = Path(world_root)
    cfg, manifest = DataConfig.load(root / "qclip.toml"), read_manifest(root)
    module.eval()
    res: dict = {}
    inet = cfg.get("synth-imagenet").load()
    w = _classifier(spec, module, inet.classnames, inet.templates)
    x_in = _encode_images(spec, module, inet)
    res["top1"] = float(((x_in @ w.T).argmax(1).numpy() == inet.table["label"].to_numpy()).mean())
    shift = cfg.get("synth-imagenet-shift").load()
    res["shift_top1"] = float(((_encode_images(spec, module, shift) @ w.T).argmax(1).numpy()
                               == shift.table["label"].to_numpy()).mean())
    ood = _encode_images(spec, module, cfg.get("synth-ood").load())
    mcm = lambda x: (x @ w.T).softmax(-1).max(-1).values  # noqa: E731
    res["ood_auroc"] = _auroc(mcm(x_in), mcm(ood))
    coco = cfg.get("synth-coco").load()
    xi, xt = _encode_images(spec, module, coco), _encode_texts(spec, module, coco.captions["caption"].tolist())
    owner = torch.tensor(coco.captions["image_index"].to_numpy())
    sims = xt @ xi.T
    res["image_R@5"] = float((sims.topk(5, dim=1).indices == owner[:, None]).any(1).float().mean())
    top_txt = owner[sims.T.topk(5, dim=1).indices]
    res["text_R@5"] = float((top_txt == torch.arange(len(xi))[:, None]).any(1).float().mean())
    res["facet"] = _facet_numbers(spec, module, cfg.get("synth-facet").load(), manifest)
    res["fairface"] = _fairface_numbers(spec, module, cfg.get("synth-fairface").load(), manifest)
    sp = cfg.get("synth-spurious").load()
    pred = (_encode_images(spec, module, sp) @ _classifier(spec, module, sp.classnames, sp.templates).T).argmax(1)
    correct = pred.numpy() == sp.table["label"].to_numpy()
    groups = {int(g): float(correct[sp.table["group"].to_numpy() == g].mean()) for g in sorted(sp.groups)}
    res["group_acc"] = groups
    res["worst_group"] = min(groups, key=groups.get)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}


_GROUP_COLUMN = {"masc": "gender", "fem": "gender", "lighter": "skin_group", "darker": "skin_group",
                 "young": "age", "middle": "age", "older": "age"}


def _facet_numbers(spec, module, ds, manifest) -> dict:
    pred = (_encode_images(spec, module, ds) @ _classifier(spec, module, ds.classnames, ds.templates).T).argmax(1)
    t = ds.table.assign(hit=pred.numpy() == ds.table["label"].to_numpy())

    def disparity(cls: str, pair) -> float:
        rec = [t[(t["class1"] == cls) & (t[_GROUP_COLUMN[g]] == g)]["hit"].mean() for g in pair]
        return float(rec[0] - rec[1])

    out = {"top1": float(t["hit"].mean()), "planted": {}, "unplanted_mean_abs": {}}
    for p in manifest["planted"]["facet"]:
        out["planted"][p["class"]] = {"pair": "-".join(p["disparity"]["groups"]),
                                      "disparity": round(disparity(p["class"], p["disparity"]["groups"]), 4),
                                      "expected_sign": p["disparity"]["expected_sign"]}
    for pair in {tuple(p["disparity"]["groups"]) for p in manifest["planted"]["facet"]}:
        vals = [abs(disparity(c, pair)) for c in manifest["unplanted"]["facet"]]
        out["unplanted_mean_abs"]["-".join(pair)] = round(float(np.mean(vals)), 4)
    return out


def _fairface_numbers(spec, module, ds, manifest) -> dict:
    x = _encode_images(spec, module, ds)
    k = min(manifest["recommended"]["fairface_k"], len(ds))
    pt = ds.prompt_table
    sims = _encode_texts(spec, module, pt["prompt"].tolist()) @ x.T
    top = sims.topk(k, dim=1).indices.numpy()

    def skew(concept: str, column: str, values: list) -> float:
        member = ds.table[column].isin(values).to_numpy()
        desired = member.mean()
        rows = np.flatnonzero(pt["concept"].to_numpy() == concept)
        return float(np.mean([math.log(max(member[top[r]].mean(), 1 / k) / desired) for r in rows]))

    out = {"k": k, "planted": {}, "unplanted_mean": {}}
    for p in manifest["planted"]["fairface"]:
        out["planted"][p["concept"]] = round(skew(p["concept"], p["fairface_column"], p["fairface_values"]), 4)
        vals = [skew(c, p["fairface_column"], p["fairface_values"]) for c in manifest["unplanted"]["fairface"]]
        out["unplanted_mean"][p["concept"]] = round(float(np.mean(vals)), 4)
    return out


def _check_one(name: str, world: str, threads: int, weights: str | None, mode: str = "native") -> dict:
    from safetensors.torch import load_file, save_file

    spec = TINY_MODELS[name]
    path = Path(weights) / f"{name}.safetensors" if weights else None
    res: dict = {}
    if path is not None and path.is_file():
        state = load_file(str(path))
        res["weights"] = f"loaded {path}"
    elif mode == "reproducible":  # trained through qclip.models.tiny.reproducible, which imports this module
        raise SystemExit("--mode reproducible: train with `qclip prepare --reproducible`, then pass --weights")
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        state = train_tiny(spec, world, progress=False, threads=threads)
        res = {"train_seconds": round(time.perf_counter() - t0, 1),
               "train_cpu_seconds": round(time.process_time() - c0, 1)}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(state, str(path))
    module = build_tiny_module(spec)
    module.load_state_dict(state)
    return {**res, **evaluate_tiny(spec, module.eval(), world)}


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import os
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    p = argparse.ArgumentParser(prog="python -m qclip.models.tiny", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="generate the world, train and evaluate every model")
    p.add_argument("--world", metavar="DIR", default=".qclip-cache/world-check",
                   help="world folder (generated if incomplete). Default: %(default)r.")
    p.add_argument("--size", default="default", metavar="SIZE", help="world size. Default: %(default)r.")
    p.add_argument("--models", default=",".join(TINY_MODELS), metavar="NAMES",
                   help="comma-separated tiny model names. Default: all.")
    p.add_argument("--jobs", type=int, default=2, metavar="N",
                   help="models trained at once, one process each. Default: %(default)r.")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads per training process. Default: %(default)r.")
    p.add_argument("--mode", choices=("native", "reproducible"), default="native",
                   help="training mode (qclip.models.tiny.reproducible). Default: %(default)r.")
    p.add_argument("--weights", metavar="DIR", help="save trained weights there; reuse the ones found there")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = p.parse_args(argv)
    if not args.check:
        p.print_help()
        return 0
    from qclip.data.synthetic import generate_world

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    t0 = time.perf_counter()
    generate_world(args.world, seed=0, size=args.size, progress=True)
    print(f"world: {args.world} ({time.perf_counter() - t0:.1f} s)", flush=True)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    results, t0 = {}, time.perf_counter()
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {n: pool.submit(_check_one, n, args.world, args.threads, args.weights, args.mode) for n in names}
        for name, fut in futures.items():
            results[name] = fut.result()
            print(json.dumps({name: results[name]}), flush=True)
    wall = time.perf_counter() - t0
    print(f"trained and evaluated {len(names)} models in {wall:.0f} s wall ({args.jobs} jobs x {args.threads} "
          f"threads); training CPU time {sum(r.get('train_cpu_seconds', 0) for r in results.values()):.0f} s; "
          f"load average now {os.getloadavg()[0]:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
