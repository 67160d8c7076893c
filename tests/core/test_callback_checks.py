"""Callbacks fail loudly: a misspelt hook is refused when added, a monitored value is read by its name with a
clear direction (``mode``), an unknown name lists the recorded ones; importing learnkit leaves the warning
filters alone."""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coretools import BodyHead, make_dls, two_class_data
from learnkit import (Callback, CrossEntropyLossFlat, EarlyStoppingCallback, Learner, ReduceLROnPlateau,
                      SaveModelCallback, accuracy, error_rate)
from learnkit.core.callback import check_hook_names
from learnkit.core.callbacks.tracking import monitor_mode

REPO = Path(__file__).resolve().parents[2]


def _learner(tmp_path=None, cbs=(), metrics=accuracy) -> Learner:
    x, y = two_class_data(100)
    return Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), metrics=metrics, path=tmp_path,
                   cbs=list(cbs), progress=False)


class Typo(Callback):
    def after_epcoh(self):
        raise AssertionError("never called")


# --- misspelt hooks ------------------------------------------------------------------------------------------
def test_misspelt_hook_is_refused_at_add_cb():
    learn = _learner()
    with pytest.raises(ValueError, match=r"Typo\.after_epcoh is not an event.*did you mean 'after_epoch'"):
        learn.add_cb(Typo())
    assert not any(isinstance(cb, Typo) for cb in learn.cbs) and not hasattr(learn, "typo")


def test_misspelt_hook_is_refused_in_the_constructor_and_in_fit():
    with pytest.raises(ValueError, match="after_epcoh"):
        _learner(cbs=[Typo()])

    class Early(Callback):
        def before_fitt(self):
            pass

    learn = _learner()
    n = len(learn.cbs)
    with pytest.raises(ValueError, match="did you mean 'before_fit'"):
        learn.fit(1, cbs=[EarlyStoppingCallback(), Early()])
    assert len(learn.cbs) == n and not hasattr(learn, "early_stopping")  # nothing of that fit is left behind


def test_helpers_properties_and_attributes_are_not_hooks():
    class Fine(Callback):
        after_hours = 3  # a plain attribute named like an event

        def __init__(self):
            self.before_value = None

        @property
        def after_all(self):
            return 1

        def _after_each(self):  # a private helper
            pass

        def compute(self):
            pass

        def after_epoch(self):
            pass

    check_hook_names(Fine())
    _learner(cbs=[Fine()]).fit(1)


def test_no_callback_in_learnkit_has_a_misspelt_hook():
    import learnkit
    for info in pkgutil.walk_packages(learnkit.__path__, prefix="learnkit."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed
            continue
    seen, todo = [], [Callback]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("learnkit."):
            seen.append(cls)
            check_hook_names(cls.__new__(cls))
    assert len(seen) > 20  # Recorder, ProgressCallback, the schedules, trackers, MixUp, the task callbacks...


# --- the monitored value: by name, in the right direction ---------------------------------------------------
class ForceMetrics(Callback):
    """Overwrite this epoch's recorded values of the named metrics that are recorded (between the Recorder and the
    trackers)."""
    order = 60

    def __init__(self, **seqs):
        self.seqs = seqs

    def after_epoch(self):
        rec = self.learn.recorder
        names = rec.metric_names[1:-1]
        for name, seq in self.seqs.items():
            if name in names:
                rec.values[-1][names.index(name)] = seq[self.learn.epoch]


@pytest.mark.parametrize("mode, stopped", [("auto", 3), ("max", 3), ("min", 1)])
def test_early_stopping_mode(mode, stopped):
    es = EarlyStoppingCallback(monitor="accuracy", patience=1, mode=mode)
    learn = _learner(cbs=[ForceMetrics(accuracy=[0.5, 0.6, 0.7, 0.4, 0.8]), es])
    learn.fit(5)
    assert es.stopped_epoch == stopped and es.resolved_mode == ("max" if mode == "auto" else mode)


def test_fastai_comp_still_works_and_conflicts_are_refused():
    es = EarlyStoppingCallback(monitor="accuracy", comp=np.less, patience=1)
    learn = _learner(cbs=[ForceMetrics(accuracy=[0.5, 0.6, 0.7, 0.4, 0.8]), es])
    learn.fit(5)
    assert es.stopped_epoch == 1 and es.mode == "min"  # comp=np.less: lower accuracy counts as better
    assert EarlyStoppingCallback(comp=np.greater).mode == "max"
    with pytest.raises(ValueError, match="disagree"):
        EarlyStoppingCallback(comp=np.less, mode="max")
    with pytest.raises(ValueError, match="mode must be"):
        SaveModelCallback(mode="maximum")
    with pytest.raises(TypeError, match="comp must be"):
        ReduceLROnPlateau(comp=lambda a, b: a < b)


def test_the_value_is_read_by_name_when_the_metrics_change_during_fit(tmp_path):
    class AddMetric(Callback):
        order = -5

        def before_epoch(self):
            if self.learn.epoch == 1:  # from now on, error_rate is recorded before accuracy
                self.learn.metrics = [error_rate, accuracy]

    saver = SaveModelCallback(monitor="accuracy", fname="best")
    forced = ForceMetrics(accuracy=[0.5, 0.9, 0.6], error_rate=[0, 0.1, 0.4])
    learn = _learner(tmp_path, cbs=[AddMetric(), saver, forced])
    learn.fit(3)
    assert learn.recorder.metric_names == ["epoch", "train_loss", "valid_loss", "error_rate", "accuracy", "time"]
    assert saver.best == 0.9 and saver.best_epoch == 1  # by position it would have read error_rate from epoch 1 on


def test_save_model_and_reduce_lr_follow_a_higher_is_better_metric(tmp_path):
    saver = SaveModelCallback(monitor="accuracy", fname="best")
    learn = _learner(tmp_path, cbs=[ForceMetrics(accuracy=[0.5, 0.9, 0.7]), saver])
    learn.fit(3)
    assert saver.best_epoch == 1 and saver.best == 0.9

    sched = ReduceLROnPlateau(monitor="accuracy", patience=1, factor=10)
    learn = _learner(cbs=[ForceMetrics(accuracy=[0.5, 0.6, 0.55, 0.7]), sched])
    learn.fit(4, lr=1e-2)
    assert learn.opt.param_groups[-1]["lr"] == pytest.approx(1e-3)  # reduced once, after epoch 2


@pytest.mark.parametrize("cb", [EarlyStoppingCallback(monitor="f1"), SaveModelCallback(monitor="f1"),
                                ReduceLROnPlateau(monitor="f1")], ids=lambda cb: type(cb).__name__)
def test_an_unknown_monitored_name_lists_the_recorded_ones(cb):
    learn = _learner(cbs=[cb])
    with pytest.raises(ValueError, match=r"monitors 'f1', which is not recorded; "
                                         r"choose one of \['train_loss', 'valid_loss', 'accuracy'\]"):
        learn.fit(1)


def test_monitor_mode_from_names_and_metrics():
    from learnkit import AvgMetric
    assert [monitor_mode(n) for n in ("valid_loss", "error_rate", "mse", "perplexity", "exp_rmspe")] == ["min"] * 5
    assert [monitor_mode(n) for n in ("accuracy", "foreground_acc", "f1_score", "r2_score", "dice_multi", "mean_iou",
                                      "precision", "recall", "roc_auc")] == ["max"] * 9
    assert monitor_mode("my_score", AvgMetric(lambda p, t: 0.0, name="my_score")) == "max"  # fastai's default
    assert monitor_mode("accuracy_gap", AvgMetric(lambda p, t: 0.0, higher_is_better=False)) == "min"
    assert monitor_mode("something") == "min"


# --- no global warning filter -----------------------------------------------------------------------------
def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", inspect.cleandoc(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_importing_learnkit_leaves_the_warning_filters_alone():
    proc = _run("""
        import warnings
        import learnkit
        bad = [f for f in warnings.filters if f[1] is not None and "IProgress" in f[1].pattern]
        assert not bad, bad
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_in_a_notebook_without_ipywidgets_tqdm_auto_stays_quiet():
    proc = _run("""
        import sys, types, warnings
        sys.modules["ipywidgets"] = None                                   # not installed
        sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")  # inside a Jupyter kernel
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import learnkit.core.callbacks.progress
            import tqdm.auto                                              # what huggingface_hub does
        said = [str(w.message) for w in caught if "IProgress" in str(w.message)]
        assert not said, said
        bad = [f for f in warnings.filters if f[1] is not None and "IProgress" in f[1].pattern]
        assert not bad, bad
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
