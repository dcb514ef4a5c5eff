"""The ``qclip`` command: prepare, list, report, gate.

    qclip prepare                 write the synthetic world and train the tiny population (cached)
    qclip list --models           model specs with availability (and the tiny models' fp32 numbers)
    qclip list --quantizers       quantizers with availability and the reason when unavailable
    qclip list --datasets         configured datasets with availability
    qclip report RUN              regenerate reports/<run>/ from the results store
    qclip gate --baseline B ...   compare a run to a baseline; exit 1 on a regression
    qclip perf [...]              throughput vs a plain loop, cold vs warm, families vs per task, grid
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser", "parse_args"]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="Cache folder. Default: $QCLIP_CACHE or ~/.cache/qclip.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qclip", description="qclip: what quantization does to CLIP models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="write the synthetic world and train the tiny model population")
    _add_common(p)
    p.add_argument("--models", default="tiny", metavar="NAMES",
                   help="Comma-separated tiny model names, or 'tiny' for all. Default: %(default)r.")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--reproducible", dest="mode", action="store_const", const="reproducible",
                      help="train with the portable kernels of torch, MKL, oneDNN and libm, in subprocesses: the "
                           "same weights on every x86_64 machine (the default unless $QCLIP_TINY_MODE says native)")
    mode.add_argument("--native", dest="mode", action="store_const", const="native",
                      help="train with this machine's fastest kernels (weights that depend on its CPU); pytest "
                           "sessions use these weights when QCLIP_TINY_MODE=native")

    p = sub.add_parser("list", help="list models, quantizers or datasets with their availability")
    _add_common(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--models", nargs="?", const="tiny,paper,paper-hf", metavar="SPECS",
                      help="Model specs or sets to list. Default: tiny,paper,paper-hf.")
    what.add_argument("--quantizers", action="store_true")
    what.add_argument("--datasets", action="store_true")
    p.add_argument("--data", metavar="TOML", default=None, help="Dataset config (default: the synthetic world).")
    p.add_argument("--no-eval", action="store_true", help="do not evaluate the tiny models (faster)")

    p = sub.add_parser("report", help="regenerate a run's report from the results store")
    _add_common(p)
    p.add_argument("run", nargs="?", default="latest", metavar="RUN", help="run id, unique prefix or 'latest'")
    p.add_argument("--results", metavar="PATH", default=None, help="results store (default: <cache>/results.sqlite)")
    p.add_argument("--out", metavar="DIR", default="reports", help="Default: %(default)r.")

    p = sub.add_parser("gate", help="compare a run with a baseline; exit status 1 on a regression")
    _add_common(p)
    p.add_argument("--results", metavar="PATH", default=None, help="results store (default: <cache>/results.sqlite)")
    p.add_argument("--baseline", required=True, metavar="RUN|FILE")
    p.add_argument("--current", default="latest", metavar="RUN|FILE", help="Default: %(default)r.")
    p.add_argument("--compare-fail", action="append", required=True, metavar="METRIC:THRESHOLD", type=_compare_fail,
                   help="e.g. top1:0.01 (absolute) or ece:10%% (relative). Repeatable.")

    p = sub.add_parser("perf", help="measure throughput, cold vs warm runs, and the paper grid by simulation")
    from .perf.run import add_arguments as _perf_arguments

    _perf_arguments(p)
    return parser


def _compare_fail(text: str):
    from .expect.gate import parse_compare_fail

    return parse_compare_fail(text)


# ----- checks of what the values name, after parsing (qclip.run.options; an OptionError exits with status 2) -----
def _store_path(args) -> Path:
    from .cache import default_cache_dir

    return Path(args.results) if args.results else Path(args.cache or default_cache_dir()) / "results.sqlite"


def _rows(option: str, ref: str, store_path: Path):
    """Rows of a results file, a report folder or a run in the store (``--baseline``/``--current``)."""
    from .errors import DataFormatError
    from .expect.gate import load_baseline
    from .results import ResultStore
    from .run.options import OptionError, resolve_run

    path = Path(ref)
    if not (path.is_dir() or path.suffix.lower() in (".csv", ".json")):
        run = resolve_run(option, ref, store_path)
        with ResultStore(store_path) as store:
            return store.rows(run)
    try:
        return load_baseline(path)
    except (FileNotFoundError, ValueError, KeyError, DataFormatError) as exc:
        raise OptionError(option, ref, str(exc)) from None


def _check(args) -> None:
    """Validate what parsing cannot (names, files, runs) and keep what was loaded on ``args``."""
    from .run import options as o

    if args.command != "perf" and args.cache is not None:
        o.check_folder("--cache", args.cache)
    if args.command == "prepare":
        args.models = o.check_tiny_names("--models", args.models)
        args.mode = _tiny_mode(args.mode, args.cache)
    elif args.command == "list":
        if args.models is not None:
            o.check_model_specs("--models", args.models)
        args.data_config = o.load_data_config("--data", args.data) if args.data is not None else None
    elif args.command == "report":
        if args.results is not None:
            o.check_file_path("--results", args.results)
        o.check_folder("--out", args.out)
        args.run = o.resolve_run("RUN", args.run, _store_path(args))
    elif args.command == "gate":
        if args.results is not None:
            o.check_file_path("--results", args.results)
        args.baseline_rows = _rows("--baseline", args.baseline, _store_path(args))
        args.current_rows = _rows("--current", args.current, _store_path(args))
    elif args.command == "perf":
        args.device = o.resolve_device("--device", args.device)
        o.check_model_spec("--model", args.model)
        o.check_model_spec("--families-model", args.families_model)
        o.check_quantizer_names("--families-quantizer", args.families_quantizer)
        o.check_model_specs("--models", args.models)
        o.check_quantizer_names("--quantizers", args.quantizers)
        o.check_quantizer_names("--settings", args.settings)
        if args.data is not None:
            o.load_data_config("--data", args.data)
        for option, value in (("--json", args.json), ("--markdown", args.markdown)):
            if value is not None:
                o.check_file_path(option, value)


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser  # pragma: no cover


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the arguments; a malformed one exits with status 2 and one ``error:`` line."""
    from .run.options import OptionError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check(args)
    except OptionError as exc:
        _subparser(parser, args.command).error(str(exc))
    return args


def _tiny_mode(mode: str | None, cache: str | None) -> str:
    """The training mode of ``qclip prepare``: the flag, else $QCLIP_TINY_MODE, else the cache's last one."""
    import os

    from .cache import default_cache_dir
    from .models.tiny.reproducible import MODE_ENV, MODE_FILE, tiny_mode
    from .run.options import OptionError

    root = Path(cache or default_cache_dir())
    try:
        return tiny_mode(mode, root)
    except ValueError as exc:
        env = os.environ.get(MODE_ENV)
        option, value = (f"${MODE_ENV}", env) if env else (str(root / MODE_FILE), (root / MODE_FILE).read_text().strip())
        raise OptionError(option, value, str(exc)) from None


def _cmd_prepare(args) -> int:
    from .cache import Cache
    from .data.synthetic.location import ensure_world, world_root
    from .data.synthetic.world import read_manifest
    from .models.tiny.reproducible import machine_info
    from .models.tiny.weights import prepare, tiny_provenance

    cache = Cache(args.cache)
    names = args.models  # tiny model names, checked by parse_args
    t0 = time.perf_counter()
    root = ensure_world(cache, progress=not args.quiet)
    t_world = time.perf_counter() - t0
    prepare(cache, names, progress=not args.quiet, mode=args.mode)
    total = time.perf_counter() - t0
    print(f"world: {root} ({t_world:.0f} s), content digest {read_manifest(root)['content_digest']}")
    print(f"tiny models ({args.mode} mode; this machine's torch CPU capability {machine_info()['cpu_capability']}), "
          f"weights sha256:")
    checksums = {}
    for name in names:
        prov = tiny_provenance(name, cache, args.mode) or {}
        checksums[name] = prov.get("sha256", "?")
        print(f"  {name}  {prov.get('sha256', '?')}  (trained where torch reports {prov.get('cpu_capability', '?')})")
    if args.mode == "reproducible":
        from .cache import library_versions
        from .models.tiny.published import compare_with_published

        v = library_versions()
        versions = {"torch": v["torch"], "open_clip": v["open_clip_torch"], "transformers": v["transformers"]}
        print(compare_with_published(versions, read_manifest(root)["content_digest"], checksums))
    print(f"cached under {cache.root}; recorded in {world_root(cache) / 'world.json'} (tiny_models)")
    print(f"qclip prepare finished in {total:.0f} s")
    return 0


def _cmd_list(args) -> int:
    from .cache import Cache

    cache = Cache(args.cache)
    if args.quantizers:
        from .quantize import create_quantizer, list_quantizers

        for name in list_quantizers():
            q = create_quantizer(name)
            ok, reason = q.available()
            d = q.describe()
            opts = getattr(getattr(q, "config", None), "option_names", lambda: ())()
            print(f"{name:<16} {'available' if ok else 'unavailable':<12} {d.get('scheme', ''):<40} {reason}"
                  + (f"\n{'':<30}options: {', '.join(opts)}" if opts else ""))
        from .quantize.simulated import grid_names

        print(f"\nsimulated family (brevitas): any name w<2-8>a<4-8|16>[-rtn|-gptq][-vision|-text|-both] runs by name, "
              f"e.g. --qclip-quantizers w4a8-gptq-vision; the study's grid ({len(grid_names())} names): "
              f"{', '.join(grid_names()[:6])}, ... (qclip.quantize.simulated.grid_names).")
        return 0
    if args.datasets:
        from .data.config import DataConfig
        from .data.synthetic.location import ensure_world

        cfg = args.data_config or DataConfig.load(ensure_world(cache) / "qclip.toml")
        for name in cfg.names():
            entry = cfg.get(name)
            ok, reason = entry.available()
            print(f"{name:<24} {entry.kind:<12} {'available' if ok else 'unavailable':<12} {entry.root} {reason}")
        return 0
    from .models import check_available, expand_models

    for spec in expand_models(args.models):
        ok, reason = check_available(spec)
        line = f"{spec.spec:<52} {'available' if ok else 'unavailable'}"
        if spec.backend == "tiny" and not args.no_eval:
            s = tiny_summary(spec.ref, cache)
            line += f"  fp32 top-1 {s['top1']:.3f}  R@5 img {s['image_R@5']:.3f} txt {s['text_R@5']:.3f}"
        elif not ok:
            line += f"  ({reason})"
        print(line)
    return 0


def tiny_summary(name: str, cache, progress: bool = False) -> dict[str, float]:
    """fp32 zero-shot top-1 on ``synth-imagenet`` and retrieval R@5 on ``synth-coco`` of a tiny model
    (cached like any cell's embeddings), as printed by ``qclip list --models``."""
    from . import tasks
    from .run.session import EmbeddingSource, QclipSession, SessionOptions

    session = QclipSession(SessionOptions(models=f"tiny:{name}", cache=str(cache.root), progress=progress))
    src = EmbeddingSource(session, f"tiny:{name}", "fp32")
    zs = tasks.zeroshot(src, session.dataset("synth-imagenet")).metrics
    rt = tasks.retrieval(src, session.dataset("synth-coco")).metrics
    return {"top1": zs["top1"], "image_R@5": rt["image_retrieval_R@5"], "text_R@5": rt["text_retrieval_R@5"]}


def _store(args):
    from .cache import Cache
    from .results import ResultStore

    return ResultStore(args.results or Cache(args.cache).root / "results.sqlite")


def _cmd_report(args) -> int:
    from .cache import Cache
    from .report import write_report

    store = _store(args)
    out = write_report(store, args.run, Path(args.out), figure_memo=Cache(args.cache).root / "figures")
    print(f"report written to {out}/report.html and {out}/report.md")
    return 0


def _cmd_gate(args) -> int:
    from .expect.gate import run_gates

    outcomes = run_gates(args.current_rows, args.baseline_rows, args.compare_fail)  # loaded by parse_args
    for line in _provenance_warnings(args):
        print(line, file=sys.stderr)
    for g in outcomes:
        print(g)
        for d in g.details:
            print(f"  {d}")
    return 0 if all(g.passed for g in outcomes) else 1


def _provenance_warnings(args) -> list[str]:
    """Lines naming what differs between the baseline's and the current run's provenance (none if nothing)."""
    from .expect.provenance import load_baseline_meta, warning_lines
    from .results import ResultStore

    path = _store_path(args)
    store = ResultStore(path) if path.is_file() else None
    try:
        baseline, current = load_baseline_meta(args.baseline, store), load_baseline_meta(args.current, store)
    finally:
        if store is not None:
            store.close()
    if current is None:
        return [f"warning: --current {args.current} records no provenance: the baseline cannot be checked against it"]
    return [line.replace("WARNING:", "warning:", 1) for line in warning_lines(baseline, current,
                                                                             f"baseline {args.baseline}")]


def _cmd_perf(args) -> int:
    from .perf.run import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return {"prepare": _cmd_prepare, "list": _cmd_list, "report": _cmd_report, "gate": _cmd_gate,
            "perf": _cmd_perf}[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
