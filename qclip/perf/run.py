"""``qclip perf``: options and the runner (the CLI only adds the subparser and delegates here).

    qclip perf                         (a) embedding throughput vs a plain open_clip loop, (b) cold vs warm
                                       ``pytest bench``, (c) five families vs one evaluation per task
    qclip perf --throughput            (a) only;  --cold-warm (b) only;  --families (c) only
    qclip perf --table                 throughput / memory / weight bytes of models × quantizers
    qclip perf --simulate-paper-grid   the "You Never Know" grid, simulated at --fraction and projected
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import time
from pathlib import Path

__all__ = ["add_arguments", "run", "machine_info"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    # every value has a parser here (its form) or in qclip.cli's checks (what it names): see qclip.run.options
    from ..run.options import check_shell_words, parse_device, parse_fraction, parse_positive_int

    what = p.add_argument_group("what to measure (default: --throughput --cold-warm --families)")
    what.add_argument("--throughput", action="store_true", help="(a) qclip's embedding path vs a plain open_clip loop")
    what.add_argument("--cold-warm", action="store_true", help="(b) a cold `pytest bench` run vs a warm rerun")
    what.add_argument("--families", action="store_true",
                      help="(c) five benchmark families in qclip vs one evaluation per task (CLIP_benchmark style)")
    what.add_argument("--table", action="store_true", help="cost table of --models × --quantizers on --device")
    what.add_argument("--simulate-paper-grid", action="store_true",
                      help="time the 'You Never Know' grid at --fraction of the data and project it")
    p.add_argument("--device", metavar="DEVICE", type=parse_device, default="cpu",
                   help="cpu, cuda, cuda:N or auto. Default: %(default)r.")
    p.add_argument("--repeats", metavar="N", type=parse_positive_int, default=3, help="timed runs per measurement (median). "
                   "Default: %(default)r.")
    p.add_argument("--batch-size", metavar="N", type=parse_positive_int, default=None,
                   help="Default: 64 for (a) and the table, 256 for (c), 256 on CUDA / 32 on CPU for the grid.")
    p.add_argument("--model", metavar="SPEC", default="random:open_clip/ViT-B-32",
                   help="(a): model spec. Default: %(default)r.")
    p.add_argument("--images", metavar="N", type=parse_positive_int, default=128, help="(a), table: images. Default: %(default)r.")
    p.add_argument("--bench-args", metavar="ARGS", type=check_shell_words, default="",
                   help="(b): extra `pytest bench` arguments (one shell-quoted string), e.g. \"-n 2\".")
    p.add_argument("--cold", choices=("embeddings", "all"), default="embeddings",
                   help="(b): what a cold run starts without: 'embeddings' (world and weights prepared, no "
                        "pixels/embeddings) or 'all' (an empty cache: prepare inside the run). Default: %(default)r.")
    p.add_argument("--runs", metavar="N", type=parse_positive_int, default=1, help="(b): cold/warm pairs. Default: %(default)r.")
    p.add_argument("--families-model", metavar="SPEC", default="tiny:tiny-a", help="(c). Default: %(default)r.")
    p.add_argument("--families-quantizer", metavar="NAME", default="bnb-int8", help="(c). Default: %(default)r.")
    p.add_argument("--data", metavar="TOML", default=None, help="(c): dataset config (default: the synthetic world).")
    p.add_argument("--models", metavar="SPECS", default="random:open_clip/ViT-B-32,random:open_clip/ViT-B-16,"
                   "random:open_clip/ViT-L-14", help="table: comma-separated specs. Default: %(default)r.")
    p.add_argument("--quantizers", metavar="NAMES", default="fp32,fp16,bf16,bnb-int8,bnb-nf4,torch-dyn-int8",
                   help="table: comma-separated quantizer names. Default: %(default)r.")
    p.add_argument("--fraction", metavar="F", type=parse_fraction, default=0.02, help="grid: share of the images decoded. "
                   "Default: %(default)r.")
    p.add_argument("--workers", metavar="N", type=parse_positive_int, default=None, help="grid: decode processes (default: cores).")
    p.add_argument("--encode-images", metavar="N", type=parse_positive_int, default=None,
                   help="grid: images timed per architecture × setting (default: 16 on CPU, 4 batches on CUDA).")
    p.add_argument("--settings", metavar="NAMES", default="fp32,bnb-int8,bnb-nf4,torch-dyn-int8",
                   help="grid: settings timed. Default: %(default)r.")
    p.add_argument("--matmul-precision", metavar="P", choices=("highest", "high", "medium"), default="highest",
                   help="float32 matmul precision for every measurement ('high' = TF32 on Ampere/Hopper GPUs), "
                        "as --qclip-matmul-precision in pytest. Default: %(default)r.")
    p.add_argument("--compile", action="store_true",
                   help="table, grid: run each tower through torch.compile (as --qclip-compile in pytest); the "
                        "first, untimed pass compiles. Measure once with and once without for before/after.")
    p.add_argument("--json", metavar="PATH", default=None, help="write all results as JSON")
    p.add_argument("--markdown", metavar="PATH", default=None, help="write the summary as markdown")


def machine_info() -> dict:
    import os

    import torch

    info = {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        info["load_avg"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    return info


def _summary(results: dict) -> str:
    m = results["machine"]
    lines = [f"machine: {m['cpu']} × {m['cores']} cores{', ' + m['cuda'] if m.get('cuda') else ''}, torch "
             f"{m['torch']}, load average at start {', '.join(f'{x:.2f}' for x in m.get('load_avg', []))}", ""]
    if "throughput" in results:
        a = results["throughput"]
        lines.append(f"(a) qclip vs plain open_clip loop, {a['spec']}, {a['n_images']} images, batch "
                     f"{a['batch_size']}, {a['device']} (median of {len(a['encode']['plain_s'])}):")
        for k in ("end_to_end", "encode"):
            r = a[k]
            lines.append(f"    {k:<11} plain {r['plain_images_per_s']:8.1f} img/s  qclip {r['qclip_images_per_s']:8.1f} "
                         f"img/s  ratio {r['ratio']:.3f} (target >= 0.95)")
    if "cold_warm" in results:
        b = results["cold_warm"]
        lines.append(f"(b) pytest bench {' '.join(b['bench_args'])}: cold ({b['cold']}) "
                     f"{sorted(b['cold_s'])[len(b['cold_s']) // 2]:.1f} s, warm "
                     f"{sorted(b['warm_s'])[len(b['warm_s']) // 2]:.1f} s, warm/cold {b['ratio']:.3f} "
                     f"(target <= 0.10); exit codes {b['returncodes']}")
    if "families" in results:
        c = results["families"]
        lines.append(f"(c) {c['spec']} × {c['quantizer']}, {len(c['evaluations'])} evaluations × "
                     f"{len(c['variants'])} variants: qclip {min(c['qclip_s']):.1f} s, per task "
                     f"{min(c['per_task_s']):.1f} s, ratio {c['ratio']:.2f}x (target >= 3x)")
    if "table" in results:
        from .table import to_markdown

        lines += ["", to_markdown(results["table"])]
    if "grid" in results:
        from .grid import to_markdown

        lines += ["", to_markdown(results["grid"])]
    return "\n".join(lines)


def run(args) -> int:
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    log = lambda s: print(s, flush=True)  # noqa: E731
    chosen = [args.throughput, args.cold_warm, args.families, args.table, args.simulate_paper_grid]
    if not any(chosen):
        args.throughput = args.cold_warm = args.families = True
    import torch

    torch.set_float32_matmul_precision(args.matmul_precision)
    results: dict = {"machine": {**machine_info(), "matmul_precision": args.matmul_precision,
                                 "compile": bool(args.compile)}}
    if args.throughput:
        from .compare import embed_vs_plain

        results["throughput"] = embed_vs_plain(args.model, args.images, args.batch_size or 64, args.repeats,
                                               args.device, log=log)
    if args.families:
        from .compare import families_vs_per_task

        results["families"] = families_vs_per_task(args.families_model, args.families_quantizer, args.data,
                                                   args.device, args.batch_size or 256, max(1, args.repeats // 3),
                                                   log=log)
    if args.cold_warm:
        from .compare import cold_warm

        bench_args = shlex.split(args.bench_args)
        if args.device != "cpu":
            bench_args.append(f"--qclip-device={args.device}")
        if args.matmul_precision != "highest":
            bench_args.append(f"--qclip-matmul-precision={args.matmul_precision}")
        results["cold_warm"] = cold_warm(bench_args, args.runs, args.cold, log=log)
    if args.table:
        from .table import cost_table

        results["table"] = cost_table([s.strip() for s in args.models.split(",") if s.strip()],
                                      [q.strip() for q in args.quantizers.split(",") if q.strip()], args.device,
                                      args.batch_size or 64, args.images, args.images * 2, args.repeats, log=log,
                                      compile=args.compile)
    if args.simulate_paper_grid:
        from .grid import simulate_paper_grid

        results["grid"] = simulate_paper_grid(args.fraction, args.device,
                                              args.workers, args.batch_size, args.encode_images, None,
                                              max(1, min(args.repeats, 2)),
                                              settings=tuple(s.strip() for s in args.settings.split(",")), log=log,
                                              compile=args.compile)
    text = _summary(results)
    print("\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0
