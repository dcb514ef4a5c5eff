"""The :class:`Quantizer` protocol, its frozen config :class:`QuantizerSpec`, and the registry.

A quantizer is anything with ``name``, ``family``, ``available()``, ``quantize(model)`` and
``describe()`` (see :class:`Quantizer`). Built-in ones derive from :class:`BaseQuantizer`, which does the
common work: availability checks, :meth:`ClipModel.prepare_for_quantization`, byte counting and the
coverage report stored in ``model.quant_report``.

The registry is the only module-level mutable state. Quantizers join it three ways:

* ``@register_quantizer`` on a class (or ``@register_quantizer("name")`` on a factory function);
* the ``qclip.quantizers`` entry-point group (name = quantizer name, value = ``module:attr``), read
  lazily on the first lookup and imported only when that quantizer is created;
* :func:`load_quantizer_from_path` (``--qclip-quantizer module:attr`` or ``path/to/file.py:attr``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from ..errors import QclipError, UnknownQuantizerError

__all__ = [
    "Quantizer",
    "QuantizerSpec",
    "BaseQuantizer",
    "QuantizerUnavailable",
    "ENTRY_POINT_GROUP",
    "ARITHMETIC",
    "QUANTIZES_RE",
    "register_quantizer",
    "register_quantizer_pattern",
    "is_known_quantizer",
    "list_quantizers",
    "create_quantizer",
    "load_quantizer_from_path",
    "is_quantizer",
    "library_version",
    "quantizer_available",
]

ENTRY_POINT_GROUP = "qclip.quantizers"


class QuantizerUnavailable(QclipError):
    """``quantize`` was called where ``available()`` says no (library absent, too old, wrong device)."""


@runtime_checkable
class Quantizer(Protocol):
    """What qclip needs from a quantizer (third parties implement this, or subclass BaseQuantizer).

    ``quantize`` may modify the given model in place and return it: callers pass a fresh fp32 copy
    (:func:`qclip.quantize.fresh_copy`). It sets ``model.quant_report``. ``calibration`` is a
    :class:`qclip.quantize.calibration.CalibrationSet` (image–caption pairs) for quantizers whose
    ``needs_calibration`` is true, else None; a quantizer whose ``quantize`` takes only ``model`` (the
    protocol before calibration) is still called that way.
    """

    name: str
    family: str

    def available(self) -> tuple[bool, str]: ...

    def quantize(self, model: Any, calibration: Any = None) -> Any: ...

    def describe(self) -> dict: ...


def is_quantizer(obj: object) -> bool:
    """Whether ``obj`` has the attributes and methods of the :class:`Quantizer` protocol."""
    return (isinstance(getattr(obj, "name", None), str) and isinstance(getattr(obj, "family", None), str)
            and all(callable(getattr(obj, m, None)) for m in ("available", "quantize", "describe")))


def quantizer_available(q, device: str | torch.device | None = None) -> tuple[bool, str]:
    """``q.available(device)`` when ``q`` accepts a device (built-ins do), else ``q.available()``."""
    try:
        params = inspect.signature(q.available).parameters
    except (TypeError, ValueError):
        params = {}
    if device is not None and params:
        return q.available(device)
    return q.available()


# ----------------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------------
def _fixed(default: Any) -> Any:
    return field(default=default, metadata={"fixed": True})


@dataclass(frozen=True)
class QuantizerSpec:
    """Frozen description of a quantizer. Subclasses add the user-settable options as fields.

    The fields declared here are fixed per quantizer (``library``, ``bits``...); the fields a subclass
    adds (``threshold``, ``blocksize``, ``compute_dtype``...) may be overridden through
    ``create_quantizer(name, **options)``. :meth:`config_json` is the canonical form hashed into cache keys.
    """

    library: str = _fixed("torch")
    bits: int = _fixed(32)
    scheme: str = _fixed("")
    requires_cuda: bool = _fixed(False)
    supports_cuda: bool = _fixed(True)
    min_version: str | None = _fixed(None)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("fixed"))

    def with_options(self, **options: Any) -> QuantizerSpec:
        """A copy with ``options`` changed; unknown or fixed names raise ``TypeError``."""
        allowed = self.option_names()
        bad = [k for k in options if k not in allowed]
        if bad:
            raise TypeError(f"Expected options among {list(allowed)}, but got {bad}")
        return dataclasses.replace(self, **options) if options else self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def config_json(self, name: str | None = None) -> str:
        """Canonical JSON: sorted keys, no whitespace, plus the installed version of ``library``."""
        payload = {"spec": self.to_dict(), "library_version": library_version(self.library)}
        if name is not None:
            payload["name"] = name
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


_DIST_NAMES = {"torch": "torch", "bitsandbytes": "bitsandbytes", "torchao": "torchao", "hqq": "hqq",
               "optimum.quanto": "optimum-quanto"}

#: the values of ``describe()["arithmetic"]`` (:attr:`BaseQuantizer.arithmetic`)
ARITHMETIC = ("simulated", "real", "reference")
#: the form of ``describe()["quantizes"]``: what, how (optional), towers (families with a scope)
QUANTIZES_RE = re.compile(r"^(none|weights|weights\+activations)( \([^()]+\))?(, (both towers|vision tower|text tower))?$")
#: the towers part of ``quantizes`` per scope (the simulated and QAT families' ``-vision``/``-text``)
TOWER_LABELS = {"both": "both towers", "vision": "vision tower", "text": "text tower"}


def _module_present(name: str) -> bool:
    """Whether ``name`` (``optimum.quanto``: its parent too) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):  # a dotted name whose parent is missing
        return False


def library_version(library: str) -> str | None:
    """Installed distribution version of ``library`` (None when not installed)."""
    try:
        return importlib.metadata.version(_DIST_NAMES.get(library, library))
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])


# ----------------------------------------------------------------------------------------------------
# base implementation
# ----------------------------------------------------------------------------------------------------
def _device_type(device: str | torch.device | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


class BaseQuantizer:
    """Template for built-in quantizers: subclasses set ``name``, ``family``, ``spec`` and implement
    :meth:`_apply` (quantize ``model.module`` in place on ``model.device``).

    ``quantize(model)`` modifies ``model`` in place and returns it; it (1) checks :meth:`available` for
    the model's device, (2) calls ``model.prepare_for_quantization()``, (3) counts the fp32 bytes, (4)
    applies the quantization, (5) sets ``model.quant_report`` (see :mod:`qclip.quantize.coverage`).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    spec: ClassVar[QuantizerSpec] = QuantizerSpec()
    #: how the quantized model computes (one of :data:`ARITHMETIC`): "simulated" (fake quantization: values
    #: rounded to a grid, stored and computed in float), "real" (low-precision storage and the library's
    #: kernels) or "reference" (fp32)
    arithmetic: ClassVar[str | None] = None
    #: what it quantizes: "none", "weights" or "weights+activations", optionally with how in parentheses
    #: ("weights+activations (dynamic)") and, for a family with a scope, the towers ("..., vision tower");
    #: see :data:`QUANTIZES_RE`. "none" (fp32) expects no layer quantized, so no coverage warning.
    quantizes: ClassVar[str | None] = None
    #: how to install the library, for the reason ``available()`` gives when it is missing
    install: ClassVar[str | None] = None
    #: whether quantize() needs image–caption calibration data (static scales, GPTQ, QAT)
    needs_calibration: ClassVar[bool] = False
    #: whether outputs depend on which samples share a batch (a per-batch activation range, outlier columns
    #: chosen per batch): the encoding batch size is then part of the cache key
    batch_dependent: ClassVar[bool] = False
    layers: ClassVar[str] = ("every nn.Linear of both towers: attention q/k/v/out, MLP, final image/text "
                             "projections")

    def __init__(self, **options: Any):
        self.config: QuantizerSpec = type(self).spec.with_options(**options)

    # --- protocol ----------------------------------------------------------------------------------
    def available(self, device: str | torch.device | None = None) -> tuple[bool, str]:
        """Whether this quantizer can run on ``device`` (default: CUDA if present, else CPU), and why not."""
        cfg = self.config
        dev = _device_type(device)
        if cfg.library != "torch" and not _module_present(cfg.library):
            dist = _DIST_NAMES.get(cfg.library, cfg.library)
            return False, f"{self.name}: {dist} is not installed ({self.install or f'pip install {dist}'})"
        version = library_version(cfg.library)
        if cfg.min_version and version and _version_tuple(version) < _version_tuple(cfg.min_version):
            return False, (f"{self.name}: needs {_DIST_NAMES.get(cfg.library, cfg.library)}>={cfg.min_version}, "
                           f"found {version}")
        if cfg.requires_cuda and dev != "cuda":
            return False, f"{self.name}: {self._cuda_only_reason()}"
        if not cfg.supports_cuda and dev == "cuda":
            return False, f"{self.name}: no CUDA kernels ({cfg.library}); runs on CPU only"
        return True, ""

    def quantize(self, model, calibration=None):
        ok, reason = self.available(model.device)
        if not ok:
            raise QuantizerUnavailable(reason)
        from .coverage import fp32_weight_bytes, make_report

        model.prepare_for_quantization()
        fp32_bytes = fp32_weight_bytes(model.module)
        if self.needs_calibration:
            if calibration is None:
                raise QuantizerUnavailable(f"{self.name}: needs calibration data (image–caption pairs: "
                                           "--qclip-calibration), but got none")
            extra = self._apply(model, calibration) or {}
        else:
            extra = self._apply(model) or {}
        model.module.eval()
        model.quant_report = make_report(model, self.name, self.resolved_config(model.device), fp32_bytes,
                                         expect_full=self.quantizes_layers, is_target=self.is_target_storage)
        model.quant_report.update(extra)
        return model

    def describe(self, model=None) -> dict:
        """Bits, scheme, which layers, config; with ``model``, its weight bytes (and report if quantized)."""
        cfg = self.config
        out = {
            "name": self.name, "family": self.family, "library": cfg.library,
            "library_version": library_version(cfg.library), "bits": cfg.bits, "scheme": cfg.scheme,
            "layers": self.layers if self.quantizes_layers else "none (reference)",
            "arithmetic": self.arithmetic, "quantizes": self.quantizes,
            "requires_cuda": cfg.requires_cuda, "supports_cuda": cfg.supports_cuda,
            "config": cfg.to_dict(), "weight_bytes": None,
        }
        if model is not None:
            from .coverage import weight_bytes

            report = getattr(model, "quant_report", None)
            out["weight_bytes"] = report["weight_bytes"] if report else weight_bytes(model.module)
            if report:
                out["fp32_weight_bytes"] = report["fp32_weight_bytes"]
                out["coverage"] = report["coverage"]
        return out

    def config_json(self) -> str:
        """Canonical JSON of name + config + library version, for cache keys."""
        return self.config.config_json(self.name)

    @property
    def quantizes_layers(self) -> bool:
        """Whether every Linear layer in scope is expected to be quantized (not for ``quantizes="none"``;
        ``quantizes = False``, the form before the labels, still means the same)."""
        return self.quantizes not in ("none", False)

    # --- for subclasses ----------------------------------------------------------------------------
    def _apply(self, model) -> dict | None:
        """Quantize ``model.module`` in place; may return extra fields for the quantization report."""
        raise NotImplementedError

    def is_target_storage(self, storage: str) -> bool:
        """Whether a layer stored as ``storage`` (see ``coverage.layer_storage``) counts as quantized."""
        return storage != "float32"

    def resolved_config(self, device: str | torch.device | None = None) -> dict:
        """The config as applied on ``device`` ("auto" values resolved); stored in the report."""
        return self.config.to_dict()

    def _cuda_only_reason(self) -> str:
        return f"needs a CUDA device ({self.config.library})"

    def __repr__(self) -> str:
        opts = {k: getattr(self.config, k) for k in self.config.option_names()}
        return f"{type(self).__name__}(name={self.name!r}, {opts})"


# ----------------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------------
_REGISTRY: dict[str, Callable[..., Any]] = {}
#: families whose names are combinations (``w4a8-gptq-vision``): (compiled regex, factory(name, **options))
_PATTERNS: list[tuple[Any, Callable[..., Any]]] = []
_ENTRY_POINTS: dict[str, importlib.metadata.EntryPoint] = {}
_ENTRY_POINTS_LOADED = False


def register_quantizer(obj=None, *, name: str | None = None, replace: bool = False):
    """Register a quantizer factory (a class or a function returning a :class:`Quantizer`).

    Usable as ``@register_quantizer`` on a class with a ``name`` attribute, as
    ``@register_quantizer("my-quant")`` / ``@register_quantizer(name="my-quant")`` on a class or factory,
    or called with an instance (``register_quantizer(MyQuant())``: creating it returns that instance).
    Registering a taken name raises ``ValueError`` unless ``replace=True``.
    """
    if isinstance(obj, str):
        return register_quantizer(name=obj, replace=replace)
    if obj is None:
        return lambda o: register_quantizer(o, name=name, replace=replace)
    if is_quantizer(obj) and not isinstance(obj, type):
        instance = obj
        key = name or instance.name

        def factory(**options):
            if options:
                raise TypeError(f"Expected no options for the registered instance {key!r}, but got {sorted(options)}")
            return instance
    else:
        factory = obj
        key = name or getattr(obj, "name", None)
    if not isinstance(key, str) or not key:
        raise TypeError(f"Expected a quantizer name (a class attribute `name` or name=...), but got {key!r}")
    if key in _REGISTRY and not replace and _REGISTRY[key] is not factory:
        raise ValueError(f"Expected a new quantizer name, but got {key!r}, already registered; pass replace=True")
    _REGISTRY[key] = factory
    return obj


def _load_entry_points() -> None:
    """Read the ``qclip.quantizers`` entry points once (names only; modules import on creation)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _ENTRY_POINTS[ep.name] = ep


def _known_names() -> set[str]:
    _load_entry_points()
    return set(_REGISTRY) | set(_ENTRY_POINTS)


def is_known_quantizer(name: str) -> bool:
    """Whether ``create_quantizer(name)`` resolves: registered, an entry point, or a family's name pattern."""
    return name in _known_names() or any(p.match(name) for p, _ in _PATTERNS)


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def list_quantizers(filter: str | Iterable[str] = "*", exclude_filters: str | Iterable[str] = ()) -> list[str]:
    """Names of the registered quantizers matching ``filter`` (fnmatch), minus ``exclude_filters``,
    naturally sorted. Entry points are included without importing them."""
    include = [filter] if isinstance(filter, str) else list(filter)
    exclude = [exclude_filters] if isinstance(exclude_filters, str) else list(exclude_filters)
    names = _known_names()
    keep = {n for n in names if any(fnmatch.fnmatchcase(n, f) for f in include)}
    keep -= {n for n in keep if any(fnmatch.fnmatchcase(n, f) for f in exclude)}
    return sorted(keep, key=_natural_key)


def register_quantizer_pattern(pattern, factory: Callable[..., Any]) -> None:
    """Resolve every name matching ``pattern`` (a compiled regex) with ``factory(name, **options)``, for a
    family too large to register name by name; registered names take precedence and are what
    ``list_quantizers`` lists."""
    _PATTERNS.append((pattern, factory))


def _factory(name: str) -> Callable[..., Any]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    for pattern, factory in _PATTERNS:
        if pattern.match(name):
            return lambda **options: factory(name, **options)
    _load_entry_points()
    if name in _ENTRY_POINTS:
        obj = _ENTRY_POINTS.pop(name).load()
        register_quantizer(obj, name=name, replace=True)
        return _REGISTRY[name]
    raise UnknownQuantizerError(name, _known_names())


def create_quantizer(name: str, **config: Any):
    """A new quantizer by registered name; ``config`` overrides its options (``None`` values dropped,
    so the quantizer's defaults apply). Unknown names raise :class:`UnknownQuantizerError`."""
    if not isinstance(name, str):
        raise TypeError(f"Expected a quantizer name (str), but got {type(name).__name__}")
    factory = _factory(name)
    q = factory(**{k: v for k, v in config.items() if v is not None})
    if not is_quantizer(q):
        raise TypeError(f"Expected quantizer {name!r} to build an object with name, family, available(), "
                        f"quantize() and describe(), but got {type(q).__name__}")
    return q


def _import_target(module_part: str):
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise FileNotFoundError(f"Expected a Python file, but got {module_part!r} (not found)")
        mod_name = f"_qclip_user_quantizer_{path.stem}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(module_part)


def load_quantizer_from_path(path: str, *, register: bool = True, **config: Any):
    """Load a quantizer from ``"module:attr"`` (or ``"file.py:attr"``; ``attr`` may be dotted).

    ``attr`` is a Quantizer instance, or a class/factory called with ``config``. The quantizer is
    registered under its ``name`` (replacing an earlier one) unless ``register=False``, so later
    ``create_quantizer(name)`` calls and ``-k name`` selections find it.
    """
    if not isinstance(path, str) or path.count(":") < 1 or not path.rpartition(":")[2]:
        raise ValueError(f"Expected 'module:attr' (e.g. 'mypkg.quant:MyQuantizer'), but got {path!r}")
    module_part, _, attr = path.rpartition(":")
    obj = _import_target(module_part)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"Expected {module_part!r} to define {attr!r}, but {part!r} is missing")
        obj = getattr(obj, part)
    q = obj if is_quantizer(obj) and not isinstance(obj, type) else obj(**config)
    if not is_quantizer(q):
        raise TypeError(f"Expected {path!r} to give a quantizer (name, family, available(), quantize(), "
                        f"describe()), but got {type(q).__name__}")
    if register:
        register_quantizer(q, replace=True)
    return q
