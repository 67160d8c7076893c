"""Where this process stands under ``torchrun``: its rank, the world size, and the process group.

In a single process every answer is the trivial one:

>>> rank_distrib(), num_distrib(), is_rank0(), launched_by_torchrun()
(0, 1, True, False)
"""
from __future__ import annotations

import atexit
import gc
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["rank_distrib", "num_distrib", "is_rank0", "launched_by_torchrun", "setup_distrib", "teardown_distrib",
           "distrib_barrier", "all_reduce_sum", "any_rank"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_OWNED_GROUP = False  # whether learnkit created the default process group (and so destroys it)


# --- where am I --------------------------------------------------------------------------------------
def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_distrib() -> int:
    """This process' rank: from the process group, else ``$RANK``, else 0.

    >>> rank_distrib()  # 0 in a single process; under torchrun, 0 to WORLD_SIZE - 1
    0
    """
    return dist.get_rank() if _initialized() else int(os.environ.get("RANK", 0))


def num_distrib() -> int:
    """How many processes train together (1 when not distributed).

    >>> num_distrib()  # torchrun --nproc_per_node=4 script.py: 4
    1
    >>> 64 // num_distrib()  # e.g. the per-process share of a global batch size
    64
    """
    return dist.get_world_size() if _initialized() else int(os.environ.get("WORLD_SIZE", 1))


def is_rank0() -> bool:
    """Whether this process writes files and shows progress: true unless it is a rank > 0 of a process group.

    >>> if is_rank0():  # always true in a single process
    ...     print("only rank 0 writes the report")
    only rank 0 writes the report
    """
    return not _initialized() or dist.get_rank() == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process with WORLD_SIZE > 1."""
    return all(v in os.environ for v in _TORCHRUN_VARS) and int(os.environ["WORLD_SIZE"]) > 1


def _comm_device() -> torch.device:
    """Where tensors must be for collectives: this rank's GPU with NCCL, the CPU with gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# --- the process group ---------------------------------------------------------------------------------
def _timeout_s() -> float:
    """Collective timeout: ``$LEARNKIT_DIST_TIMEOUT`` seconds, else 10 minutes (torch's default is 30)."""
    return float(os.environ.get("LEARNKIT_DIST_TIMEOUT", 600))


def setup_distrib(backend: str | None = None, timeout_s: float | None = None) -> bool:
    """Join the default process group described by the torchrun environment.

    ``backend`` defaults to NCCL when CUDA is available, gloo otherwise; with NCCL the GPU ``LOCAL_RANK``
    becomes the current device, and NCCL's asynchronous error handling is on (``TORCH_NCCL_ASYNC_ERROR_HANDLING=1``
    unless set): a collective stuck on a dead peer aborts after ``timeout_s`` (default `_timeout_s`) instead of
    hanging. Returns whether a group is in use; a group that already exists (created by the user) is
    used as it is and is not destroyed by `teardown_distrib`.
    """
    global _OWNED_GROUP
    if _initialized():
        return True
    if not launched_by_torchrun():
        return False
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; install one with distributed support")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    kw = {}
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        kw["device_id"] = torch.device("cuda", torch.cuda.current_device())
    timeout = timedelta(seconds=_timeout_s() if timeout_s is None else timeout_s)
    dist.init_process_group(backend=backend, timeout=timeout, **kw)
    _OWNED_GROUP = True
    atexit.register(teardown_distrib)
    return True


def _exiting_on_error() -> bool:
    """Whether the interpreter is exiting because of an uncaught exception (its traceback already printed)."""
    return getattr(sys, "last_exc", None) is not None or getattr(sys, "last_value", None) is not None


def teardown_distrib(wait: bool = True) -> None:
    """Destroy the process group if learnkit created it (registered to run at exit).

    On a normal exit the ranks leave together (a barrier first: a rank that destroys its group while a peer
    still talks to it can abort the peer, "terminate called without an active exception" with gloo). After
    an uncaught exception there is no barrier: the peers may be blocked in a collective that this rank will
    never join, so waiting for them would turn the crash into a hang. This rank leaves at once with its
    traceback printed and a non-zero status, and torchrun then stops the other ranks. ``wait=False`` skips
    the barrier too (`distrib_ctx` after its block raised).
    """
    global _OWNED_GROUP
    if _OWNED_GROUP and _initialized():
        if wait and not _exiting_on_error():
            # free unreachable DDP wrappers now (a learner and its callbacks form a cycle): their reducers hold
            # the group, and one left for the interpreter's shutdown can outlive it and abort the process
            gc.collect()
            try:
                distrib_barrier()
            except RuntimeError:  # a peer is already gone (it crashed, or torchrun is stopping the job)
                pass
        dist.destroy_process_group()
    _OWNED_GROUP = False


def distrib_barrier() -> None:
    """Wait for every rank (a no-op in a single process).

    >>> import tempfile
    >>> ready = os.path.join(tempfile.mkdtemp(), "ready.txt")
    >>> if is_rank0():
    ...     with open(ready, "w") as f: _ = f.write("prepared once")
    >>> distrib_barrier()  # the other ranks wait here until rank 0 has written it (returns at once in one process)
    >>> with open(ready) as f: f.read()
    'prepared once'
    """
    if _initialized():
        dist.barrier(**({"device_ids": [torch.cuda.current_device()]} if dist.get_backend() == "nccl" else {}))


def all_reduce_sum(*values: float | torch.Tensor) -> tuple[float, ...]:
    """The sums over ranks of a few numbers (Python numbers or scalar tensors), in one collective; the values
    themselves in a single process."""
    if not _initialized() or dist.get_world_size() == 1:
        return tuple(float(v) for v in values)
    dev = _comm_device()
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64).to(dev).reshape(()) for v in values])
    dist.all_reduce(t)
    return tuple(t.cpu().tolist())


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (a collective under a process group): for per-batch decisions
    (stop on NaN, lr_find's divergence) that every rank must take together, or DDP would hang."""
    if not _initialized() or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
