"""Hooks: read what a layer computes (its output, or the gradient of its output) while the model runs.

fastai's ``fastai.callback.hook`` names: `Hook`, `hook_output`, `Hooks`, `hook_outputs`, `HookCallback`,
`model_sizes`, `num_features_model`. Every hook is a context manager: leaving the ``with`` block, normally
or through an exception, removes it from the module, so no hook outlives the code that wanted it.
`HookCallback` removes its hooks after ``fit``, and also when ``fit`` raises.

>>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2))
>>> with hook_output(model[0]) as h:
...     _ = model(torch.randn(2, 3, 16, 16))
>>> h.stored.shape, len(model[0]._forward_hooks)    # the hook is gone after the block
(torch.Size([2, 8, 16, 16]), 0)
>>> [tuple(s) for s in model_sizes(model, (16, 16))]
[(1, 8, 16, 16), (1, 8, 16, 16), (1, 4, 7, 7)]
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from .callback import Callback

__all__ = ["Hook", "hook_output", "Hooks", "hook_outputs", "HookCallback", "model_sizes", "num_features_model",
           "dummy_eval", "in_channels", "has_params", "flatten_model"]


def _detach(o: Any, cpu: bool = False) -> Any:
    """Tensors inside ``o`` (a tensor, or nested lists/tuples/dicts) detached, optionally on the CPU."""
    if isinstance(o, torch.Tensor):
        o = o.detach()
        return o.cpu() if cpu else o
    if isinstance(o, (list, tuple)):
        items = [_detach(v, cpu) for v in o]
        return type(o)(*items) if hasattr(o, "_fields") else type(o)(items)  # a named tuple takes fields
    if isinstance(o, dict):
        return {k: _detach(v, cpu) for k, v in o.items()}
    return o


def _hook_inner(m: nn.Module, i: Any, o: Any) -> Any:
    """What `hook_output` stores: the output itself (a list when the module returns a tuple)."""
    return o if isinstance(o, (torch.Tensor, list)) else list(o)


class Hook:
    """Call ``hook_func(module, input, output)`` at each forward pass of ``m`` and keep its result in ``stored``.

    With ``is_forward=False`` the hook sees gradients instead: ``hook_func(module, grad_input, grad_output)``
    runs during ``backward``, with ``grad_output`` the gradient of the loss with respect to the module's output
    (a tuple). It is read from the output tensor itself (a tensor hook set at each forward pass), not with
    ``register_full_backward_hook``, so a module followed by an in-place ReLU can be hooked too;
    ``grad_input`` is ``None``. ``detach`` detaches the input and output (or the gradients) before
    ``hook_func`` sees them, ``cpu`` moves them to the CPU (a host sync: leave it off in training).

    Use it as a context manager (``with Hook(m, f) as h:``) or call ``remove()``; removing twice is harmless.

    >>> lin = nn.Linear(3, 2)
    >>> with Hook(lin, lambda m, i, o: o.shape) as h:
    ...     _ = lin(torch.randn(5, 3))
    >>> h.stored, h.removed
    (torch.Size([5, 2]), True)
    """

    def __init__(self, m: nn.Module, hook_func: Callable[[nn.Module, Any, Any], Any], is_forward: bool = True,
                 detach: bool = True, cpu: bool = False):
        if not isinstance(m, nn.Module):
            raise TypeError(f"a Hook goes on an nn.Module, got {type(m).__name__}")
        self.module, self.hook_func, self.is_forward, self.detach, self.cpu = m, hook_func, is_forward, detach, cpu
        self.stored: Any = None
        self.removed = False
        self._tensor_hooks: list[Any] = []
        self.hook = m.register_forward_hook(self.hook_fn if is_forward else self._grad_fwd)

    def hook_fn(self, module: nn.Module, input: Any, output: Any) -> None:
        """The forward hook: store ``hook_func(module, input, output)``."""
        if self.detach:
            input, output = _detach(input, self.cpu), _detach(output, self.cpu)
        self.stored = self.hook_func(module, input, output)

    def _grad_fwd(self, module: nn.Module, input: Any, output: Any) -> None:
        """For gradient hooks: at each forward pass, hook the output tensor(s) that require a gradient."""
        if isinstance(output, torch.Tensor):
            outs = [output]
        else:
            outs = [o for o in output if isinstance(o, torch.Tensor)] if isinstance(output, (list, tuple)) else []
        for h in self._tensor_hooks:  # only the latest forward pass is watched
            h.remove()
        self._tensor_hooks = []
        if len(outs) == 1:
            if outs[0].requires_grad:
                self._tensor_hooks.append(outs[0].register_hook(lambda g: self._on_grad(module, (g,))))
            return
        grads: list[Any] = [None] * len(outs)
        for k, o in enumerate(outs):
            if o.requires_grad:
                def store(g, k=k):
                    grads[k] = g
                    self._on_grad(module, tuple(grads))
                self._tensor_hooks.append(o.register_hook(store))

    def _on_grad(self, module: nn.Module, grad_output: tuple) -> None:
        if self.detach:
            grad_output = _detach(grad_output, self.cpu)
        self.stored = self.hook_func(module, None, grad_output)

    def remove(self) -> None:
        """Take the hook off the module (idempotent)."""
        if not self.removed:
            self.hook.remove()
            for h in self._tensor_hooks:
                h.remove()
            self._tensor_hooks = []
            self.removed = True

    def __enter__(self) -> "Hook":
        return self

    def __exit__(self, *args: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        kind = "forward" if self.is_forward else "gradient"
        return f"Hook({type(self.module).__name__}, {kind}{', removed' if self.removed else ''})"


def _grad_inner(m: nn.Module, gi: Any, go: tuple) -> Any:
    return go[0] if len(go) == 1 else list(go)


def hook_output(module: nn.Module, detach: bool = True, cpu: bool = False, grad: bool = False) -> Hook:
    """A `Hook` that stores the output of ``module`` (``grad=True``: the gradient of the loss with respect to
    that output, after ``backward``) in ``.stored``.

    >>> conv = nn.Conv2d(3, 4, 3)
    >>> x = torch.randn(1, 3, 8, 8)
    >>> with hook_output(conv) as act, hook_output(conv, grad=True) as grad:
    ...     conv(x).sum().backward()
    >>> act.stored.shape, bool((grad.stored == 1).all())          # d sum / d output = 1 everywhere
    (torch.Size([1, 4, 6, 6]), True)
    """
    return Hook(module, _grad_inner if grad else _hook_inner, is_forward=not grad, detach=detach, cpu=cpu)


class Hooks:
    """A `Hook` on each module of ``ms``: ``hooks[i]``, ``len(hooks)``, iteration, ``hooks.stored`` (the list of
    what each one stored) and ``remove()``; a context manager like `Hook`.

    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> with Hooks(model, lambda m, i, o: o.shape[1]) as hooks:
    ...     _ = model(torch.randn(2, 4))
    >>> hooks.stored, len(hooks)
    ([3, 3, 1], 3)
    """

    def __init__(self, ms: Iterable[nn.Module], hook_func: Callable[[nn.Module, Any, Any], Any],
                 is_forward: bool = True, detach: bool = True, cpu: bool = False):
        self.hooks: list[Hook] = []
        try:
            for m in _modules(ms):
                self.hooks.append(Hook(m, hook_func, is_forward, detach, cpu))
        except BaseException:
            self.remove()
            raise

    def __getitem__(self, i: int) -> Hook:
        return self.hooks[i]

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    @property
    def stored(self) -> list[Any]:
        return [h.stored for h in self.hooks]

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()

    def __enter__(self) -> "Hooks":
        return self

    def __exit__(self, *args: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Hooks({len(self.hooks)} modules)"


def _modules(ms: Any) -> list[nn.Module]:
    """``ms`` as a list of modules: a list/tuple of modules, or a container module's children."""
    if isinstance(ms, nn.Module):
        return list(ms) if isinstance(ms, (nn.Sequential, nn.ModuleList)) else list(ms.children())
    out = list(ms)
    bad = [type(m).__name__ for m in out if not isinstance(m, nn.Module)]
    if bad:
        raise TypeError(f"hooks go on nn.Modules, got {bad}")
    return out


def hook_outputs(modules: Iterable[nn.Module], detach: bool = True, cpu: bool = False, grad: bool = False) -> Hooks:
    """`Hooks` storing the output (``grad=True``: its gradient) of each of ``modules``.

    >>> body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Conv2d(8, 16, 3, stride=2))
    >>> with hook_outputs(body) as hooks:
    ...     _ = body(torch.randn(1, 3, 32, 32))
    >>> [tuple(o.shape) for o in hooks.stored]
    [(1, 8, 15, 15), (1, 16, 7, 7)]
    """
    return Hooks(modules, _grad_inner if grad else _hook_inner, is_forward=not grad, detach=detach, cpu=cpu)


def has_params(m: nn.Module) -> bool:
    """Whether ``m`` has parameters of its own or in its children.

    >>> has_params(nn.Linear(2, 2)), has_params(nn.ReLU())
    (True, False)
    """
    return any(True for _ in m.parameters())


def flatten_model(m: nn.Module) -> list[nn.Module]:
    """The leaf modules of ``m`` (those without children), in order.

    >>> [type(l).__name__ for l in flatten_model(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU())))]
    ['Linear', 'ReLU']
    """
    return [mod for mod in m.modules() if not any(True for _ in mod.children())]


def in_channels(m: nn.Module) -> int:
    """The input channels of the first convolution of ``m`` (the images it expects).

    >>> in_channels(nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 4, 3)))
    1
    """
    for layer in m.modules():
        w = getattr(layer, "weight", None)
        if isinstance(layer, nn.modules.conv._ConvNd) and isinstance(w, torch.Tensor):
            return int(w.shape[1]) * layer.groups
    raise ValueError(f"no convolution in {type(m).__name__}: cannot tell how many channels it expects")


def _one_param(m: nn.Module) -> torch.Tensor:
    for p in m.parameters():
        return p
    for b in m.buffers():
        return b
    return torch.empty(0)


def dummy_eval(m: nn.Module, size: tuple[int, int] = (64, 64)) -> Any:
    """Run ``m`` in eval mode on one random image of ``size``, without gradients; its train/eval mode is
    restored afterwards.

    >>> dummy_eval(nn.Conv2d(3, 2, 3), (8, 8)).shape
    torch.Size([1, 2, 6, 6])
    """
    p = _one_param(m)
    dtype = p.dtype if p.is_floating_point() else torch.float32
    x = torch.empty(1, in_channels(m), *size, device=p.device, dtype=dtype).uniform_(-1.0, 1.0)
    was = m.training
    try:
        with torch.no_grad():
            return m.eval()(x)
    finally:
        m.train(was)


def model_sizes(m: nn.Module, size: tuple[int, int] = (64, 64)) -> list[torch.Size]:
    """The output shape of each child of ``m`` (a Sequential: each layer) on one ``size`` image.

    >>> body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
    >>> [s[1:] for s in model_sizes(body, (32, 32))]
    [torch.Size([8, 16, 16]), torch.Size([8, 16, 16]), torch.Size([16, 8, 8])]
    """
    with hook_outputs(m) as hooks:
        dummy_eval(m, size)
        return [o.stored.shape for o in hooks]


def num_features_model(m: nn.Module) -> int:
    """The channels of the output of ``m``, found by running it on a 32-pixel image (doubled until the model
    accepts it, up to 2048).

    >>> num_features_model(nn.Sequential(nn.Conv2d(3, 32, 3), nn.Conv2d(32, 64, 3)))
    64
    """
    sz = 32
    while True:
        try:
            return int(model_sizes(m, (sz, sz))[-1][1])
        except Exception:
            sz *= 2
            if sz > 2048:
                raise


class HookCallback(Callback):
    """A `Callback` that hooks ``modules`` (default: every leaf module with parameters of ``learn.model``) with
    its ``hook(module, input, output)`` method during ``fit``, and removes the hooks after it, also when ``fit``
    raises. ``every=n``: hook only every ``n``-th training batch (and no validation batch). Subclasses
    override ``hook``; what it returns is in ``self.hooks.stored`` after each batch.

    >>> class Shapes(HookCallback):
    ...     def hook(self, m, i, o): return tuple(o.shape)
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), model, loss_func=MSELossFlat(), progress=False)
    >>> cb = Shapes()
    >>> learn.fit(1, cbs=cb)
    >>> cb.hooks.stored, len(model[0]._forward_hooks)       # the last batch's shapes; no hook left behind
    ([(4, 3), (4, 1)], 0)
    """

    order = -20  # before anything that changes the inputs of the batch

    def __init__(self, modules: Iterable[nn.Module] | None = None, every: int | None = None, remove_end: bool = True,
                 is_forward: bool = True, detach: bool = True, cpu: bool = False, include_paramless: bool = False,
                 hook: Callable[[nn.Module, Any, Any], Any] | None = None):
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be a positive number of batches or None, got {every!r}")
        self.modules = list(modules) if modules is not None else None
        self.every, self.remove_end, self.is_forward = every, remove_end, is_forward
        self.detach, self.cpu, self.include_paramless = detach, cpu, include_paramless
        if hook is not None:
            self.hook = hook
        self.hooks: Hooks | None = None
        self._train_iter = 0

    def hook(self, m: nn.Module, i: Any, o: Any) -> Any:
        """What to store for module ``m`` with input ``i`` and output ``o``: the output (subclasses override)."""
        return o

    def _default_modules(self) -> list[nn.Module]:
        model = self.learn.model
        return [m for m in flatten_model(model) if self.include_paramless or has_params(m)]

    def before_fit(self) -> None:
        self._mods = self.modules if self.modules is not None else self._default_modules()
        self._train_iter = 0
        if self.every is None:
            self._register()

    def before_batch(self) -> None:
        if self.every is not None and self.learn.training and self._train_iter % self.every == 0:
            self._register()

    def after_batch(self) -> None:
        if self.every is not None and self.learn.training:
            if self._train_iter % self.every == 0:
                self._remove()
        if self.learn.training:
            self._train_iter += 1

    def after_fit(self) -> None:
        if self.remove_end:
            self._remove()

    def after_fit_exception(self) -> None:
        self._remove()  # an error escaping fit: never leave a hook on the model

    def _register(self) -> None:
        self._remove()
        self.hooks = Hooks(self._mods, self.hook, self.is_forward, self.detach, self.cpu)

    def _remove(self) -> None:
        if self.hooks is not None:
            self.hooks.remove()

    def __del__(self) -> None:
        try:
            self._remove()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
