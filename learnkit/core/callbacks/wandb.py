"""`WandbCallback`: a Weights & Biases run with the config, losses, metrics, sample predictions and the
export as a model artifact (``pip install "learnkit[wandb]"``). ``WANDB_MODE=offline`` keeps it all on
disk (sync later with ``wandb sync``).

>>> # import os; os.environ["WANDB_MODE"] = "offline"
>>> # learn.fit_one_cycle(3, cbs=WandbCallback(project="pets", log_preds=True))
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .experiment import ExperimentCallback, require

__all__ = ["WandbCallback"]


class WandbCallback(ExperimentCallback):
    """Log the fit to a W&B run (rank 0 only under DDP). The mode comes from ``$WANDB_MODE`` (``online``,
    ``offline``, ``disabled``) and the folder from ``$WANDB_DIR``, as W&B documents.

    Args:
        project: the W&B project (default ``$WANDB_PROJECT``, else ``"learnkit"``).
        log_model: at the end, ``learn.export()`` and log the file as a ``model`` artifact.
        log_preds: after each epoch, the first ``n_preds`` validation images captioned
            ``target / prediction`` (image classifiers only).
        log_every: log ``train/loss`` and the learning rates every this many training batches.

    A run that an error ends is finished with exit code 1 (W&B shows it as failed). ``cb.run`` is the
    ``wandb`` run while it is open; ``cb.run_dir`` its local folder.

    >>> cb = WandbCallback(project="pets", log_model=True, log_every=10)  # wandb is imported when a run opens
    >>> cb.project, cb.run  # while a fit runs, cb.run is the wandb run
    ('pets', None)
    >>> # os.environ["WANDB_MODE"] = "offline"; learn.fit_one_cycle(3, cbs=cb)
    """

    extra = "wandb"

    def __init__(self, project: str | None = None, log_model: bool = False, log_preds: bool = False,
                 log_every: int = 50, n_preds: int = 4):
        super().__init__(log_every=log_every, log_preds=log_preds, n_preds=n_preds)
        self.project, self.log_model = project, log_model
        self.run: Any = None

    def open_run(self) -> None:
        wandb = require("wandb", self.extra)
        self._wandb = wandb
        project = self.project or os.environ.get("WANDB_PROJECT") or "learnkit"
        # read the environment at each run (W&B reads it once per process, at its first init)
        self.run = wandb.init(project=project, mode=os.environ.get("WANDB_MODE") or None,
                              dir=os.environ.get("WANDB_DIR") or None, reinit="create_new")
        self.run_dir = Path(self.run.dir).parent

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int | None = None) -> None:
        if epoch is not None:
            metrics = {**metrics, "epoch": epoch}
        self.run.log(metrics, step=step)

    def log_images(self, images: Any, titles: list[str], step: int) -> None:
        pics = [self._wandb.Image(img.permute(1, 2, 0).numpy(), caption=t) for img, t in zip(images, titles)]
        self.run.log({"predictions": pics}, step=step)

    def close_run(self, failed: bool) -> None:
        try:
            if not failed:
                for k, v in self.learn.recorder.final_record().items():
                    if v == v:
                        self.run.summary[f"final/{k}"] = v
                if self.log_model:
                    with tempfile.TemporaryDirectory() as d:
                        path = self.learn.export(Path(d) / "export.safetensors")
                        art = self._wandb.Artifact(f"model-{self.run.id}", type="model")
                        art.add_file(str(path))
                        self.run.log_artifact(art)  # uploaded (or saved offline) by finish()
        finally:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
