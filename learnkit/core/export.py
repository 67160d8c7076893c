"""`export_learner` / `load_learner`: a trained learner in one safe file, and back in a fresh process.

The file is a single **safetensors** file: the weights are its tensors and the JSON config sits in its
header metadata (key ``"learnkit"``). Loading it parses a JSON header and copies raw tensor bytes — no
pickle, no code from the file is ever run. The config names what to rebuild; the code that rebuilds it is
learnkit's own, found in the registries of `learnkit.core.registry`:

- ``dls``: the registered task DataLoaders type and its ``export_config()`` (classes, vocab, fitted procs,
  transforms) → ``get_dls_class(type).from_config(config, device)`` (inference only, no training data);
- ``model``: ``learn.model_spec`` → ``get_model_builder(builder)(**kwargs)`` (or a ``@register_model`` class and
  its ``export_config()``), then the weights, strictly; the user's own unregistered model loads with
  ``load_learner(path, model=MyNet())``;
- ``learner``: the registered `Learner` subclass (``@register_learner``), so that a loaded learner keeps its
  task's methods (``show_results``, ``tta``, ``recommend``...);
- ``loss``: a registered loss class and its ``export_config()`` (it holds ``activation``/``decodes``).

The only modules `load_learner` imports are the ones named in the config *and* under ``learnkit.``
(where the task packages register their names); anything else must already be imported by the caller.

>>> import torch, tempfile, os
>>> from torch.utils.data import TensorDataset
>>> from learnkit import DataLoaders, Learner, MSELossFlat, load_learner, register_dls, register_model
>>> @register_model("doctest.linear")
... def linear(n_in: int, n_out: int): return torch.nn.Linear(n_in, n_out)
>>> @register_dls
... class DoctestDls(DataLoaders):
...     def export_config(self): return {}
...     @classmethod
...     def from_config(cls, config, device=None): return cls(None, None, device=device)
...     def test_dl(self, items, with_labels=False, bs=None): return [(torch.stack(list(items)),)]
>>> ds = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
>>> dls = DoctestDls.from_dsets(ds, ds, bs=4, device="cpu")
>>> learn = Learner(dls, linear(2, 1), loss_func=MSELossFlat(), progress=False)
>>> learn.model_spec = {"builder": "doctest.linear", "kwargs": {"n_in": 2, "n_out": 1}}
>>> fname = learn.export(os.path.join(tempfile.mkdtemp(), "export.safetensors"))
>>> new = load_learner(fname, device="cpu")
>>> torch.equal(new.model.weight, learn.model.weight)
True
"""
from __future__ import annotations

import importlib
import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .data import DataLoaders
from .export_check import build_model_checked, check_dls_sizes, check_kwargs, check_size_bounds, tensor_shapes
from .paths import expand_path, output_file, write_or_rescue
from .device import default_device
from .precision import restored_precision
from .registry import DLS_REGISTRY, LEARNER_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY, NotRegisteredError
from .safefile import ExportError, _read_header, load_tree, pack_tree, save_tree, unpack_tree  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["export_learner", "load_learner", "read_export_config", "ExportError", "FORMAT", "FORMAT_VERSION",
           "pack_tree", "unpack_tree", "save_tree", "load_tree"]

FORMAT = "learnkit-export"
#: Version of the file layout. A reader accepts files of its own version or older ones it knows.
FORMAT_VERSION = 1
_MIN_FORMAT_VERSION = 1


# --- export ----------------------------------------------------------------------------------------------
def _json_check(obj: Any, where: str) -> None:
    """Raise a TypeError naming the first value that JSON cannot hold."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _json_check(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a key {k!r} of type {type(k).__name__}; JSON keys must be strings")
            _json_check(v, f"{where}[{k!r}]")
        return
    raise TypeError(f"{where} is a {type(obj).__name__}, which JSON cannot hold: convert it to lists, numbers "
                    "and strings (e.g. tensor.tolist(), float(x))")


def _registered_name(registry: dict, obj: type, what: str, how: str) -> str:
    name = obj.__name__
    if registry.get(name) is not obj:
        raise ValueError(f"{what} {name} is not registered, so load_learner could not rebuild it: {how}")
    return name


def export_learner(learn: "Learner", fname: str | Path = "export.safetensors") -> Path:
    """Write ``learn`` for inference to one safetensors file (see the module docstring); returns its path.

    A relative ``fname`` is relative to ``learn.path``; ``~`` and ``$VARS`` are expanded. An empty name or
    the name of a folder writes ``export.safetensors`` (there, or in that folder), with a warning. Written
    atomically: a crash or a full disk leaves any previous file intact; when the file cannot be written at all
    (a read-only folder...), the model is written to `learnkit.core.paths.rescue_folder` and the error says where.
    """
    import learnkit

    path = output_file(fname, "export.safetensors", learn.path, what="the export")
    model_entry = _model_entry(learn)
    dls_cls = type(learn.dls)
    _registered_name(DLS_REGISTRY, dls_cls, "the DataLoaders type", "export needs a task DataLoaders "
                     "(ImageDataLoaders, TabularDataLoaders, ...) or your subclass decorated with @register_dls "
                     "with export_config() and from_config()")
    dls_cfg = learn.dls.export_config()
    _json_check(dls_cfg, f"{dls_cls.__name__}.export_config()")
    loss_cls = type(learn.loss_func)
    _registered_name(LOSS_REGISTRY, loss_cls, "the loss function", "use a learnkit loss (CrossEntropyLossFlat, ...) "
                     "or decorate your loss class with @register_loss (and give it export_config() if it has arguments)")
    loss_cfg = learn.loss_func.export_config() if hasattr(learn.loss_func, "export_config") else {}
    _json_check(loss_cfg, f"{loss_cls.__name__}.export_config()")
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "learnkit_version": learnkit.__version__, "torch_version": torch.__version__,
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "dls": {"type": dls_cls.__name__, "module": dls_cls.__module__, "config": dls_cfg},
        "model": model_entry,
        "learner": {"type": _learner_name(learn), "module": type(learn).__module__},
        "loss": {"type": loss_cls.__name__, "module": loss_cls.__module__, "config": loss_cfg},
        "precision": learn.precision,
    }
    rec = getattr(learn, "recorder", None)
    if rec is not None and rec.values:  # what `learnkit info` shows: the last epoch's losses and metrics
        final = {k: float(v) for k, v in rec.final_record().items() if isinstance(v, (int, float)) and math.isfinite(v)}
        header["training"] = {"epochs": len(rec.values), "final": final}
    json.loads(json.dumps(header))  # fails here, not at load time, if anything is off
    state = learn.model.state_dict()
    return write_or_rescue(path, lambda p: save_tree(p, state, header), "the export")


def _model_entry(learn: "Learner") -> dict[str, Any]:
    """How to rebuild ``learn.model``: its ``model_spec`` (task learners), a registered class with its
    ``export_config()``, or — for an unregistered model — only its class name (``load_learner(path, model=...)``)."""
    spec = getattr(learn, "model_spec", None)
    if spec is not None:
        if not isinstance(spec, dict) or not isinstance(spec.get("builder"), str):
            raise ValueError(f"learn.model_spec must be {{'builder': name, 'kwargs': {{...}}}}, got {spec!r}")
        builder = MODEL_REGISTRY.get(spec["builder"])
        if builder is None:
            raise ValueError(f"model builder {spec['builder']!r} is not registered (@register_model); "
                             f"known: {MODEL_REGISTRY.list()}")
        kwargs = spec.get("kwargs", {})
        _json_check(kwargs, "learn.model_spec['kwargs']")
        return {"builder": spec["builder"], "module": builder.__module__, "kwargs": kwargs}
    cls = type(learn.model)
    name = MODEL_REGISTRY.name_of(cls)
    if name is not None:
        kwargs = learn.model.export_config() if hasattr(learn.model, "export_config") else {}
        _json_check(kwargs, f"{cls.__name__}.export_config()")
        return {"builder": name, "module": cls.__module__, "kwargs": kwargs}
    return {"builder": None, "class": f"{cls.__module__}.{cls.__qualname__}", "kwargs": {}}


def _learner_name(learn: "Learner") -> str:
    """The registered class nearest to ``type(learn)`` (a user's unregistered subclass loads as its parent)."""
    for cls in type(learn).__mro__:
        name = LEARNER_REGISTRY.name_of(cls)
        if name is not None:
            return name
    return "Learner"


# --- load ------------------------------------------------------------------------------------------------
_MODULE_RE = re.compile(r"learnkit(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _resolve(registry: dict, entry: dict, key: str, what: str, path: Path) -> Any:
    """The registered object named ``entry[key]``, importing ``entry['module']`` first only when it is a
    learnkit module. Never imports anything else."""
    name, module = entry.get(key), entry.get("module")
    if not isinstance(name, str):
        raise ExportError(f"{path}: the config gives no {what} name")
    if name not in registry and isinstance(module, str) and _MODULE_RE.fullmatch(module):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ExportError(f"{path} needs {module}, which this learnkit cannot import ({e}); install the "
                              "learnkit version or extras it was exported with") from None
    if name not in registry:
        hint = (f"import the module that defines it ({module}) before load_learner: learnkit only imports "
                "its own modules from an export" if isinstance(module, str) and not _MODULE_RE.fullmatch(module)
                else "the export may come from a newer learnkit")
        raise ExportError(f"{path} needs the {what} {name!r}, which is not registered; {hint}. "
                          f"Known: {sorted(registry)}")
    return registry[name]


def _is_learnkit(obj: Any) -> bool:
    """Whether ``obj`` is defined in learnkit (its model builders take only sizes, counts and ids)."""
    return bool(_MODULE_RE.fullmatch(getattr(obj, "__module__", "") or ""))


def read_export_config(path: str | Path) -> dict[str, Any]:
    """The JSON config of an export, checked for format and version (no tensors are read)."""
    path = expand_path(path)
    header = _read_header(path, "export")
    if header.get("format") != FORMAT:
        raise ExportError(f"{path} is a learnkit file but not an export (format {header.get('format')!r}); "
                          "checkpoints resume with learn.fit(..., resume=path)")
    version = header.get("format_version")
    if not isinstance(version, int) or not _MIN_FORMAT_VERSION <= version <= FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ExportError(f"{path} uses export format version {version!r}, but this learnkit reads versions "
                          f"{_MIN_FORMAT_VERSION} to {FORMAT_VERSION}"
                          + ("; upgrade learnkit to load it" if newer else "; export it again with this learnkit")
                          + f" (it was written by learnkit {header.get('learnkit_version')})")
    for part in ("dls", "model", "loss"):
        if not isinstance(header.get(part), dict):
            raise ExportError(f"{path}: the config has no {part!r} section; the file is damaged")
    return header


def load_learner(path: str | Path, cpu: bool | None = None, device: str | torch.device | None = None,
                 model: torch.nn.Module | None = None) -> "Learner":
    """Rebuild a learner written by ``learn.export()`` for inference (``predict``, ``get_preds``).

    Needs neither the training data nor any code from the file. ``cpu=True`` (fastai's argument) loads it
    on the CPU, ``cpu=False`` on the default accelerator. ``device`` names one explicitly; with neither,
    ``device=None`` picks CUDA, then MPS, then CPU (or ``$LEARNKIT_DEVICE``) — unlike fastai, whose
    default is ``cpu=True``.

    ``model``: the architecture of an export whose model class was not registered (the user's own
    ``nn.Module``): ``load_learner(path, model=MyNet())`` loads the file's weights into it. A class decorated
    with ``@register_model`` (and imported before loading) is rebuilt without it.

    >>> import tempfile
    >>> @register_dls
    ... class PlainDataLoaders(DataLoaders):  # a task DataLoaders: rebuilt from JSON, without the training data
    ...     def export_config(self): return {"vocab": self.vocab}
    ...     @classmethod
    ...     def from_config(cls, config, device=None): return cls(None, device=device, vocab=config["vocab"])
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randint(0, 2, (8,)), bs=4)
    >>> learn = Learner(PlainDataLoaders(dl, dl, device="cpu", vocab=["no", "yes"]), torch.nn.Linear(2, 2),
    ...                 loss_func=CrossEntropyLossFlat(), path=tempfile.mkdtemp(), progress=False)
    >>> path = learn.export("model.safetensors")  # learn.path/model.safetensors
    >>> new = load_learner(path, cpu=True, model=torch.nn.Linear(2, 2))  # an unregistered model: pass its architecture
    >>> torch.equal(new.model.weight, learn.model.weight), new.dls.vocab, type(new.loss_func).__name__
    (True, ['no', 'yes'], 'CrossEntropyLossFlat')
    """
    from .learner import Learner

    if cpu is not None and not isinstance(cpu, bool):
        raise TypeError(f"cpu must be True or False, got {cpu!r}; to pick a device pass device='cuda:1'")
    if cpu and device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"load_learner got cpu=True and device={device!r}; pass one of them")
    if cpu:
        device = "cpu"
    path = expand_path(path)
    cfg = read_export_config(path)
    dev = default_device(device)
    dls_cls = _resolve(DLS_REGISTRY, cfg["dls"], "type", "DataLoaders type", path)
    if model is not None and not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be an nn.Module instance (the architecture to load the weights into), got {model!r}")
    builder = None
    if model is None:
        if cfg["model"].get("builder") is None:
            cls = str(cfg["model"].get("class", "a custom model"))
            short = cls.rsplit(".", 1)[-1]
            raise ExportError(f"{path} holds the weights of a custom model ({cls}) whose architecture is not in the "
                              f"file: pass it, load_learner(path, model={short}(...)), or decorate the class with "
                              "@register_model (with an export_config() returning its constructor arguments) and "
                              "import it before load_learner")
        builder = _resolve(MODEL_REGISTRY, cfg["model"], "builder", "model builder", path)
    loss_cls = _resolve(LOSS_REGISTRY, cfg["loss"], "type", "loss function", path)
    kwargs, loss_kwargs = cfg["model"].get("kwargs", {}), cfg["loss"].get("config", {})
    if not isinstance(kwargs, dict) or not isinstance(loss_kwargs, dict):
        raise ExportError(f"{path}: the model kwargs and the loss config must be JSON objects; the file is damaged")
    # every size in the config is checked against the stored tensors and sane bounds before anything is built
    name = f"the model builder {cfg['model'].get('builder')!r}"
    try:
        check_kwargs(loss_cls, loss_kwargs, "loss.config", f"the loss {loss_cls.__name__}")
        check_dls_sizes(cfg["dls"].get("config", {}))
    except ExportError as e:
        raise ExportError(f"{path}: {e}") from None
    try:
        dls = dls_cls.from_config(cfg["dls"].get("config", {}), device=dev)
    except NotRegisteredError as e:  # a custom transform or tokenizer whose module the caller did not import
        raise ExportError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
        raise ExportError(f"{path}: {dls_cls.__name__}.from_config could not rebuild the data pipeline from the "
                          f"file's config ({type(e).__name__}: {e}); the file is damaged or from another version") from e
    if not isinstance(dls, DataLoaders):
        raise ExportError(f"{dls_cls.__name__}.from_config returned a {type(dls).__name__}, not a DataLoaders")
    _, state = load_tree(path, "export")  # the tensors: no more memory than the file's size
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{path}: the weights section is not a mapping of names to tensors; the file is damaged")
    shapes = tensor_shapes(state)
    if builder is not None:
        try:
            check_kwargs(builder, kwargs, "model.kwargs", name)
            if _is_learnkit(builder):  # learnkit's builders take sizes, counts and ids only
                check_size_bounds(builder, kwargs, shapes, "model.kwargs")
        except ExportError as e:
            raise ExportError(f"{path}: {e}") from None
    if builder is not None:
        model = build_model_checked(builder, kwargs, shapes, cfg["model"]["builder"], path,
                                    strict_meta=_is_learnkit(builder))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        arch = type(model).__name__ if builder is None else f"{cfg['model']['builder']}(**{kwargs})"
        raise ExportError(f"{path}: the weights do not fit the architecture {arch}: {e}") from None
    try:
        loss = loss_cls(**loss_kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ExportError(f"{path}: the loss {loss_cls.__name__} could not be rebuilt from loss.config "
                          f"({type(e).__name__}: {e}); the file is damaged or from another version") from None
    learner_cls = Learner
    if isinstance(cfg.get("learner"), dict):  # exports before learner types were recorded load as a Learner
        learner_cls = _resolve(LEARNER_REGISTRY, cfg["learner"], "type", "Learner type", path)
    learn = learner_cls(dls, model, loss_func=loss, path=path.parent, device=dev)
    if builder is not None:
        learn.model_spec = {"builder": cfg["model"]["builder"], "kwargs": kwargs}
    precision = restored_precision(cfg.get("precision", "fp32"), learn.device)  # mixed precision on CUDA only
    if precision != "fp32":
        getattr(learn, f"to_{precision}")()
    learn.model.eval()
    return learn
