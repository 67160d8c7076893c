"""Registries that let `load_learner` rebuild a learner from a JSON config, without pickle.

Task folders register, by name:
- their `DataLoaders` subclass (``register_dls``): it implements ``export_config() -> dict`` (JSON-able:
  classes, vocab, fitted procs, transforms) and ``from_config(config, device=None)``, a classmethod that
  returns an inference-only DataLoaders whose ``test_dl(items)`` and ``decode_pred`` work without data;
- their model builders (``register_model``): ``builder(**kwargs) -> nn.Module``, called with the JSON
  kwargs recorded in ``learn.model_spec = {"builder": name, "kwargs": {...}}`` (weights come separately);
- loss functions (``register_loss``): rebuilt from ``loss.export_config()`` (a dict of JSON kwargs) or
  with no arguments.

>>> @register_model("demo.linear")
... def linear(n_in: int, n_out: int):
...     import torch
...     return torch.nn.Linear(n_in, n_out)
>>> get_model_builder("demo.linear")(n_in=2, n_out=1).out_features
1
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["register_dls", "register_model", "register_loss", "get_dls_class", "get_model_builder", "get_loss_class",
           "DLS_REGISTRY", "MODEL_REGISTRY", "LOSS_REGISTRY"]

DLS_REGISTRY: dict[str, type] = {}
MODEL_REGISTRY: dict[str, Callable[..., Any]] = {}
LOSS_REGISTRY: dict[str, type] = {}


def register_dls(cls: type) -> type:
    """Class decorator: make a DataLoaders subclass rebuildable by its class name."""
    DLS_REGISTRY[cls.__name__] = cls
    return cls


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register a model builder under ``name`` (e.g. ``"vision.timm"``)."""
    def deco(f: Callable) -> Callable:
        MODEL_REGISTRY[name] = f
        return f
    return deco


def register_loss(cls: type) -> type:
    """Class decorator: make a loss class rebuildable by its class name."""
    LOSS_REGISTRY[cls.__name__] = cls
    return cls


def _get(reg: dict, name: str, what: str):
    if name not in reg:
        raise KeyError(f"unknown {what} {name!r}; known: {sorted(reg)}. Import the task module that defines it "
                       "(e.g. learnkit.vision) or check that the export comes from a compatible learnkit version.")
    return reg[name]


def get_dls_class(name: str) -> type:
    return _get(DLS_REGISTRY, name, "DataLoaders type")


def get_model_builder(name: str) -> Callable[..., Any]:
    return _get(MODEL_REGISTRY, name, "model builder")


def get_loss_class(name: str) -> type:
    return _get(LOSS_REGISTRY, name, "loss function")
