"""How a `Learner` runs its model fast: mixed precision (``to_fp16``/``to_bf16``/``to_fp32`` and the
``autocast`` the loop enters), channels-last memory, ``torch.compile`` and DDP under torchrun.

The rules behind them live in `learnkit.core.precision` and `learnkit.core.distributed`; these are the
`Learner` methods that switch them on (from `AccelerationMixin`).

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> ds = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
>>> learn = Learner(DataLoaders.from_dsets(ds, ds, bs=4, device="cpu"), torch.nn.Linear(2, 1),
...                 loss_func=MSELossFlat(), progress=False)
>>> learn.to_bf16().precision, learn.to_fp32().precision
('bf16', 'fp32')
"""
from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING

import torch

from .distributed import compile_learner, distrib_ctx, to_distributed
from .precision import memory_format_for

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["AccelerationMixin"]


class AccelerationMixin:
    """The precision, memory-layout, compile and DDP methods of `Learner`."""

    def to_fp16(self: Learner) -> Learner:
        """fp16 autocast with a GradScaler on CUDA (conv nets also go channels-last there); on other devices
        warns and keeps fp32."""
        if self.device.type != "cuda":
            warnings.warn(f"fp16 mixed precision needs CUDA (device is {self.device}); training stays in fp32. "
                          "Use learn.to_bf16() for bfloat16 autocast on this device.", stacklevel=2)
            return self.to_fp32()
        self.precision = "fp16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=True)
        self._channels_last_on_cuda()
        return self

    def to_bf16(self: Learner) -> Learner:
        """bfloat16 autocast (CUDA or CPU; conv nets also go channels-last on CUDA); no gradient scaling is needed."""
        self.precision = "bf16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=False)
        self._channels_last_on_cuda()
        return self

    def to_fp32(self: Learner) -> Learner:
        """Full float32 again (no autocast, no gradient scaling)."""
        self.precision = "fp32"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=False)
        return self

    def autocast(self: Learner) -> contextlib.AbstractContextManager:
        """The autocast context of ``self.precision`` (a no-op in fp32) that the forward pass and loss run in."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def to_channels_last(self: Learner) -> Learner:
        """Store conv weights (and so activations) channels-last, the layout tensor cores prefer on CUDA
        (``channels_last_3d`` for 3-D convolutions; a no-op when conv ranks are mixed)."""
        fmt = memory_format_for(self.model)
        if fmt is not None:
            self.model.to(memory_format=fmt)
        return self

    def _channels_last_on_cuda(self: Learner) -> None:
        if self.device.type == "cuda" and memory_format_for(self.model) is not None:
            self.to_channels_last()

    def compile(self: Learner, mode: str | None = None, fullgraph: bool = False, dynamic: bool | None = None,
                backend: str = "inductor") -> Learner:
        """Opt-in ``torch.compile`` of the model, in place (``nn.Module.compile``: the weights' names do not
        change, so ``save``/``export`` work as before); under DDP the DDP wrapper is compiled instead. The
        first batches are slow while it compiles."""
        compile_learner(self, mode=mode, fullgraph=fullgraph, dynamic=dynamic, backend=backend)
        return self

    def to_distributed(self: Learner, sync_bn: bool = True, find_unused_parameters: bool = False,
                       backend: str | None = None) -> Learner:
        """Train with DDP over the processes torchrun started; a no-op in a single process. Called
        automatically for a Learner created under torchrun (set ``LEARNKIT_DISTRIBUTED=0`` to opt out)."""
        return to_distributed(self, sync_bn=sync_bn, find_unused_parameters=find_unused_parameters, backend=backend)

    def distrib_ctx(self: Learner, sync_bn: bool = True, find_unused_parameters: bool = False,
                    backend: str | None = None) -> contextlib.AbstractContextManager:
        """``with learn.distrib_ctx(): learn.fine_tune(3)``: DDP inside the block, clean shutdown after it."""
        return distrib_ctx(self, sync_bn=sync_bn, find_unused_parameters=find_unused_parameters, backend=backend)
