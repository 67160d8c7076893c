"""Where the model and the batches live: CUDA, then MPS, then CPU, and moving nested batches there."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["default_device", "local_cuda_index", "to_device", "to_cpu", "batch_size"]


def local_cuda_index(env: dict[str, str] | None = None, device_count: int | None = None,
                     current: int | None = None) -> int:
    """The GPU this process should use: ``LOCAL_RANK`` (modulo the visible GPUs) under torchrun, else the
    current CUDA device. Pure arithmetic on its arguments (read from the process when ``None``), so that
    the choice is testable without a GPU.

    >>> local_cuda_index({"LOCAL_RANK": "3"}, device_count=4, current=0)
    3
    >>> local_cuda_index({}, device_count=4, current=1)
    1
    """
    env = os.environ if env is None else env
    if "LOCAL_RANK" in env:
        n = torch.cuda.device_count() if device_count is None else device_count
        return int(env["LOCAL_RANK"]) % max(1, n)
    return torch.cuda.current_device() if current is None else current


def default_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: `device` if given, else `$LEARNKIT_DEVICE`, else CUDA, MPS, CPU.

    A CUDA device without an index (``"cuda"``) is this process' GPU (`local_cuda_index`): ``cuda:LOCAL_RANK``
    under torchrun, so that no rank builds its CUDA context or its model on GPU 0 first.

    >>> default_device("cpu")
    device(type='cpu')
    """
    if device is None:
        device = os.environ.get("LEARNKIT_DEVICE") or None
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device} was asked for, but CUDA is not available on this machine; "
                               "pass device='cpu' or unset LEARNKIT_DEVICE.")
        if device.type == "cuda" and device.index is None:
            return torch.device("cuda", local_cuda_index())
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_cuda_index())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_device(obj: Any, device: torch.device | str, non_blocking: bool | None = None) -> Any:
    """Move every tensor nested in tuples, lists and dicts to `device` (other leaves are kept).

    >>> to_device({"x": torch.ones(2), "n": 3}, "cpu")["n"]
    3
    """
    device = torch.device(device)
    if non_blocking is None:
        non_blocking = device.type == "cuda"
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return type(obj)({k: to_device(v, device, non_blocking) for k, v in obj.items()})
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(o, device, non_blocking) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device, non_blocking) for o in obj)
    return obj


def to_cpu(obj: Any) -> Any:
    """Move every tensor nested in `obj` to the CPU and detach it.

    >>> out = to_cpu({"preds": torch.ones(2, requires_grad=True) * 2, "n": 2})
    >>> out["preds"], out["preds"].requires_grad, out["n"]
    (tensor([2., 2.]), False, 2)
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        return type(obj)({k: to_cpu(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(o) for o in obj)
    return obj


def cat_nested(xs: list) -> Any:
    """Concatenate a list of batches (tensors, or tuples of them) along the first dimension; tensors of
    different shapes stay a list."""
    if not xs:
        return None
    if isinstance(xs[0], torch.Tensor):
        try:
            return torch.cat(xs)
        except RuntimeError:
            return xs
    return tuple(cat_nested([x[i] for x in xs]) for i in range(len(xs[0])))


def batch_size(obj: Any) -> int:
    """The number of items in a (nested) batch: the first dimension of its first tensor.

    >>> batch_size((torch.zeros(4, 3), torch.zeros(4)))  # (inputs, targets)
    4
    >>> batch_size({"input_ids": torch.zeros(2, 7), "label": torch.zeros(2)})
    2
    """
    if isinstance(obj, torch.Tensor):
        return obj.shape[0] if obj.ndim else 1
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    for o in obj:
        try:
            return batch_size(o)
        except (TypeError, ValueError):
            continue
    raise ValueError("no tensor found in the batch to count its items")
