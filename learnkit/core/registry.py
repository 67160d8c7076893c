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
  (``show_results``, ``tta``, ``recommend``...);
- ``TRANSFORM_REGISTRY``: image item and batch transforms (``@register_transform``: `Resize`, `Normalize`...);
- ``TOKENIZER_REGISTRY``: text tokenizers (``@register_tokenizer``: ``"words"``, ``"pretrained"``).

Transforms and tokenizers are stored as a JSON config, ``{"type": registered name, **obj.export_config()}``
(`Registry.to_config`), and rebuilt with ``cls.from_config(rest)`` when the class has that classmethod, else
``cls(**rest)`` (`Registry.from_config`): ``export_config()`` returns the constructor's keyword arguments.

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

__all__ = ["Registry", "NotRegisteredError", "register_dls", "register_model", "register_loss", "register_learner",
           "register_transform", "register_tokenizer", "get_dls_class", "get_model_builder", "get_loss_class",
           "DLS_REGISTRY", "MODEL_REGISTRY", "LOSS_REGISTRY", "LEARNER_REGISTRY", "TRANSFORM_REGISTRY",
           "TOKENIZER_REGISTRY"]

T = TypeVar("T")


class NotRegisteredError(KeyError, ValueError):
    """A name that no registry entry has (a `KeyError`, and a `ValueError` as a bad config value; its message
    reads as a sentence)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _is_learnkit(obj: Any) -> bool:
    return str(getattr(obj, "__module__", "")).split(".")[0] == "learnkit"


class Registry(dict):
    """Names → classes or functions. ``register`` is a decorator (with or without a name); ``lookup(name)``
    fails with the known names and the decorator to use (``decorator``); ``list()`` gives them sorted. A plain
    dict otherwise. A name that learnkit registered cannot be taken by a class of another package (register
    yours under another name); registering the same name again otherwise replaces the entry (a re-run cell).

    >>> shapes = Registry("shape", decorator="register_shape")
    >>> @shapes.register
    ... class Square:
    ...     def __init__(self, side: int = 1):
    ...         self.side = side
    ...     def export_config(self) -> dict:
    ...         return {"side": self.side}
    >>> shapes.lookup("Square").__name__, shapes.list()
    ('Square', ['Square'])
    >>> shapes.to_config(Square(3))
    {'side': 3, 'type': 'Square'}
    >>> shapes.from_config({"type": "Square", "side": 3}).side
    3
    """

    def __init__(self, what: str, decorator: str | None = None):
        super().__init__()
        self.what, self.decorator = what, decorator

    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """``@reg.register`` (the class or function name), ``@reg.register(name="x")`` or ``reg.register(obj)``."""
        if obj is None:
            return lambda o: self.register(o, name=name)
        key = name or obj.__name__
        old = self.get(key)
        if old is not None and old is not obj and _is_learnkit(old) and not _is_learnkit(obj):
            how = f"@{self.decorator}(name=...)" if self.decorator else "register(obj, name=...)"
            raise ValueError(f"the {self.what} name {key!r} is learnkit's {old.__module__}.{old.__qualname__}; "
                             f"register {obj.__qualname__} under another name: {how}")
        self[key] = obj
        return obj

    def lookup(self, name: str) -> Any:
        if name not in self:
            how = (f"decorate it with @{self.decorator} and import its module before loading" if self.decorator
                   else "import the module that defines it (e.g. learnkit.vision)")
            raise NotRegisteredError(f"unknown {self.what} {name!r}; known: {self.list()}. To use your own, {how}; "
                                     "or check that the export comes from a compatible learnkit version.")
        return self[name]

    def list(self) -> list[str]:
        return sorted(self)

    def name_of(self, obj: Any) -> str | None:
        """The name ``obj`` is registered under, or ``None``."""
        return next((k for k, v in self.items() if v is obj), None)

    def to_config(self, obj: Any) -> dict[str, Any]:
        """``{**obj.export_config(), "type": name}`` for an instance of a registered class (exactly its class:
        a subclass must be registered itself). A `TypeError` names the decorator otherwise."""
        name = self.name_of(type(obj))
        how = f"@{self.decorator}" if self.decorator else f"{self.what} registry"
        if name is None:
            raise TypeError(f"the {self.what} {obj!r} ({type(obj).__qualname__}) is not registered, so load_learner "
                            f"could not rebuild it: decorate its class with {how} and give it an export_config() "
                            "that returns its constructor's keyword arguments (JSON values)")
        export = getattr(obj, "export_config", None)
        cfg = export() if callable(export) else {}
        if not isinstance(cfg, dict):
            raise TypeError(f"{type(obj).__qualname__}.export_config() must return a dict, got {type(cfg).__name__}")
        return {**cfg, "type": name}

    def from_config(self, config: dict[str, Any]) -> Any:
        """Rebuild what `to_config` described: ``cls.from_config(rest)`` if the class has it, else ``cls(**rest)``."""
        if not isinstance(config, dict) or not isinstance(config.get("type"), str):
            raise ValueError(f"a {self.what} config must be a dict with a 'type' name, got {config!r}")
        rest = {k: v for k, v in config.items() if k != "type"}
        cls = self.lookup(config["type"])
        build = getattr(cls, "from_config", None)
        try:
            return build(rest) if callable(build) else cls(**rest)
        except TypeError as e:
            raise TypeError(f"could not rebuild the {self.what} {config['type']!r} from {rest}: {e}. Its "
                            "export_config() must return its constructor's keyword arguments (or the class must "
                            "have a from_config(config) classmethod)") from e


DLS_REGISTRY = Registry("DataLoaders type", "register_dls")
MODEL_REGISTRY = Registry("model builder", "register_model")
LOSS_REGISTRY = Registry("loss function", "register_loss")
LEARNER_REGISTRY = Registry("Learner type", "register_learner")
TRANSFORM_REGISTRY = Registry("transform", "register_transform")
TOKENIZER_REGISTRY = Registry("tokenizer", "register_tokenizer")


def register_dls(cls: type) -> type:
    """Class decorator: make a DataLoaders subclass rebuildable by its class name.

    >>> @register_dls
    ... class DemoDataLoaders(DataLoaders):
    ...     def export_config(self): return {"vocab": self.vocab}  # JSON: what inference needs
    ...     @classmethod
    ...     def from_config(cls, config, device=None): return cls(None, device=device, vocab=config["vocab"])
    >>> dls = DemoDataLoaders(None, device="cpu", vocab=["a", "b"])
    >>> get_dls_class("DemoDataLoaders").from_config(dls.export_config(), device="cpu").vocab  # what load_learner does
    ['a', 'b']
    """
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
    """Class decorator: make a loss class rebuildable by its class name.

    >>> import torch
    >>> @register_loss
    ... class DemoHuberLoss(torch.nn.Module):
    ...     def __init__(self, delta: float = 1.0):
    ...         super().__init__()
    ...         self.delta = delta
    ...     def forward(self, pred, targ): return torch.nn.functional.huber_loss(pred, targ, delta=self.delta)
    ...     def export_config(self): return {"delta": self.delta}  # its constructor's arguments
    >>> get_loss_class("DemoHuberLoss")(**DemoHuberLoss(0.5).export_config()).delta  # what load_learner does
    0.5
    """
    return LOSS_REGISTRY.register(cls)


def register_learner(cls: type) -> type:
    """Class decorator: a `Learner` subclass that `load_learner` rebuilds as itself (by its class name).

    >>> @register_learner
    ... class DemoLearner(Learner):
    ...     def report(self): return f"{len(self.recorder.values)} epochs"  # a task method, kept by load_learner
    >>> LEARNER_REGISTRY.lookup("DemoLearner") is DemoLearner
    True
    """
    return LEARNER_REGISTRY.register(cls)


def register_transform(cls: type | None = None, *, name: str | None = None) -> Any:
    """Class decorator: an image transform (item or batch) that `load_learner` can rebuild.

    ``export_config()`` returns its constructor's keyword arguments as JSON values (or the class has a
    ``from_config(config)`` classmethod); the name is the class name unless ``name=`` gives one. Import the
    module that defines it before `load_learner`.

    >>> @register_transform
    ... class Brighten:
    ...     random = False
    ...     def __init__(self, by: float = 0.1):
    ...         self.by = by
    ...     def __call__(self, images, masks=None, *, points=None):
    ...         return images + self.by
    ...     def export_config(self) -> dict:
    ...         return {"by": self.by}
    >>> TRANSFORM_REGISTRY.from_config(TRANSFORM_REGISTRY.to_config(Brighten(0.5))).by
    0.5
    """
    if cls is None:
        return lambda c: register_transform(c, name=name)
    return TRANSFORM_REGISTRY.register(cls, name=name)


def register_tokenizer(cls: type | str | None = None, *, name: str | None = None) -> Any:
    """Class decorator: a text tokenizer that `load_learner` can rebuild (``@register_tokenizer`` or
    ``@register_tokenizer("name")``). Its ``export_config()`` returns its constructor's keyword arguments (or
    the class has a ``from_config(config)`` classmethod); see `learnkit.text.tokenize` for the interface.

    >>> @register_tokenizer("demo-chars")
    ... class CharTokenizer:
    ...     def __init__(self, lower: bool = True):
    ...         self.lower = lower
    ...     def export_config(self): return {"lower": self.lower}
    >>> config = TOKENIZER_REGISTRY.to_config(CharTokenizer(lower=False))  # what an export stores
    >>> config, TOKENIZER_REGISTRY.from_config(config).lower
    ({'lower': False, 'type': 'demo-chars'}, False)
    """
    if isinstance(cls, str):
        name, cls = cls, None
    if cls is None:
        return lambda c: register_tokenizer(c, name=name)
    return TOKENIZER_REGISTRY.register(cls, name=name)


def get_dls_class(name: str) -> type:
    """The `DataLoaders` subclass registered as ``name`` (`register_dls`); a `NotRegisteredError` lists the known.

    >>> @register_dls
    ... class DemoTableDataLoaders(DataLoaders):
    ...     pass
    >>> get_dls_class("DemoTableDataLoaders") is DemoTableDataLoaders
    True
    >>> get_dls_class("NoSuchDataLoaders")
    Traceback (most recent call last):
    ...
    learnkit.core.registry.NotRegisteredError: unknown DataLoaders type 'NoSuchDataLoaders'; known: [...]...
    """
    return DLS_REGISTRY.lookup(name)


def get_model_builder(name: str) -> Callable[..., Any]:
    """The model builder or class registered as ``name`` (`register_model`).

    >>> import torch
    >>> @register_model("demo.mlp")
    ... def mlp(n_in: int, n_hidden: int, n_out: int):
    ...     layers = [torch.nn.Linear(n_in, n_hidden), torch.nn.ReLU(), torch.nn.Linear(n_hidden, n_out)]
    ...     return torch.nn.Sequential(*layers)
    >>> model = get_model_builder("demo.mlp")(**{"n_in": 2, "n_hidden": 8, "n_out": 1})  # the kwargs of model_spec
    >>> model[-1].out_features
    1
    """
    return MODEL_REGISTRY.lookup(name)


def get_loss_class(name: str) -> type:
    """The loss class registered as ``name`` (`register_loss`).

    >>> config = CrossEntropyLossFlat(label_smoothing=0.1).export_config()  # what an export stores
    >>> loss = get_loss_class("CrossEntropyLossFlat")(**config)  # what load_learner rebuilds
    >>> type(loss).__name__, loss.label_smoothing
    ('CrossEntropyLossFlat', 0.1)
    """
    return LOSS_REGISTRY.lookup(name)
