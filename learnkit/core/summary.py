"""`learn.summary()`: fastai's per-layer table, from forward hooks on one batch.

One row per leaf module (a module without children) in the order it ran: its type, output shape, number
of parameters and whether they train. Then the input shape, the parameter totals, the optimizer, the loss
and the callbacks. Printed as text, or as HTML in a notebook (``_repr_html_``).

>>> import torch
>>> from torch import nn
>>> s = model_summary(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), (torch.zeros(3, 4),))
>>> [(r.layer, r.output_shape, r.params) for r in s.rows]
[('Linear', '3 x 8', 40), ('ReLU', '3 x 8', 0), ('Linear', '3 x 2', 18)]
>>> s.total_params, s.input_shape
(58, '3 x 4')
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["LayerInfo", "LearnerSummary", "model_summary"]


@dataclass
class LayerInfo:
    """One row of the table."""

    layer: str
    output_shape: str
    params: int
    trainable: bool


@dataclass
class LearnerSummary:
    """The table `Learner.summary` prints and returns (``str(s)`` is the text, ``s._repr_html_()`` the HTML)."""

    model: str
    input_shape: str
    rows: list[LayerInfo]
    total_params: int
    trainable_params: int
    optimizer: str = "-"
    loss: str = "-"
    callbacks: list[str] = field(default_factory=list)
    frozen_note: str = ""

    def _footer(self) -> list[str]:
        lines = [f"Total params: {self.total_params:,}", f"Total trainable params: {self.trainable_params:,}",
                 f"Total non-trainable params: {self.total_params - self.trainable_params:,}", "",
                 f"Optimizer used: {self.optimizer}", f"Loss function: {self.loss}"]
        if self.frozen_note:
            lines += ["", self.frozen_note]
        return lines + ["", "Callbacks:"] + [f"  - {c}" for c in self.callbacks]

    def __str__(self) -> str:
        w = max([len("Layer (type)")] + [len(r.layer) for r in self.rows]) + 2
        s = max([len("Output Shape")] + [len(r.output_shape) for r in self.rows]) + 2
        rule = "=" * (w + s + 22)
        lines = [f"{self.model} (Input shape: {self.input_shape})", rule,
                 f"{'Layer (type)':<{w}}{'Output Shape':<{s}}{'Param #':<12}Trainable", rule]
        lines += [f"{r.layer:<{w}}{r.output_shape:<{s}}{r.params:<12,}{r.trainable}" for r in self.rows]
        return "\n".join(lines + [rule, ""] + self._footer())

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in ("Layer (type)", "Output Shape", "Param #",
                                                                         "Trainable"))
        body = "".join(f"<tr><td>{esc(r.layer)}</td><td>{esc(r.output_shape)}</td><td>{r.params:,}</td>"
                       f"<td>{r.trainable}</td></tr>" for r in self.rows)
        foot = "<br>".join(esc(line) for line in self._footer())
        return (f"<p><b>{esc(self.model)}</b> (Input shape: {esc(self.input_shape)})</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p>{foot}</p>")


def _shape(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return " x ".join(str(d) for d in x.shape)
    if isinstance(x, (list, tuple)) and x:
        return ", ".join(_shape(o) for o in x[:3]) + (", ..." if len(x) > 3 else "")
    if isinstance(x, dict) and x:
        return _shape(list(x.values()))
    return "-"


def model_summary(model: nn.Module, xb: Sequence[Any], optimizer: str = "-", loss: str = "-",
                  callbacks: Sequence[str] = (), frozen_note: str = "") -> LearnerSummary:
    """Run ``model(*xb)`` once (eval mode, no grad; the mode is restored) with forward hooks on every leaf
    module and collect the table."""
    rows: list[LayerInfo] = []

    def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
        ps = list(mod.parameters(recurse=False))
        rows.append(LayerInfo(type(mod).__name__, _shape(out), sum(p.numel() for p in ps),
                              any(p.requires_grad for p in ps)))

    leaves = [m for m in model.modules() if not list(m.children())] or [model]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*xb)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = list(model.parameters())
    return LearnerSummary(type(model).__name__, _shape(xb[0] if len(xb) == 1 else list(xb)), rows,
                          sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad),
                          optimizer, loss, list(callbacks), frozen_note)
