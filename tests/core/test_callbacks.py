"""Built-in callbacks: early stopping, best-model saving, CSV log, NaN stop, progress output, plots."""
import pytest
import torch

from coretools import BodyHead, make_dls, two_class_data
from learnkit import (Callback, CrossEntropyLossFlat, CSVLogger, EarlyStoppingCallback, Learner, SaveModelCallback,
                      TerminateOnNaNCallback, accuracy)


def _learner(tmp_path=None, cbs=(), progress=False, **kw):
    x, y = two_class_data(200)
    return Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                   path=tmp_path, cbs=list(cbs), progress=progress, **kw)


class ForceValidLoss(Callback):
    """Overwrite the recorded valid loss with a fixed sequence (order between Recorder and trackers)."""
    order = 60

    def __init__(self, seq):
        self.seq = seq

    def after_epoch(self):
        self.learn.recorder.values[-1][1] = self.seq[self.learn.epoch]


def test_early_stopping_stops_after_patience():
    es = EarlyStoppingCallback(patience=2)
    learn = _learner(cbs=[ForceValidLoss([1.0, 0.5, 0.6, 0.7, 0.1, 0.1]), es])
    learn.fit(6)
    assert len(learn.recorder.values) == 4 and es.stopped_epoch == 3


def test_early_stopping_on_unknown_metric_is_clear():
    learn = _learner(cbs=[EarlyStoppingCallback(monitor="f1")])
    with pytest.raises(ValueError, match="not recorded.*accuracy"):
        learn.fit(1)


def test_save_model_keeps_best_and_reloads_it(tmp_path):
    saver = SaveModelCallback(monitor="valid_loss", fname="best")
    snapshots = {}

    class Snap(Callback):
        order = 80

        def after_epoch(self):
            snapshots[self.learn.epoch] = {k: v.clone() for k, v in self.learn.model.state_dict().items()}

    learn = _learner(tmp_path, cbs=[ForceValidLoss([1.0, 0.2, 0.5]), saver, Snap()])
    learn.fit(3, lr=1e-2)
    assert saver.best_epoch == 1 and (tmp_path / "models" / "best.pth").exists()
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, snapshots[1][k])


def test_save_model_every_epoch(tmp_path):
    learn = _learner(tmp_path, cbs=[SaveModelCallback(every_epoch=True, fname="ep")])
    learn.fit(2)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["ep_0.pth", "ep_1.pth"]


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    learn = _learner(tmp_path, cbs=[CSVLogger()])
    learn.fit(3)
    df = learn.csv_logger.read()
    assert list(df.columns) == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert len(df) == 3 and df["valid_loss"].iloc[-1] == pytest.approx(learn.recorder.values[-1][1], rel=1e-5)


def test_terminate_on_nan():
    class Poison(Callback):
        def after_loss(self):
            if self.learn.training and self.learn.iter == 2:
                self.learn.loss = torch.tensor(float("nan"))

    learn = _learner(cbs=[Poison(), TerminateOnNaNCallback()])
    learn.fit(3)
    assert learn.terminate_on_na_n.terminated_at == (0, 2)
    assert len(learn.recorder.losses) == 2  # the NaN batch never reached backward or the record
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_progress_prints_table_and_can_be_silenced(capsys, monkeypatch):
    monkeypatch.setenv("LEARNKIT_PROGRESS", "1")
    learn = _learner(progress=True)
    learn.fit(2)
    err = capsys.readouterr()
    text = err.out + err.err
    assert "train_loss" in text and "accuracy" in text
    with learn.no_bar():
        learn.fit(1)
    err = capsys.readouterr()
    assert "train_loss" not in err.out + err.err


def test_plots_render_to_png(tmp_path):
    import matplotlib.pyplot as plt
    learn = _learner()
    learn.fit_one_cycle(2)
    for name, f in [("loss", learn.recorder.plot_loss), ("lr", learn.recorder.plot_lr)]:
        ax = f()
        path = tmp_path / f"{name}.png"
        ax.figure.savefig(path)
        assert path.stat().st_size > 1000
    learn.lr_find(num_it=30, show_plot=True)
    plt.gcf().savefig(tmp_path / "lr_find.png")
    assert (tmp_path / "lr_find.png").stat().st_size > 1000


def test_repr_html_summaries():
    learn = _learner()
    html = learn._repr_html_()
    assert "BodyHead" in html and "train items" in html and "accuracy" in html
    assert "160" in repr(learn.dls)


def test_csv_logger_append_checks_the_columns(tmp_path):
    learn = _learner(tmp_path, cbs=[CSVLogger(append=True)])
    learn.fit(1)
    learn.fit(2)
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,valid_loss") and len(rows) == 1 + 3  # one header, 3 epochs
    (tmp_path / "history.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="has the columns \\['a', 'b'\\]"):
        learn.fit(1)
    assert (tmp_path / "history.csv").read_text() == "a,b\n1,2\n"  # the user's file is left as it was


def test_load_keeps_an_explicit_suffix(tmp_path):
    learn = _learner(tmp_path)
    path = learn.save(tmp_path / "weights.pt")
    assert path.name == "weights.pt" and path.exists()
    learn.load(tmp_path / "weights.pt")
    export = tmp_path / "model.safetensors"
    export.write_bytes(b"x")
    with pytest.raises(ValueError, match="load_learner"):
        learn.load(export)
