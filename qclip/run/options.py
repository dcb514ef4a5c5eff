"""Parsing and validation of what users type: every ``--qclip-*`` option, ini value and ``qclip`` argument.

Two layers, both cheap (no torch at parse time):

* argparse ``type=`` parsers (:func:`parse_threshold`, :func:`parse_gate`, :func:`parse_device`,
  :func:`parse_positive_int`, :func:`parse_fraction`, :func:`check_compare_fail`, :func:`parse_equivalence`, :func:`check_quantizer_ref`,
  :func:`check_shell_words`) check a value's form and raise :class:`argparse.ArgumentTypeError`; argparse
  (pytest's parser too) turns that into one ``error: argument --OPTION: ...`` line.
* checks against what is known (registered quantizers, model sets, configured datasets, runs in a results
  store, dataset config files) raise :class:`OptionError`, one line naming the option, the value and what
  was expected, with close matches where there is a list. The plugin turns it into a ``pytest.UsageError``
  at configure time (:func:`plugin_options`), the CLI into an argparse error (exit status 2).
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "OptionError",
    "PluginOptions",
    "parse_threshold",
    "parse_quantizer_option",
    "check_quantizer_options",
    "parse_gate",
    "parse_device",
    "parse_positive_int",
    "parse_nonnegative_int",
    "parse_fraction",
    "check_compare_fail",
    "parse_equivalence",
    "check_quantizer_ref",
    "check_shell_words",
    "one_line",
    "resolve_device",
    "worker_device",
    "check_model_specs",
    "check_model_spec",
    "check_tiny_names",
    "check_quantizer_patterns",
    "check_quantizer_names",
    "check_threshold_names",
    "check_dataset_patterns",
    "check_folder",
    "check_file_path",
    "load_data_config",
    "load_quantizer_refs",
    "resolve_run",
    "plugin_options",
    "check_session_options",
    "synthetic_dataset_names",
]


def one_line(text: object) -> str:
    """``text`` with its line breaks folded (a usage error is one line)."""
    return " ".join(str(text).split())


class OptionError(ValueError):
    """A malformed option value: ``OPTION VALUE: what was expected`` on one line."""

    def __init__(self, option: str, value: object, message: str):
        self.option, self.value, self.message = option, value, one_line(message)
        super().__init__(f"{option} {shlex.quote(str(value))}: {self.message}")


# ----- argparse type= parsers (argparse.ArgumentTypeError on bad text) ------------------------------
def parse_threshold(text: str) -> tuple[str, float]:
    """``QUANTIZER=PP`` -> (name, percentage points)."""
    name, sep, value = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        pp = float(value)
        if math.isnan(pp):
            raise ValueError
        return name.strip(), pp
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"Expected QUANTIZER=PERCENTAGE_POINTS (e.g. bnb-nf4=2.0), but got {text!r}") from None


def parse_quantizer_option(text: str) -> tuple[str, str, object]:
    """``QUANTIZER:KEY=VALUE`` -> (quantizer name, option, value); the value is read as an int, a float,
    ``true``/``false``, or else kept as a string (``w4a8-lsq:lr=1e-4``, ``bnb-int8:threshold=0``)."""
    name, sep, rest = text.partition(":")
    key, eq, raw = rest.partition("=")
    if not sep or not eq or not name.strip() or not key.strip() or not raw.strip():
        raise argparse.ArgumentTypeError(
            f"Expected QUANTIZER:OPTION=VALUE (e.g. w4a8-lsq:steps=600), but got {text!r}")
    raw = raw.strip()
    value: object = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
    return name.strip(), key.strip(), value


def check_quantizer_options(option: str, triples) -> dict[str, dict[str, object]]:
    """``{quantizer: {option: value}}`` of ``--qclip-quantizer-option`` values, each checked by building the
    quantizer with it (an unknown quantizer or option, or a bad value, is a usage error naming it)."""
    from ..quantize import create_quantizer

    out: dict[str, dict[str, object]] = {}
    for name, key, value in triples:
        out.setdefault(name, {})[key] = value
    for name, opts in out.items():
        try:
            create_quantizer(name, **opts)
        except (KeyError, ValueError, TypeError) as exc:
            shown = ",".join(f"{name}:{k}={v}" for k, v in opts.items())
            raise OptionError(option, shown, str(exc).strip("'\"")) from None
    return out


def parse_gate(text: str) -> tuple[str, float]:
    """``METRIC:BOUND`` -> (metric glob, bound); the glob must select a declared metric
    (:mod:`qclip.benchmarks`)."""
    metric, sep, bound = text.rpartition(":")
    try:
        if not sep or not metric:
            raise ValueError
        value = float(bound)
        if math.isnan(value):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"Expected METRIC:BOUND (e.g. 'max_disparity@1:0.02', METRIC may be a glob), but got {text!r}") from None
    from ..expect.gate import check_metric_pattern

    check_metric_pattern(metric, None, text)
    return metric, value


def parse_device(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (kept as is: :func:`resolve_device` imports torch)."""
    head, sep, index = text.partition(":")
    if text in ("cpu", "cuda", "auto") or (head == "cuda" and sep and index.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"Expected 'cpu', 'cuda', 'cuda:N' or 'auto', but got {text!r}")


def parse_nonnegative_int(text: str) -> int:
    try:
        value = int(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(f"Expected an integer >= 0, but got {text!r}") from None


def parse_positive_int(text: str) -> int:
    try:
        value = int(text)
        if value <= 0:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(f"Expected a positive integer, but got {text!r}") from None


def parse_fraction(text: str) -> float:
    """A share in (0, 1]."""
    try:
        value = float(text)
        if not 0 < value <= 1:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(f"Expected a fraction in (0, 1] (e.g. 0.02), but got {text!r}") from None


def check_compare_fail(text: str) -> str:
    """``METRIC:X`` / ``METRIC:X%`` checked with :func:`qclip.expect.gate.parse_compare_fail`; the text is kept."""
    from ..expect.gate import parse_compare_fail

    parse_compare_fail(text)  # ArgumentTypeError naming the expected form
    return text


def parse_equivalence(text: str) -> str:
    """``[BENCHMARK/]METRIC[@SUBGROUP]:MARGIN`` checked with :func:`qclip.expect.equivalence.parse_margin`
    (MARGIN > 0 or ``none``; METRIC must select a declared metric); the text is kept, as the run stores it."""
    from ..expect.equivalence import parse_margin

    parse_margin(text)  # ArgumentTypeError naming the expected form or the declared metrics
    return text


def check_quantizer_ref(text: str) -> str:
    """``MODULE:ATTR`` (or ``file.py:ATTR``), checked for its form only; imported at configure time."""
    module, sep, attr = text.rpartition(":")
    if not sep or not module or not attr:
        raise argparse.ArgumentTypeError(f"Expected MODULE:ATTR (e.g. 'mypkg.quant:MyQuantizer'), but got {text!r}")
    return text


def check_shell_words(text: str) -> str:
    """A string ``shlex.split`` can split (balanced quotes)."""
    try:
        shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"Expected shell-quoted arguments, but got {text!r} ({exc})") from None
    return text


# ----- checks against what is known (OptionError) ------------------------------------------------
def _suggest(name: str, known: Iterable[str]) -> str:
    from ..errors import suggest

    return suggest(name, known)


def _items(option: str, text: str, what: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise OptionError(option, text, f"Expected comma-separated {what}, but got none")
    return items


def resolve_device(option: str, text: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; a CUDA device must exist on this machine."""
    if text == "cpu":
        return text
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError(option, text, "Expected a CUDA device, but torch sees none on this machine "
                                            "(torch.cuda.is_available() is False); use cpu or auto")
        index = int(text.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise OptionError(option, text, f"Expected a device index below {count} (this machine has {count} "
                                            f"CUDA device(s)), but got {index}")
    return text


def worker_device(device: str, worker_id: str | None, device_count: int) -> str:
    """The device of one xdist worker: a bare ``cuda`` becomes ``cuda:(i mod device_count)`` on worker
    ``gw<i>``, so ``-n <number of GPUs>`` puts one worker on each GPU; a named ``cuda:N``, ``cpu``, the
    controller (``worker_id`` None) and a machine without GPUs keep ``device`` as given.

    >>> [worker_device("cuda", f"gw{i}", 2) for i in range(3)], worker_device("cuda:1", "gw0", 2)
    (['cuda:0', 'cuda:1', 'cuda:0'], 'cuda:1')
    """
    if device != "cuda" or worker_id is None or device_count < 1:
        return device
    digits = "".join(ch for ch in worker_id if ch.isdigit())
    return f"cuda:{int(digits) % device_count}" if digits else device


def check_model_spec(option: str, text: str) -> str:
    """One model spec (not a set)."""
    from ..errors import UnknownModelError
    from ..models import parse_spec

    try:
        parse_spec(text.strip())
    except UnknownModelError as exc:
        raise OptionError(option, text, str(exc)) from None
    return text


def check_model_specs(option: str, text: str) -> str:
    """Comma-separated model specs and set names; a bare word must be a set or a tiny model."""
    from ..errors import UnknownModelError
    from ..models.specs import SET_NAMES, _tiny_names, expand_models

    for item in _items(option, text, "model specs or sets"):
        if ":" not in item and item not in SET_NAMES and item not in _tiny_names():
            raise OptionError(option, text, f"Expected a model set or a tiny model name, or a spec BACKEND:REF "
                                            f"(open_clip:ARCH/TAG, hf:ID, tiny:NAME, random:...), but got {item!r}."
                                            + _suggest(item, [*SET_NAMES, *_tiny_names()]))
    try:
        expand_models(text)
    except UnknownModelError as exc:
        raise OptionError(option, text, str(exc)) from None
    return text


def check_tiny_names(option: str, text: str) -> list[str]:
    """``tiny`` (all) or comma-separated tiny model names -> the names."""
    from ..models.specs import _tiny_names

    known = _tiny_names()
    if text.strip() == "tiny":
        return known
    names = _items(option, text, "tiny model names")
    for name in names:
        if name not in known:
            raise OptionError(option, text, f"Unknown tiny model {name!r}.{_suggest(name, known)}")
    return names


def check_quantizer_patterns(option: str, text: str) -> str:
    """Comma-separated quantizer names or fnmatch patterns: a name must resolve (registered, or a family's
    name such as ``w4a8-gptq-vision``), a pattern match a registered one."""
    from ..quantize import list_quantizers
    from ..quantize.base import is_known_quantizer

    known = list_quantizers()
    for pat in _items(option, text, "quantizer names or patterns"):
        if any(ch in pat for ch in "*?["):
            if not any(fnmatch.fnmatchcase(n, pat) for n in known):
                raise OptionError(option, text, f"Expected the pattern {pat!r} to match a registered quantizer, "
                                                f"but it matches none. Known: {', '.join(known)}.")
        elif not is_known_quantizer(pat):
            raise OptionError(option, text, f"Unknown quantizer {pat!r}.{_suggest(pat, known)}")
    return text


def check_quantizer_names(option: str, text: str) -> str:
    """Comma-separated quantizer names (no patterns) that resolve."""
    from ..quantize import list_quantizers
    from ..quantize.base import is_known_quantizer

    known = list_quantizers()
    for name in _items(option, text, "quantizer names"):
        if not is_known_quantizer(name):
            raise OptionError(option, text, f"Unknown quantizer {name!r}.{_suggest(name, known)}")
    return text


def check_threshold_names(option: str, pairs: Iterable[tuple[str, float]], texts: Iterable[str] | None = None) -> None:
    """Each threshold names a registered quantizer, the last part of one (``nf4``) or ``default``."""
    from ..quantize import list_quantizers

    known = list_quantizers()
    texts = list(texts) if texts is not None else [f"{n}={v:g}" for n, v in pairs]
    for (name, _), text in zip(pairs, texts, strict=True):
        if name == "default" or any(q == name or q.endswith("-" + name) for q in known):
            continue
        short = {q.split("-", 1)[1] for q in known if "-" in q}
        raise OptionError(option, text, f"Expected QUANTIZER to be a registered quantizer, the last part of one "
                                        f"(e.g. nf4) or 'default', but got {name!r}."
                                        + _suggest(name, [*known, *short, "default"]))


def check_folder(option: str, text: str) -> str:
    """A folder that exists or can be created (not a file)."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise OptionError(option, text, f"Expected a folder, but {path} is a file")
    return text


def check_file_path(option: str, text: str) -> str:
    """A file path to write or read (not a folder)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise OptionError(option, text, f"Expected a file path, but {path} is a folder")
    return text


def load_data_config(option: str, path: str):
    """The :class:`~qclip.data.config.DataConfig` of ``path``; its DataConfigError as one OptionError."""
    from ..data.config import DataConfig
    from ..errors import DataFormatError

    try:
        return DataConfig.load(path)
    except (DataFormatError, OSError) as exc:
        raise OptionError(option, path, str(exc)) from None


def synthetic_dataset_names() -> list[str]:
    """The datasets of the synthetic world (known without generating it)."""
    from ..data.synthetic import DATASETS

    return sorted(DATASETS)


def check_dataset_patterns(option: str, text: str, known: list[str]) -> str:
    """Comma-separated dataset names or patterns: a name must be configured, a pattern match one."""
    for pat in _items(option, text, "dataset names or patterns"):
        if any(ch in pat for ch in "*?["):
            if not any(fnmatch.fnmatchcase(n, pat) for n in known):
                raise OptionError(option, text, f"Expected the pattern {pat!r} to match a configured dataset, "
                                                f"but it matches none. Known: {', '.join(known) or 'none'}.")
        elif pat not in known:
            raise OptionError(option, text, f"Unknown dataset {pat!r}.{_suggest(pat, known)}")
    return text


def load_quantizer_refs(option: str, refs: Iterable[str]) -> None:
    """Import and register each ``MODULE:ATTR`` quantizer; an import or lookup failure is one OptionError."""
    from ..quantize import load_quantizer_from_path

    for ref in refs:
        try:
            load_quantizer_from_path(ref)
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise OptionError(option, ref, f"Expected MODULE:ATTR naming a quantizer, but {type(exc).__name__}: "
                                           f"{exc}") from None


def resolve_run(option: str, ref: str, store_path: str | Path) -> str:
    """The run id ``ref`` names in the results store at ``store_path`` (which must exist)."""
    from ..results import ResultStore, UnknownRunError

    path = Path(store_path).expanduser()
    if not path.is_file():
        raise OptionError(option, ref, f"Expected a run in the results store {path}, but there is no store there")
    store = ResultStore(path)
    try:
        return store.resolve(ref)
    except UnknownRunError as exc:
        raise OptionError(option, ref, str(exc)) from None
    finally:
        store.close()


# ----- the pytest plugin's options, read once at configure time ----------------------------------
@dataclass
class PluginOptions:
    """Every ``--qclip-*`` option and ini value of a pytest session, parsed and validated."""

    session: Any  # qclip.run.session.SessionOptions (imported lazily: it imports torch)
    quantizer_refs: tuple[str, ...] = ()
    results: str | None = None
    resume: str | None = None
    reports: str = "reports"
    no_report: bool = False
    baseline: str | None = None
    compare_fail: tuple = ()  # qclip.expect.gate.RegressionCheck
    equivalence: tuple[str, ...] = ()  # --qclip-equivalence texts, checked by parse_equivalence
    data_source: str = ""  # how data was chosen: '--qclip-data', the rootdir's qclip.toml, or '' (synthetic)


def plugin_options(getoption: Callable[[str], Any], getini: Callable[[str], Any], rootpath: Path,
                   progress: bool = True) -> PluginOptions:
    """Read and validate the plugin's options (``config.getoption`` / ``config.getini``); OptionError on
    the first bad one. Registers ``--qclip-quantizer`` quantizers first, so names can refer to them.
    Checks that need the session (datasets) or the controller (runs) are :func:`check_session_options`
    and :func:`resolve_run`."""
    from ..expect.gate import parse_compare_fail
    from ..expect.thresholds import load_thresholds
    from .session import SessionOptions

    refs = tuple(getoption("qclip_quantizer") or ())
    load_quantizer_refs("--qclip-quantizer", refs)

    ini_lines = [line for line in (getini("qclip_thresholds") or []) if line.strip()]
    ini_pairs = []
    for line in ini_lines:
        try:
            ini_pairs.append(parse_threshold(line))
        except argparse.ArgumentTypeError as exc:
            raise OptionError("ini qclip_thresholds", line, str(exc)) from None
    check_threshold_names("ini qclip_thresholds", ini_pairs, ini_lines)
    cli_pairs = list(getoption("qclip_threshold") or [])
    check_threshold_names("--qclip-threshold", cli_pairs)
    thresholds = load_thresholds((), [*ini_pairs, *cli_pairs])  # ini first, the command line wins

    models_opt = getoption("qclip_models")
    if models_opt is not None:
        models = check_model_specs("--qclip-models", models_opt)
    else:
        models = check_model_specs("ini qclip_models", getini("qclip_models") or "tiny")
    quantizers = check_quantizer_patterns("--qclip-quantizers", getoption("qclip_quantizers"))

    data, data_source = getoption("qclip_data"), "--qclip-data"
    if data is None and (rootpath / "qclip.toml").is_file():
        data, data_source = str(rootpath / "qclip.toml"), "--qclip-data (default: the rootdir's qclip.toml)"
    elif data is None:
        data_source = ""

    cache = getoption("qclip_cache")
    if cache is not None:
        check_folder("--qclip-cache", cache)
    else:
        import os

        if os.environ.get("QCLIP_CACHE"):
            check_folder("$QCLIP_CACHE", os.environ["QCLIP_CACHE"])
    results = getoption("qclip_results")
    if results is not None:
        check_file_path("--qclip-results", results)
    reports = check_folder("--qclip-reports", getoption("qclip_reports"))

    session = SessionOptions(
        models=models,
        quantizers=quantizers,
        data=data,
        datasets=getoption("qclip_datasets"),
        cache=cache,
        device=resolve_device("--qclip-device", getoption("qclip_device")),
        matmul_precision=getoption("qclip_matmul_precision"),
        compile=bool(getoption("qclip_compile")),
        batch_size=getoption("qclip_batch_size"),
        thresholds=thresholds,
        min_samples=getoption("qclip_min_samples"),
        skew_k=getoption("qclip_skew_k"),
        fairness_gates=tuple(getoption("qclip_fairness_gate") or ()),
        calibration=getoption("qclip_calibration"),
        calibration_size=getoption("qclip_calibration_size"),
        calibration_seed=getoption("qclip_calibration_seed"),
        quantizer_options=check_quantizer_options("--qclip-quantizer-option",
                                                  getoption("qclip_quantizer_option") or ()),
        progress=progress,
    )
    return PluginOptions(
        session=session,
        quantizer_refs=refs,
        results=results,
        resume=getoption("qclip_resume"),
        reports=reports,
        no_report=bool(getoption("qclip_no_report")),
        baseline=getoption("qclip_baseline"),
        compare_fail=tuple(parse_compare_fail(t) for t in getoption("qclip_compare_fail") or ()),
        equivalence=tuple(getoption("qclip_equivalence") or ()),
        data_source=data_source,
    )


def check_session_options(options: PluginOptions, session) -> None:
    """Checks that need the session: the dataset config loads, ``--qclip-datasets`` names configured sets."""
    from ..errors import DataFormatError

    if options.session.data:
        try:
            names = session.data_config.names()  # loaded once here, kept by the session
        except (DataFormatError, OSError) as exc:  # DataConfigError: missing file, bad TOML, unknown key...
            raise OptionError(options.data_source or "--qclip-data", options.session.data, str(exc)) from None
    else:
        names = synthetic_dataset_names()
    datasets = options.session.datasets
    if datasets != "*":
        check_dataset_patterns("--qclip-datasets", datasets, names)
    calibration = options.session.calibration
    if calibration is not None:
        if calibration not in names:
            raise OptionError("--qclip-calibration", calibration, f"Unknown dataset.{_suggest(calibration, names)}")
        if options.session.data:
            kind = session.data_config.get(calibration).kind
        else:
            from ..data.synthetic import DATASETS

            kind = DATASETS[calibration][0]
        if kind != "coco":
            raise OptionError("--qclip-calibration", calibration,
                              f"Expected a dataset of kind 'coco' (image-caption pairs), but it is {kind or 'not'}")
