"""`MLflowCallback`: params, per-epoch metrics and the safetensors export in an MLflow run
(``pip install "learnkit[mlflow]"``: the full ``mlflow`` package, with its SQLite store, server and UI).

>>> # learn.fit_one_cycle(3, cbs=MLflowCallback(experiment_name="pets", log_model=True))  # ./mlflow.db (MLflow's default)
>>> # then: mlflow ui --backend-store-uri sqlite:///mlflow.db
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .experiment import ExperimentCallback, images_figure, require

__all__ = ["MLflowCallback"]


class MLflowCallback(ExperimentCallback):
    """Log the fit to an MLflow run through ``mlflow.MlflowClient`` (no global active run is touched; rank 0
    only under DDP).

    Args:
        tracking_uri: where runs go, e.g. ``"sqlite:///mlflow.db"``, a tracking server ``"http://host:5000"``
            (``mlflow server --backend-store-uri sqlite:///mlflow.db``) or a legacy ``file:`` folder (MLflow 3
            wants ``MLFLOW_ALLOW_FILE_STORE=true`` for those); default: ``$MLFLOW_TRACKING_URI``, else MLflow's
            own default (``sqlite:///mlflow.db`` in the working directory since MLflow 3.7, artifacts in
            ``./mlruns``).
        experiment_name: created when missing (default ``"learnkit"``).
        run_name: the run's display name (default: MLflow picks one).
        log_model: at the end, ``learn.export()`` the model and attach the safetensors file as the artifact
            ``model/export.safetensors`` (not when the fit failed).
        log_every: log ``train/loss`` and the learning rates every this many training batches.

    After the fit ``cb.run_id`` names the run; its status is ``FINISHED``, or ``FAILED`` when an error
    escaped ``fit``.

    >>> cb = MLflowCallback("sqlite:///mlflow.db", experiment_name="pets", log_model=True)  # mlflow: when a run opens
    >>> cb.tracking_uri, cb.run_id  # after a fit, run_id names the run
    ('sqlite:///mlflow.db', None)
    >>> # learn.fit_one_cycle(3, cbs=cb), then: mlflow ui --backend-store-uri sqlite:///mlflow.db
    """

    extra = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment_name: str | None = None,
                 run_name: str | None = None, log_model: bool = False, log_every: int = 50,
                 log_preds: bool = False):
        super().__init__(log_every=log_every, log_preds=log_preds)
        self.tracking_uri, self.experiment_name, self.run_name = tracking_uri, experiment_name, run_name
        self.log_model = log_model
        self.run_id: str | None = None

    def open_run(self) -> None:
        mlflow = require("mlflow", self.extra)
        self.client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        name = self.experiment_name or "learnkit"
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
        run = self.client.create_run(exp_id, run_name=self.run_name, tags={"framework": "learnkit"})
        self.run_id = run.info.run_id
        self._entities = mlflow.entities

    def log_params(self, params: dict[str, Any]) -> None:
        Param = self._entities.Param
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int | None = None) -> None:
        Metric, now = self._entities.Metric, int(time.time() * 1000)
        if epoch is not None:  # per-epoch values are stepped by epoch: MLflow's charts read naturally
            metrics, step = {k.removeprefix("epoch/"): v for k, v in metrics.items()}, epoch
        self.client.log_batch(self.run_id, metrics=[Metric(k.replace("/", "_") if epoch is None else k, v, now, step)
                                                    for k, v in metrics.items()])

    def log_images(self, images: Any, titles: list[str], step: int) -> None:
        import matplotlib.pyplot as plt
        fig = images_figure(images, titles)
        self.client.log_figure(self.run_id, fig, f"predictions/step_{step:06d}.png")
        plt.close(fig)

    def close_run(self, failed: bool) -> None:
        try:
            if self.log_model and not failed:
                with tempfile.TemporaryDirectory() as d:
                    path = self.learn.export(Path(d) / "export.safetensors")
                    self.client.log_artifact(self.run_id, str(path), artifact_path="model")
        finally:
            self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
