"""Experiment trackers against the real libraries, offline: TensorBoard event files read back with
tensorboard's EventAccumulator, MLflow with MlflowClient (the default store, a ``sqlite:`` URI, a real
``mlflow server`` on 127.0.0.1, the legacy file store), W&B's offline run folder."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from learnkit import Callback, ExperimentCallback, MLflowCallback, TensorBoardCallback, WandbCallback


class Boom(Callback):
    """Raise a real error in the second epoch."""

    def before_epoch(self):
        if self.learn.epoch == 1:
            raise RuntimeError("boom")


class CountLossReads(ExperimentCallback):
    """Counts how often the tracker reads the loss (a host sync on a GPU)."""

    def __init__(self, log_every):
        super().__init__(log_every=log_every)
        self.logged = []

    def open_run(self): pass
    def log_params(self, params): self.params = params
    def log_metrics(self, metrics, step, epoch=None): self.logged.append((step, epoch, dict(metrics)))
    def close_run(self, failed): self.failed = failed


def test_base_logs_loss_only_every_log_every_batches(core_learner):
    cb = CountLossReads(log_every=3)
    core_learner.fit(2, cbs=cb)  # 8 training batches per epoch -> 16 steps
    batch_steps = [s for s, e, m in cb.logged if e is None]
    assert batch_steps == [1, 3, 6, 9, 12, 15]
    epochs = [m for s, e, m in cb.logged if e is not None]
    assert [set(m) >= {"epoch/train_loss", "epoch/valid_loss", "epoch/accuracy"} for m in epochs] == [True, True]
    assert cb.failed is False and cb.params["n_epoch"] == 2 and cb.params["model"] == "Linear"


def test_the_batch_count_carries_on_across_fits(core_learner):
    cb = CountLossReads(log_every=4)
    core_learner.fit(1, cbs=cb)
    core_learner.fit(1, cbs=cb)  # fine_tune's second fit, say
    assert [s for s, e, m in cb.logged if e is None] == [1, 4, 8, 12, 16]
    assert [s for s, e, m in cb.logged if e is not None] == [8, 16]


def test_base_closes_failed_and_reraises(core_learner):
    cb = CountLossReads(log_every=50)
    with pytest.raises(RuntimeError, match="boom"):
        core_learner.fit(3, cbs=[cb, Boom()])
    assert cb.failed is True and core_learner.fit_exception is not None


def test_log_every_is_checked():
    with pytest.raises(ValueError, match="log_every"):
        TensorBoardCallback(log_every=0)


def test_only_rank0_writes(core_learner, tmp_path, monkeypatch):
    import learnkit.core.callbacks.experiment as experiment
    monkeypatch.setattr(experiment, "is_rank0", lambda: False)  # as on rank 1 of a DDP run
    cb = TensorBoardCallback(tmp_path / "tb", log_every=1)
    core_learner.fit(1, cbs=cb)
    assert cb.writer is None and not (tmp_path / "tb").exists()
    counting = CountLossReads(log_every=1)
    core_learner.fit(1, cbs=counting)
    assert counting.logged == [] and not hasattr(counting, "failed")


def test_missing_library_names_the_extra(core_learner, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "learnkit\[mlflow\]"'):
        core_learner.fit(1, cbs=MLflowCallback())


# --- TensorBoard ---------------------------------------------------------------------------------------
def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _hparams(acc) -> tuple[dict, int]:
    """The HParams plugin's record: ``({name: value}, session status)``."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    values = {k: (v.string_value or v.number_value) for k, v in start.session_start_info.hparams.items()}
    return values, end.session_end_info.status


def test_tensorboard_scalars_hparams_and_preds(image_learner, tmp_path):
    pytest.importorskip("tensorboard")
    log_dir = tmp_path / "tb"
    image_learner.fit(2, cbs=TensorBoardCallback(log_dir, log_preds=True, log_every=1))
    acc = _events(log_dir)
    tags = acc.Tags()
    assert {"train/loss", "lr/group0", "epoch/train_loss", "epoch/valid_loss", "epoch/error_rate"} <= set(tags["scalars"])
    n_batches = len(image_learner.dls.train)
    assert len(acc.Scalars("train/loss")) == 2 * n_batches  # log_every=1: every batch
    assert [round(e.value, 5) for e in acc.Scalars("epoch/valid_loss")] == \
        [round(v[1], 5) for v in image_learner.recorder.values]
    assert len(acc.Images("predictions")) == 2  # one figure per epoch
    assert "hparams/text_summary" in tags["tensors"]  # the params as a text table
    hparams, _ = _hparams(acc)  # the HParams tab, in the same folder (run_name=".")
    assert hparams["model.arch"] == "resnet10t" and hparams["n_epoch"] == 2 and hparams["status"] == "finished"
    assert acc.Scalars("hparams/valid_loss")[0].value == pytest.approx(image_learner.recorder.values[-1][1])


def test_tensorboard_model_graph(core_learner, tmp_path):
    pytest.importorskip("tensorboard")
    core_learner.fit(1, cbs=TensorBoardCallback(tmp_path / "tb", log_graph=True))
    acc = _events(tmp_path / "tb")
    assert acc.Tags()["graph"] is True
    assert any(n.op == "aten::linear" for n in acc.Graph().node)


def test_tensorboard_survives_a_failed_fit(core_learner, tmp_path):
    pytest.importorskip("tensorboard")
    cb = TensorBoardCallback(tmp_path / "tb", log_every=1)
    with pytest.raises(RuntimeError, match="boom"):
        core_learner.fit(3, cbs=[cb, Boom()])
    acc = _events(tmp_path / "tb")
    assert len(acc.Scalars("epoch/valid_loss")) == 1  # the epoch before the error was written
    assert _hparams(acc)[0]["status"] == "failed"  # and the run was closed as failed


# --- MLflow ----------------------------------------------------------------------------------------------
@pytest.fixture
def mlflow_lib(tmp_path, monkeypatch):
    """mlflow, with the working directory in ``tmp_path`` (MLflow's default store ``sqlite:///mlflow.db`` and its
    ``./mlruns`` artifacts land there) and no tracking URI from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return pytest.importorskip("mlflow")


def _check_run(client, cb, learn, tmp_path, name="r1"):
    """The run ``cb`` logged, read back through ``client``: status, params, metrics, figures, the model."""
    run = client.get_run(cb.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == name
    assert run.data.params["model.arch"] == "resnet10t" and run.data.params["n_epoch"] == "2"
    hist = client.get_metric_history(cb.run_id, "valid_loss")
    assert [m.step for m in hist] == [0, 1]
    assert hist[-1].value == pytest.approx(learn.recorder.values[-1][1], rel=1e-6)
    assert client.get_metric_history(cb.run_id, "train_loss")  # per batch, every 2 batches
    shots = [f.path for f in client.list_artifacts(cb.run_id, "predictions")]
    assert len(shots) == 2 and all(p.endswith(".png") for p in shots)  # one figure per epoch
    files = [f.path for f in client.list_artifacts(cb.run_id, "model")]
    assert files == ["model/export.safetensors"]
    local = client.download_artifacts(cb.run_id, "model/export.safetensors", str(tmp_path))
    from learnkit import load_learner
    assert load_learner(local, device="cpu").dls.vocab == ["cat", "dog"]


def test_mlflow_default_store(image_learner, tmp_path, mlflow_lib):
    """No URI anywhere: MLflow 3.7+ writes to ``sqlite:///mlflow.db`` in the working directory (issue 29: the
    extra lacked SQLAlchemy, so this failed at once)."""
    mlflow = mlflow_lib
    cb = MLflowCallback(experiment_name="tiny", run_name="r1", log_model=True, log_every=2, log_preds=True)
    image_learner.fit(2, cbs=cb)
    default = mlflow.get_tracking_uri()
    if default.startswith("sqlite:"):  # MLflow >= 3.7; older releases default to ./mlruns
        assert (tmp_path / "mlflow.db").is_file()
    _check_run(mlflow.MlflowClient(), cb, image_learner, tmp_path / "dl")


def test_mlflow_sqlite_uri(image_learner, tmp_path, mlflow_lib):
    mlflow = mlflow_lib
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    cb = MLflowCallback(tracking_uri=uri, experiment_name="tiny", run_name="r1", log_model=True, log_every=2,
                        log_preds=True)
    image_learner.fit(2, cbs=cb)
    assert (tmp_path / "runs.db").is_file() and not (tmp_path / "mlflow.db").exists()
    _check_run(mlflow.MlflowClient(tracking_uri=uri), cb, image_learner, tmp_path / "dl")


def test_mlflow_failed_run(core_learner, tmp_path, mlflow_lib):
    mlflow = mlflow_lib
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    cb = MLflowCallback(tracking_uri=uri)
    with pytest.raises(RuntimeError, match="boom"):
        core_learner.fit(3, cbs=[cb, Boom()])
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(cb.run_id)
    assert run.info.status == "FAILED"
    assert len(mlflow.MlflowClient(tracking_uri=uri).get_metric_history(cb.run_id, "valid_loss")) == 1


def test_mlflow_legacy_file_store(core_learner, tmp_path, mlflow_lib, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.x keeps file: stores behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    cb = MLflowCallback(tracking_uri=uri)
    core_learner.fit(1, cbs=cb)
    assert mlflow_lib.MlflowClient(tracking_uri=uri).get_run(cb.run_id).info.status == "FINISHED"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend (artifacts proxied by the server); its URL.

    Skipped where there is no server: no ``mlflow`` command beside this Python or on PATH, or only
    ``mlflow-skinny`` (whose ``mlflow server`` lacks Flask and the rest of the server's dependencies)."""
    import importlib.metadata
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import time
    import urllib.request
    from pathlib import Path

    pytest.importorskip("mlflow")
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if exe is None:
        pytest.skip("no mlflow command: the tracking server comes with `pip install mlflow`")
    try:
        importlib.metadata.distribution("mlflow")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("only mlflow-skinny is installed, which has no tracking server: `pip install mlflow`")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tmp_path_factory.mktemp("mlflow-server")
    log = open(d / "server.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.Popen([exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}",
                             "--artifacts-destination", str(d / "artifacts")],
                            cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a cold start creates the tables (about 10 s here, more when loaded)
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n"
                            + (d / "server.log").read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow server did not answer /health within 120 s:\n"
                            + (d / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_mlflow_tracking_server(image_learner, tmp_path, mlflow_lib, mlflow_server):
    """The run goes to a real server over HTTP and is read back from it with MlflowClient (artifacts too)."""
    mlflow = mlflow_lib
    cb = MLflowCallback(tracking_uri=mlflow_server, experiment_name="tiny", run_name="r1", log_model=True,
                        log_every=2, log_preds=True)
    image_learner.fit(2, cbs=cb)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()  # nothing written here
    _check_run(mlflow.MlflowClient(tracking_uri=mlflow_server), cb, image_learner, tmp_path / "dl")


# --- W&B -------------------------------------------------------------------------------------------------
@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return wandb


def _records(path):
    """Decode a ``run-<id>.wandb`` file with W&B's own protobuf schema. It is a LevelDB-style log: a 7-byte
    header, then 32 KiB blocks of chunks ``crc32 u32, length u16, type u8`` (FULL/FIRST/MIDDLE/LAST)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf, recs = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # block padding
            pos += left
            continue
        chunk, pos = data[pos + 7: pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            recs.append(rec)
    return recs


def read_offline_run(run_dir):
    """What an offline run recorded in the log ``wandb sync`` uploads:
    ``(config, history rows, summary, exit code, artifacts)``."""
    import time
    (path,) = run_dir.glob("run-*.wandb")
    for _ in range(100):  # W&B's service process may write the last records just after finish() returns
        recs = _records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in recs):
            break
        time.sleep(0.1)
    key = lambda it: "/".join(it.nested_key) if it.nested_key else it.key  # noqa: E731
    config, history, summary, exit_code, artifacts = {}, [], {}, None, []
    for r in recs:
        kind = r.WhichOneof("record_type")
        if kind == "config":
            config.update({key(it): json.loads(it.value_json) for it in r.config.update})
        elif kind == "history":
            history.append({key(it): json.loads(it.value_json) for it in r.history.item})
        elif kind == "summary":
            summary.update({key(it): json.loads(it.value_json) for it in r.summary.update})
        elif kind == "exit":
            exit_code = r.exit.exit_code
        elif kind == "artifact":
            artifacts.append((r.artifact.type, r.artifact.name, [c.path for c in r.artifact.manifest.contents]))
    return config, history, summary, exit_code, artifacts


def test_wandb_offline_run_folder_and_summary(image_learner, wandb_offline, tmp_path):
    cb = WandbCallback(project="tiny", log_preds=True, log_model=True, log_every=1)
    image_learner.fit(2, cbs=cb)
    run_dir = cb.run_dir
    assert run_dir.name.startswith("offline-run-") and run_dir.parent == tmp_path / "wandb"
    config, history, summary, exit_code, artifacts = read_offline_run(run_dir)
    assert exit_code == 0
    assert config["model.arch"] == "resnet10t" and config["n_epoch"] == 2
    valid = [h["epoch/valid_loss"] for h in history if "epoch/valid_loss" in h]
    assert valid == pytest.approx([v[1] for v in image_learner.recorder.values], rel=1e-6)
    assert sum("train/loss" in h for h in history) == 2 * len(image_learner.dls.train)
    assert summary["final/valid_loss"] == pytest.approx(image_learner.recorder.values[-1][1], rel=1e-6)
    assert summary["epoch"] == 1
    assert len(list((run_dir / "files" / "media" / "images").glob("predictions_*.png"))) == 2
    assert artifacts == [("model", f"model-{run_dir.name.split('-')[-1]}", ["export.safetensors"])]


def test_wandb_failed_run_exits_nonzero(core_learner, wandb_offline, tmp_path):
    cb = WandbCallback(project="tiny")
    with pytest.raises(RuntimeError, match="boom"):
        core_learner.fit(3, cbs=[cb, Boom()])
    assert cb.run is None  # finished
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    _, history, summary, exit_code, _ = read_offline_run(run_dir)
    assert exit_code == 1
    assert "final/valid_loss" not in summary and summary["epoch"] == 0
    assert sum("epoch/valid_loss" in h for h in history) == 1


@pytest.mark.parametrize("ns", ["learnkit", "learnkit.core", "learnkit.vision", "learnkit.vision.segmentation",
                                "learnkit.tabular", "learnkit.collab", "learnkit.text"])
def test_every_namespace_exports_the_trackers(ns):
    import importlib
    if ns == "learnkit.text":
        pytest.importorskip("transformers")
    mod = importlib.import_module(ns)
    for name in ("TensorBoardCallback", "MLflowCallback", "WandbCallback"):
        assert name in mod.__all__ and getattr(mod, name) is globals()[name]
