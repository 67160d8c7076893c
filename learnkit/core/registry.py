"""One `Registry` class: named, rebuildable pieces that let `load_learner` rebuild a learner from JSON, without
pickle.

Registries, by what they hold:
- ``DLS_REGISTRY``: `DataLoaders` subclasses (``@register_dls``), each with ``export_config() -> dict`` (JSON:
  classes, vocab, fitted procs, transforms) and a classmethod ``from_config(config, device=None)`` that returns
  an inference-only DataLoaders;
- ``MODEL_REGISTRY``: model builders and model classes (``@register_model``), called with the JSON kwargs of
  ``learn.model_spec = {"builder": name, "kwargs": {...}}`` or, for a registered ``nn.Module`` class, of its
  ``export_config()`` (weights come separately);
- ``LOSS_REGISTRY``: loss classes (``@register_loss``), rebuilt from ``loss.export_config()`` or with no arguments;
- ``LEARNER_REGISTRY``: `Learner` subclasses (``@register_learner``), so that a loaded learner is the task's class
  (``show_results``, ``tta``, ``recommend``...).

>>> @register_model("demo.linear")
... def linear(n_in: int, n_out: int):
...     import torch
...     return torch.nn.Linear(n_in, n_out)
>>> get_model_builder("demo.linear")(n_in=2, n_out=1).out_features
1
>>> "demo.linear" in MODEL_REGISTRY.list()
True
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Registry", "register_dls", "register_model", "register_loss", "register_learner", "get_dls_class",
           "get_model_builder", "get_loss_class", "DLS_REGISTRY", "MODEL_REGISTRY", "LOSS_REGISTRY",
           "LEARNER_REGISTRY"]

T = TypeVar("T")


class Registry(dict):
    """Names → classes or functions. ``register`` is a decorator (with or without a name); ``lookup(name)``
    fails with the known names; ``list()`` gives them sorted. A plain dict otherwise.

    >>> shapes = Registry("shape")
    >>> @shapes.register
    ... class Square: ...
    >>> shapes.lookup("Square").__name__, shapes.list()
    ('Square', ['Square'])
    """

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """``@reg.register`` (the class or function name), ``@reg.register(name="x")`` or ``reg.register(obj)``."""
        if obj is None:
            return lambda o: self.register(o, name=name)
        self[name or obj.__name__] = obj
        return obj

    def lookup(self, name: str) -> Any:
        if name not in self:
            raise KeyError(f"unknown {self.what} {name!r}; known: {self.list()}. Import the module that defines it "
                           "(e.g. learnkit.vision) or check that the export comes from a compatible learnkit version.")
        return self[name]

    def list(self) -> list[str]:
        return sorted(self)

    def name_of(self, obj: Any) -> str | None:
        """The name ``obj`` is registered under, or ``None``."""
        return next((k for k, v in self.items() if v is obj), None)


DLS_REGISTRY = Registry("DataLoaders type")
MODEL_REGISTRY = Registry("model builder")
LOSS_REGISTRY = Registry("loss function")
LEARNER_REGISTRY = Registry("Learner type")


def register_dls(cls: type) -> type:
    """Class decorator: make a DataLoaders subclass rebuildable by its class name."""
    return DLS_REGISTRY.register(cls)


def register_model(name: str | Callable | None = None) -> Any:
    """Register a model builder or an ``nn.Module`` class so that `load_learner` can rebuild it.

    ``@register_model("vision.timm")`` names it; bare ``@register_model`` uses ``module.QualName``. A registered
    class is exported without a ``model_spec``: its constructor kwargs come from its ``export_config()``
    (a JSON dict; none needed when the constructor takes no arguments), like Keras's ``get_config``.

    >>> import torch
    >>> @register_model
    ... class Tiny(torch.nn.Module):
    ...     def __init__(self, width: int = 4):
    ...         super().__init__()
    ...         self.width, self.fc = width, torch.nn.Linear(2, width)
    ...     def export_config(self):
    ...         return {"width": self.width}
    >>> MODEL_REGISTRY.name_of(Tiny).endswith("Tiny")
    True
    """
    if callable(name):  # bare decorator
        obj = name
        return MODEL_REGISTRY.register(obj, name=f"{obj.__module__}.{obj.__qualname__}")
    return MODEL_REGISTRY.register(name=name)


def register_loss(cls: type) -> type:
    """Class decorator: make a loss class rebuildable by its class name."""
    return LOSS_REGISTRY.register(cls)


def register_learner(cls: type) -> type:
    """Class decorator: a `Learner` subclass that `load_learner` rebuilds as itself (by its class name)."""
    return LEARNER_REGISTRY.register(cls)


def get_dls_class(name: str) -> type:
    return DLS_REGISTRY.lookup(name)


def get_model_builder(name: str) -> Callable[..., Any]:
    return MODEL_REGISTRY.lookup(name)


def get_loss_class(name: str) -> type:
    return LOSS_REGISTRY.lookup(name)
