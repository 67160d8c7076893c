"""The random states a checkpoint keeps, and puts back: each process' own streams (torch on the CPU and its CUDA
device, numpy, Python's ``random``), every rank's under DDP (gathered, rank 0 writes the file), and the loaders'
generators. Helpers of `learnkit.core.callbacks.checkpoint`.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..loader_state import loader_snapshot, restore_snapshot
from ..process_group import _initialized

__all__: list[str] = []  # private helpers: the checkpoint file is the interface


def _process_rng() -> dict[str, Any]:
    """This process' own random states: torch (CPU), its current CUDA device, numpy and Python's ``random``."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_device"] = torch.cuda.get_rng_state()
    return state


def _rng_state(loaders: Iterable[Any]) -> dict[str, Any]:
    """The random states of the run. Under DDP every rank's own states are gathered (``"ranks"``, in rank
    order; a collective: every rank calls this), so that each rank resumes its own dropout and augmentation
    streams (rank 0 writes the file). One process keeps the states of all its CUDA devices."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "loaders": []}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    ranks = _gather_ranks(_process_rng())
    if ranks is not None:
        state["ranks"] = ranks
    state["loaders"] = [loader_snapshot(dl) for dl in loaders]
    return state


def _gather_ranks(obj: Any) -> list[Any] | None:
    """Under DDP every rank's ``obj`` (its tensors moved to the CPU), in rank order: a collective, every rank
    calls it. ``None`` in a single process."""
    if not (_initialized() and dist.get_world_size() > 1):
        return None
    ranks: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, _cpu(obj))
    return ranks


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def _set_cuda_rng(states: Sequence[torch.Tensor]) -> None:
    """Restore per-device CUDA states, as many as there are visible devices now (a resume on fewer GPUs
    restores the first ones instead of failing)."""
    for i, s in enumerate(list(states)[: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(s, i)


def _set_rng_state(state: dict[str, Any], loaders: Sequence[Any], path: Path) -> None:
    if len(state["loaders"]) != len(loaders):
        raise ValueError(f"{path} was saved with {len(state['loaders'])} data loaders, this run has {len(loaders)}; "
                         "resume with the same DataLoaders (same splits and batch size)")
    for i, (dl, s) in enumerate(zip(loaders, state["loaders"])):
        restore_snapshot(dl, s, f"{path}: loader {i}")
    _set_process_rng(_own_rng(state))


def _own_rng(state: dict[str, Any]) -> dict[str, Any]:
    """This rank's own process streams in a saved `_rng_state` (under DDP with the same world size)."""
    ranks = state.get("ranks")
    if ranks and _initialized() and dist.get_world_size() == len(ranks):
        return ranks[dist.get_rank()]
    return state


def _own_rank(tree: dict[str, Any], key: str) -> Any:
    """This rank's ``tree[key]`` (a mid-epoch checkpoint's running sums or epoch-start random streams): under
    DDP with the same world size its own (``key + "_ranks"``), otherwise the one the checkpoint holds (rank 0's,
    or the single process'); ``None`` in a checkpoint written before the key existed."""
    ranks = tree.get(f"{key}_ranks")
    if ranks and _initialized() and dist.get_world_size() == len(ranks):
        return ranks[dist.get_rank()]
    return tree.get(key)


def _set_process_rng(own: dict[str, Any]) -> None:
    torch.set_rng_state(own["torch"])
    if torch.cuda.is_available():
        if "cuda_device" in own:
            torch.cuda.set_rng_state(own["cuda_device"])  # this rank's current device
        elif "cuda" in own:
            _set_cuda_rng(own["cuda"])
    np.random.set_state(own["numpy"])
    random.setstate(own["python"])
