"""`TensorBoardCallback`: losses, metrics, learning rates, hyper-parameters and sample predictions in
TensorBoard event files (``pip install "learnkit[tensorboard]"``).

>>> # learn.fit_one_cycle(3, cbs=TensorBoardCallback("runs/pets", log_preds=True))
>>> # then: tensorboard --logdir runs
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..paths import expand_path
from .experiment import ExperimentCallback, images_figure, require

__all__ = ["TensorBoardCallback"]


class TensorBoardCallback(ExperimentCallback):
    """Write a TensorBoard run with ``torch.utils.tensorboard.SummaryWriter`` (rank 0 only under DDP).

    Args:
        log_dir: the run's folder (default ``learn.path/"runs"/<date-time>``, as ``SummaryWriter`` names it).
        log_preds: after each epoch, a figure of the first ``n_preds`` validation images titled
            ``target / prediction`` (image classifiers only).
        log_every: log the training loss and learning rates every this many batches.
        log_graph: the model's graph, traced on one training batch, in the Graphs tab.

    Scalars: ``train/loss`` and ``lr/group<i>`` (per batch, at the logging interval, x = batch) and
    ``epoch/<train_loss|valid_loss|metric|time>`` (per epoch, x = batch); the hyper-parameters as text
    at the start and in the HParams tab with the final metrics at the end (also when the fit failed:
    then ``hparams/status`` is ``failed``).

    >>> cb = TensorBoardCallback("runs/pets", log_every=10, log_graph=True)  # tensorboard is imported when a run opens
    >>> cb.log_dir.as_posix(), cb.extra  # the run's folder; the extra that installs its library
    ('runs/pets', 'tensorboard')
    >>> # learn.fit_one_cycle(3, cbs=cb), then: tensorboard --logdir runs
    """

    extra = "tensorboard"

    def __init__(self, log_dir: str | Path | None = None, log_preds: bool = False, log_every: int = 50,
                 n_preds: int = 4, log_graph: bool = False):
        super().__init__(log_every=log_every, log_preds=log_preds, n_preds=n_preds)
        self.log_dir = expand_path(log_dir) if log_dir is not None else None
        self.log_graph = log_graph
        self.writer: Any = None

    def open_run(self) -> None:
        require("tensorboard", self.extra)  # SummaryWriter below needs the tensorboard package
        from torch.utils.tensorboard import SummaryWriter
        log_dir = self.log_dir
        if log_dir is None:
            from datetime import datetime
            log_dir = self.learn.path / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S")
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.run_dir = Path(self.writer.get_logdir())
        if self.log_graph:
            self._add_graph()

    def _add_graph(self) -> None:
        """The model's graph (traced on one training batch) in the Graphs tab; a model that cannot be traced
        is skipped with a warning."""
        import warnings

        import torch
        learn = self.learn
        xb = learn.dls.one_batch(0)[: learn.dls.n_inp]
        was_training = learn.model.training
        try:
            learn.model.eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.writer.add_graph(learn.model, xb if len(xb) > 1 else xb[0])
        except (RuntimeError, TypeError, ValueError, torch.jit.Error) as e:
            warnings.warn(f"TensorBoardCallback could not trace the model's graph ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); the rest is logged", stacklevel=2)
        finally:
            learn.model.train(was_training)

    def log_params(self, params: dict[str, Any]) -> None:
        self.params = params
        rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("hparams", "| param | value |\n| --- | --- |\n" + rows, 0)

    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int | None = None) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def log_images(self, images: Any, titles: list[str], step: int) -> None:
        self.writer.add_figure("predictions", images_figure(images, titles), step)

    def close_run(self, failed: bool) -> None:
        final = {f"hparams/{k}": float(v) for k, v in self.learn.recorder.final_record().items() if v == v}
        params = {**self.params, "status": "failed" if failed else "finished"}
        self.writer.add_hparams(params, final or {"hparams/epochs_done": 0.0}, run_name=".", global_step=self.step)
        self.writer.close()
