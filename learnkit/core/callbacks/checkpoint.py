"""`CheckpointCallback`: everything a killed run needs to continue exactly, and the resume logic.

After every ``every`` epochs it writes one safetensors file (``path/model_dir/checkpoint.safetensors``,
atomically: temp file + rename, so a kill during the write leaves the previous checkpoint) holding the
weights, the optimizer and gradient-scaler state, the epoch, the state of callbacks that have
``state_dict()`` (the Recorder's history, early stopping's patience...), and the RNG states: torch (CPU
and CUDA), numpy, Python's ``random`` (each rank's own, under DDP) and each loader's ``torch.Generator`` (loaders that have
``state_dict()``/``load_state_dict()`` are saved through those). No pickle: tensors plus a JSON header.

``learn.fit(n, resume="auto")`` / ``learn.fit_one_cycle(n, resume="auto")`` adds this callback, and, when
a checkpoint of the same run exists, restores it and continues at the next epoch: the schedules compute
their position from ``epoch``/``iter``, so the resumed run ends with the weights an uninterrupted run
would have (bit for bit on CPU with ``torch.use_deterministic_algorithms(True)``). With ``"auto"`` and no
checkpoint yet, training starts from the beginning, so one script serves the first run and every restart.
With ``every_batches=N`` (or ``every_minutes=``) it also writes in the middle of an epoch, and a resume
continues after the last batch written: it trains only the batches left, in the same order, with the same
random streams (see `learnkit.core.loader_state`) and the epoch's running sums (the Recorder's training loss;
each rank's own under DDP); otherwise a partly trained epoch is done again.
A finished run (``complete`` in the header) is not resumed by ``"auto"``: a new run starts, with a warning.

>>> cb = CheckpointCallback(every=2)
>>> cb.every, cb.fname
(2, 'checkpoint')
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..paths import expand_path
from ..callback import Callback
from ..export import ExportError, _read_header, load_tree, save_tree
from ..loader_state import SkipBatches, _generators, epoch_loader, loader_snapshot, restore_snapshot  # noqa: F401
from ..optim import n_splitter_groups
from ..process_group import any_rank
from .lr_finder import LRFinder
from .rng_states import _gather_ranks, _own_rank, _own_rng, _process_rng, _rng_state, _set_process_rng, _set_rng_state
from .schedule import OneCycleScheduler, ParamScheduler
from ..validation import check_int

if TYPE_CHECKING:  # pragma: no cover
    from ..learner import Learner

__all__ = ["CheckpointCallback", "resume_callbacks", "CKPT_FORMAT"]

CKPT_FORMAT = "learnkit-checkpoint"
_CKPT_VERSION = 1


def _fingerprint(learn: "Learner", start_lrs: list[float] | None = None) -> dict[str, Any]:
    """What must be equal for a checkpoint to continue this fit: epochs, batches per epoch, schedule, optimizer,
    precision (an fp32 checkpoint has no loss-scaler state for ``to_fp16()``, and changing precision mid-run
    changes the numbers)."""
    scheds = []
    for cb in learn.cbs:
        if isinstance(cb, OneCycleScheduler):
            scheds.append({"type": type(cb).__name__, "lr_max": repr(cb.lr_max), "div": cb.div,
                           "div_final": cb.div_final, "pct_start": cb.pct_start,
                           "moms": None if cb.moms is None else list(cb.moms)})
        elif isinstance(cb, ParamScheduler):
            scheds.append({"type": type(cb).__name__})
    fp: dict[str, Any] = {"n_epoch": learn.n_epoch, "n_iter": len(learn.dls.train), "schedules": scheds,
                          "optimizer": type(learn.opt).__name__, "param_groups": len(learn.opt.param_groups),
                          "precision": learn.precision, "vocab": _vocab_digest(learn)}
    if start_lrs is not None and not any(isinstance(cb, ParamScheduler) for cb in learn.cbs):
        fp["lr"] = start_lrs  # fit(n, lr=...)'s learning rates, as they were when the fit started
    return fp


def _vocab_digest(learn: "Learner") -> str | None:
    """A short digest of the labels (``dls.vocab``): a run with other classes is another run."""
    vocab = getattr(learn.dls, "vocab", None)
    if vocab is None:
        return None
    items = list(vocab.items()) if isinstance(vocab, dict) else list(vocab)
    return f"{len(items)} labels, sha1 {hashlib.sha1(repr(items).encode()).hexdigest()[:12]}"


_FINGERPRINT_DEFAULTS = {"precision": "fp32"}  # for checkpoints written before the key existed


class CheckpointCallback(Callback):
    """Write a resumable checkpoint every ``every`` epochs (and after the last); resume from one.

    Args:
        fname: file name in ``learn.path/model_dir`` (``.safetensors`` is added), or an absolute path.
        every: write after every ``every``-th epoch (the last epoch is always written).
        resume: ``None`` (just write), ``"auto"`` (resume from ``fname`` if it exists) or a checkpoint
            path (must exist). ``learn.fit(..., resume=...)`` sets this for you.
        every_batches: also write in the middle of an epoch, after every ``every_batches`` training batches.
        every_minutes: also write after a training batch when this many minutes have passed since the last write
            (for preemptible cloud jobs). Under DDP the ranks agree on it with one tiny collective per batch.
        replay_workers: on a mid-epoch resume, read again (without training) the batches already trained when
            the loader has workers, so that the workers' random streams (item augmentation) match the
            uninterrupted run bit for bit; ``False`` skips them unread (same batches, other augmentation draws).

    A mid-epoch checkpoint holds the train loader's state at the start of its epoch, the process' random
    streams then (a torch DataLoader without a generator of its own draws its order and its workers' seeds from
    them; each rank's own under DDP) and the number of batches done; the resumed run draws the same order and
    trains only the remaining batches (see `learnkit.core.loader_state`). A batch whose optimizer step was
    deferred (`GradientAccumulation`) is never a checkpoint point: the next batch that steps is. A loader with persistent workers, the training or
    the validation one, is iterated through a twin that restarts its workers each pass (`epoch_loader`), so that
    workers' random state depends only on what the checkpoint restores: random validation draws (a validation
    set that augments) are the uninterrupted run's too, and so are the recorded validation values.

    >>> import tempfile
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 path=tempfile.mkdtemp(), progress=False)
    >>> cb = CheckpointCallback(every=1)
    >>> learn.fit(2, cbs=cb)  # learn.fit(2, resume="auto") adds one, and continues a killed run from its file
    >>> cb.path.relative_to(learn.path).as_posix(), cb.path.exists()
    ('models/checkpoint.safetensors', True)
    """

    order = 75  # after the Recorder (50) and the trackers (70) have handled the epoch

    def __init__(self, fname: str | Path = "checkpoint", every: int = 1, resume: str | Path | None = None,
                 every_batches: int | None = None, every_minutes: float | None = None, replay_workers: bool = True):
        check_int("every", every, what="(epochs between checkpoints)")
        if every_batches is not None:
            check_int("every_batches", every_batches, what="(training batches between checkpoints)")
        if every_minutes is not None and not (isinstance(every_minutes, (int, float)) and every_minutes > 0):
            raise ValueError(f"every_minutes must be a positive number of minutes, got {every_minutes!r}")
        self.fname, self.every, self.resume = str(fname), every, resume
        self.every_batches, self.every_minutes, self.replay_workers = every_batches, every_minutes, replay_workers
        self.resumed_from: Path | None = None
        self.resumed_at: tuple[int, int] | None = None  # (epoch, batch) a mid-epoch resume continued from
        self._start_lrs: list[float] | None = None
        self._pending: tuple[int, dict, list, dict | None] | None = None
        self._epoch_rng: dict[str, Any] | None = None  # the process' random streams when the epoch started
        self._twin: Any = None  # the train and validation loaders' twins that restart their workers each pass
        self._valid_twin: Any = None

    @property
    def path(self) -> Path:
        p = expand_path(self.fname)
        if p.suffix != ".safetensors":
            p = p.with_name(p.name + ".safetensors")
        return p if p.is_absolute() else self.learn.path / self.learn.model_dir / p

    def _loaders(self) -> list[Any]:
        return self.learn.dls.loaders  # the loaders themselves: training, then validation if any

    def _callback_states(self) -> list[list[Any]]:
        return [[cb.name, cb.state_dict()] for cb in self.learn.cbs
                if cb is not self and hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict")]

    def _lr_find(self) -> bool:
        """``lr_find`` trains throw-away steps: they are never checkpointed nor resumed."""
        return any(isinstance(cb, LRFinder) for cb in self.learn.cbs)

    # --- writing ---------------------------------------------------------------------------------------
    def _write(self, batches_done: int | None) -> None:
        """Write the checkpoint: at the end of an epoch (``batches_done=None``) or after ``batches_done``
        training batches of the current one."""
        learn = self.learn
        rng = _rng_state(self._loaders())
        tree = {"model": learn.model.state_dict(), "opt": learn.opt.state_dict(), "scaler": learn.scaler.state_dict(),
                "callbacks": self._callback_states(), "rng": rng}
        last = batches_done is None and learn.epoch == learn.n_epoch - 1
        if batches_done is not None:  # the train loader as it was when this epoch started, and the epoch's sums
            rng["loaders"][0] = self._epoch_start
            tree["epoch_states"] = [[cb.name, cb.epoch_state_dict()] for cb in learn.cbs
                                    if cb is not self and hasattr(cb, "epoch_state_dict")]
            # the process streams at the epoch's start: a loader without a generator of its own (a torch DataLoader
            # with shuffle=True and no generator, a DDP shard's workers) draws its order or seeds from them
            tree["epoch_rng"] = self._epoch_rng
            for key in ("epoch_states", "epoch_rng"):  # under DDP each rank's own (its shard's losses, its streams)
                ranks = _gather_ranks(tree[key])
                if ranks is not None:
                    tree[f"{key}_ranks"] = ranks
        import learnkit
        header = {"format": CKPT_FORMAT, "format_version": _CKPT_VERSION, "epoch": learn.epoch, "complete": last,
                  "batches_done": batches_done, "fit": _fingerprint(learn, self._start_lrs),
                  "learnkit_version": learnkit.__version__, "torch_version": torch.__version__}
        save_tree(self.path, tree, header)
        self._last_write = time.monotonic()

    def after_epoch(self):
        learn = self.learn
        last = learn.epoch == learn.n_epoch - 1
        if ((learn.epoch + 1) % self.every and not last) or self._lr_find():
            return
        self._write(None)

    def before_train(self):
        learn = self.learn
        if learn.dl is learn.dls[0] and self._twin is not None:
            learn.dl = self._twin  # workers restarted each epoch, seeded from the generator alone
        self._epoch_start = loader_snapshot(learn.dls[0])
        self._epoch_rng = _process_rng() if self.every_batches or self.every_minutes else None
        self._stepped = self._owed = False
        if self._pending is None:
            return
        k, own, epoch_states, epoch_rng = self._pending
        self._pending = None
        if epoch_rng is not None:  # the streams the loader drew from when this epoch started; `own` after skipping
            _set_process_rng(epoch_rng)
            self._epoch_rng = epoch_rng
        by_name = {name: state for name, state in epoch_states}
        for cb in learn.cbs:  # after their own resets of this epoch (they run before this callback)
            if cb is not self and cb.name in by_name and hasattr(cb, "load_epoch_state_dict"):
                cb.load_epoch_state_dict(by_name[cb.name])
        learn.dl = SkipBatches(learn.dl, k, on_start=lambda: _set_process_rng(own),
                               replay=None if self.replay_workers else False)
        learn.first_iter = k

    def before_validate(self):
        if self._valid_twin is not None and self.learn.dl is self.learn.dls[1]:
            # the validation workers too: their random draws (random validation transforms) then depend only on
            # the loader's generator, which every checkpoint holds, so a resumed run validates the same items
            self.learn.dl = self._valid_twin

    def after_cancel_step(self):
        self._step_cancelled = True

    def after_step(self):  # fires after a cancelled step too
        self._stepped, self._step_cancelled = not getattr(self, "_step_cancelled", False), False

    def after_batch(self):
        learn = self.learn
        if not learn.training or self._lr_find() or (self.every_batches is None and self.every_minutes is None):
            return
        stepped, self._stepped = self._stepped, False
        due = bool(self.every_batches and (learn.iter + 1) % self.every_batches == 0)
        if self.every_minutes is not None:
            late = time.monotonic() - self._last_write >= 60 * self.every_minutes
            due = due or (any_rank(late) if getattr(learn, "distributed_trainer", None) is not None else late)
        self._owed = self._owed or due
        if self._owed and stepped:  # never with gradients accumulated but not yet applied: the next step then
            self._write(learn.iter + 1)
            self._owed = False

    # --- resuming --------------------------------------------------------------------------------------
    def before_fit(self):
        resume, self.resumed_from, self.resumed_at = self.resume, None, None
        # the lrs the fit starts with, one per splitter group (ReduceLROnPlateau and the like change them later)
        opt = self.learn.opt
        self._start_lrs = [float(pg["lr"]) for pg in opt.param_groups[:n_splitter_groups(opt)]]
        self._pending, self._last_write = None, time.monotonic()
        self._twin = None if self._lr_find() else _twin(self.learn.dls[0])
        self._valid_twin = None if self._lr_find() or self.learn.dls.valid is None else _twin(self.learn.dls[1])
        if resume is None or self._lr_find():
            return
        path = self.path if resume == "auto" else expand_path(resume)
        if not path.exists():
            if resume == "auto":
                return  # first run: nothing to resume yet
            raise FileNotFoundError(f"no checkpoint at {path} to resume from; pass resume='auto' to start a new run "
                                    "when there is none")
        if resume == "auto" and self._complete(path):
            warnings.warn(f"{path} is the checkpoint of a run that finished all its epochs: resume='auto' starts a "
                          "new run (it will overwrite that checkpoint); load the finished weights with learn.load "
                          "or pass resume=<path> to restore them explicitly", stacklevel=4)
            return
        self._restore(path)

    @staticmethod
    def _complete(path: Path) -> bool:
        header = _read_header(path, "checkpoint")
        return bool(header.get("complete", False)) and header.get("format") == CKPT_FORMAT

    def after_fit(self):
        self.resume = None

    def _restore(self, path: Path) -> None:
        learn = self.learn
        header, tree = load_tree(path, "checkpoint")
        if header.get("format") != CKPT_FORMAT:
            raise ExportError(f"{path} is a learnkit file but not a checkpoint (format {header.get('format')!r})")
        if header.get("format_version") != _CKPT_VERSION:
            raise ExportError(f"{path} is a checkpoint of format version {header.get('format_version')!r}; this "
                              f"learnkit ({_CKPT_VERSION}) cannot resume it")
        want = json.loads(json.dumps(_fingerprint(learn, self._start_lrs)))
        saved = {**_FINGERPRINT_DEFAULTS, **header["fit"]}
        # keys a checkpoint lacks (written before they were fingerprinted) are not compared
        diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in want.items()
                 if k in saved and saved[k] != v]
        if "precision" in {k for k, v in want.items() if saved.get(k) != v}:
            diffs.append(f"call learn.to_{saved['precision']}() before resuming it")
        if diffs:
            raise ValueError(f"{path} was written by a different run ({'; '.join(diffs)}); call fit with the same "
                             "arguments and data to resume it, or delete the file (or pass resume=None) to start again")
        try:
            learn.model.load_state_dict(tree["model"], strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path} does not fit this model: {e}") from None
        learn.opt.load_state_dict(tree["opt"])
        learn.scaler.load_state_dict(tree["scaler"])
        saved = list(tree["callbacks"])
        for cb in learn.cbs:
            if cb is self or not hasattr(cb, "load_state_dict"):
                continue
            i = next((i for i, (name, _) in enumerate(saved) if name == cb.name), None)
            if i is not None:
                cb.load_state_dict(saved.pop(i)[1])
        _set_rng_state(tree["rng"], self._loaders(), path)
        done = header.get("batches_done")
        if done is None:
            learn.start_epoch = header["epoch"] + 1
        else:  # mid-epoch: this epoch again, from its batch `done` (see before_train)
            learn.start_epoch = header["epoch"]
            self._pending = (int(done), _own_rng(tree["rng"]), _own_rank(tree, "epoch_states") or [],
                             _own_rank(tree, "epoch_rng"))
            self.resumed_at = (header["epoch"], int(done))
        self.resumed_from = path


def _twin(dl: Any) -> Any:
    """`epoch_loader`'s twin of ``dl`` that starts its workers at every pass, or ``None`` where ``dl`` needs none."""
    twin = None if dl is None else epoch_loader(dl)
    return None if twin is dl else twin


def resume_callbacks(learn: "Learner", resume: str | Path, cbs: Callback | Sequence[Callback] | None,
                     start_epoch: int = 0) -> list[Callback]:
    """The callbacks for ``fit(..., cbs, resume=resume)``: ``cbs`` plus a `CheckpointCallback` set to
    resume (the one already in ``learn.cbs`` or ``cbs`` if there is one)."""
    if not (resume == "auto" or isinstance(resume, (str, Path))):
        raise TypeError(f"resume must be None, 'auto' or the path of a checkpoint, got {resume!r}")
    if start_epoch:
        raise ValueError("pass either resume or start_epoch, not both: resume takes the epoch from the checkpoint")
    cbs = [] if cbs is None else ([cbs] if isinstance(cbs, Callback) else list(cbs))
    existing = [cb for cb in list(learn.cbs) + cbs if isinstance(cb, CheckpointCallback)]
    if existing:
        existing[0].resume = resume
        return cbs
    return cbs + [CheckpointCallback(resume=resume)]
