"""Shared fixtures: where the real datasets are, the GPU marker, and the one "export, then load and predict in
a fresh process" check that every task's export test uses (``fresh_process``)."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared with other work, spinning threads
# take the time slices the busy ones need (measured here: a tiny U-Net epoch 0.5 s on one thread, 40 s on two
# under load). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

matplotlib.use("Agg")
os.environ.setdefault("LEARNKIT_PROGRESS", "0")
# loaders in the main process unless a test asks for workers (tiny data: starting workers costs more than it saves)
os.environ.setdefault("LEARNKIT_NUM_WORKERS", "0")

REPO = Path(__file__).resolve().parents[1]


def find_data_root() -> Path | None:
    """``$LEARNKIT_DATA`` if set, else ``../shared/data`` beside the repository, else ``None``."""
    env = os.environ.get("LEARNKIT_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand.resolve()
    return None


@pytest.fixture(scope="session")
def data_path() -> Path:
    """The real datasets folder; tests that use it skip when it is absent."""
    root = find_data_root()
    if root is None:
        pytest.skip("real data not found: set LEARNKIT_DATA or put shared/data beside the repo")
    return root


# --- deprecated APIs that learnkit calls fail the tests ------------------------------------------------------
# pyproject.toml's `error::DeprecationWarning:learnkit` fails a DeprecationWarning attributed to learnkit's code.
# Some libraries attribute the warning of a deprecated function to their own frame (stacklevel=1: torchvision
# 0.29's decoders do), so a learnkit call to it would pass unseen. While the tests run, such a warning is
# attributed to the first frame outside the library that issued it; when that frame is learnkit's, the filter
# fails the test. A library that already points at its caller, and one library's warning about another's
# code (a third-party internal), are left as they are.
_plain_warn = None


def _module_of(frame) -> str:
    return frame.f_globals.get("__name__") or ""


def _warn_at_caller(message, category=None, stacklevel=1, source=None, **kwargs):
    import warnings
    cat = category or (type(message) if isinstance(message, Warning) else UserWarning)
    if isinstance(cat, type) and issubclass(cat, DeprecationWarning) and stacklevel >= 1:
        issuer = sys._getframe(1)  # the frame that called warnings.warn
        lib = _module_of(issuer).partition(".")[0]
        attributed = issuer
        for _ in range(stacklevel - 1):
            attributed = attributed.f_back if attributed is not None else None
        if lib and lib != "learnkit" and attributed is not None and _module_of(attributed).partition(".")[0] == lib:
            frame, level = attributed, stacklevel
            while frame is not None and _module_of(frame).partition(".")[0] == lib:
                frame, level = frame.f_back, level + 1
            if frame is not None and _module_of(frame).startswith("learnkit"):
                stacklevel = level  # the learnkit frame that called the deprecated API
    return _plain_warn(message, cat, stacklevel + 1, source, **kwargs)


def pytest_configure(config):
    import warnings
    global _plain_warn
    _plain_warn = warnings.warn
    warnings.warn = _warn_at_caller


def pytest_unconfigure(config):
    import warnings
    if _plain_warn is not None:
        warnings.warn = _plain_warn


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    torch.manual_seed(0)
    yield
    import matplotlib.pyplot as plt
    plt.close("all")


# --- export, then load and predict in a fresh process --------------------------------------------------------
TOL = 1e-5

# Runs in the fresh process. Items arrive as JSON; a "dataframe" item list is rebuilt with pandas.
LOADER = textwrap.dedent("""
    import json, sys
    import torch
    from safetensors.torch import load_file
    from learnkit import load_learner

    spec = json.load(open(sys.argv[1]))
    assert not any(m.startswith(("learnkit.vision", "learnkit.text", "learnkit.tabular", "learnkit.collab"))
                   for m in sys.modules), "the task package was imported before load_learner"
    learn = load_learner(spec["export"], device="cpu")
    items = spec["items"]
    if spec.get("dataframe"):
        import pandas as pd
        items = pd.DataFrame(items)
    exp = load_file(spec["expected"])
    probs = learn.get_preds(dl=learn.dls.test_dl(items))[0]
    assert probs.shape == exp["probs"].shape, (probs.shape, exp["probs"].shape)
    err = float((probs.float() - exp["probs"].float()).abs().max())
    first = items.iloc[0].to_dict() if spec.get("dataframe") else items[0]
    label, idx, p = learn.predict(first)
    perr = float((p.float() - exp["predict_probs"].float()).abs().max())
    idx = idx.tolist() if isinstance(idx, torch.Tensor) else idx
    print(json.dumps({"max_err": err, "predict_err": perr, "idx": idx,
                      "label": label if isinstance(label, (str, int, float)) else None}))
""")




def _jsonable_idx(idx: Any) -> Any:
    if isinstance(idx, torch.Tensor):
        return idx.tolist()
    if isinstance(idx, float) and math.isnan(idx):
        return None
    return idx


def check_fresh_process(learn, items: list, tmp_path: Path, data_dir: Path, dataframe: bool = False) -> dict:
    """Export ``learn``, delete ``data_dir``, load in a subprocess and compare predictions there."""
    path = learn.export(tmp_path / "export" / "model.safetensors")
    from learnkit.core.export import read_export_config
    assert str(data_dir) not in json.dumps(read_export_config(path)), "the export refers to the training data folder"
    test_items = items
    if dataframe:
        import pandas as pd
        test_items = pd.DataFrame(items)
    probs = learn.get_preds(dl=learn.dls.test_dl(test_items))[0]
    first = test_items.iloc[0].to_dict() if dataframe else items[0]
    label, idx, p = learn.predict(first)
    assert torch.allclose(p.float(), probs[0].float(), atol=TOL), "predict and get_preds disagree before export"
    expected = tmp_path / "expected.safetensors"
    save_file({"probs": probs.float().contiguous(), "predict_probs": p.float().contiguous()}, str(expected))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"export": str(path), "items": items, "expected": str(expected),
                                "dataframe": dataframe}))
    shutil.rmtree(data_dir)
    cwd = tmp_path / "fresh_cwd"
    cwd.mkdir()
    env = {**os.environ, "LEARNKIT_DATA": str(tmp_path / "no-data-here")}
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, "-c", LOADER, str(spec)], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["max_err"] <= TOL and res["predict_err"] <= TOL, res
    assert res["idx"] == _jsonable_idx(idx)
    if isinstance(label, (str, int, float)):
        assert res["label"] == label
    return res


@pytest.fixture
def fresh_process(tmp_path: Path) -> Callable[..., dict]:
    """``check(learn, items, data_dir=None, dataframe=False)``: export ``learn``, delete ``data_dir`` (the training
    data), then in a new Python process with another cwd, ``LEARNKIT_DATA`` pointing nowhere and no task package
    imported, ``load_learner`` the file and compare ``get_preds`` on ``items`` and ``predict`` on the first one
    with the exported learner's, to 1e-5. Returns what the fresh process printed (``label``, ``idx``, errors)."""
    def check(learn: Any, items: list, data_dir: Path | None = None, dataframe: bool = False) -> dict:
        path = learn.export(tmp_path / "export" / "model.safetensors")
        from learnkit.core.export import read_export_config
        if data_dir is not None:
            assert str(data_dir) not in json.dumps(read_export_config(path)), "the export names the training data"
        test_items = items
        if dataframe:
            import pandas as pd
            test_items = pd.DataFrame(items)
        probs = learn.get_preds(dl=learn.dls.test_dl(test_items))[0]
        first = test_items.iloc[0].to_dict() if dataframe else items[0]
        label, idx, p = learn.predict(first)
        assert torch.allclose(p.float(), probs[0].float(), atol=TOL), "predict and get_preds disagree before export"
        expected = tmp_path / "expected.safetensors"
        save_file({"probs": probs.float().contiguous(), "predict_probs": p.float().contiguous()}, str(expected))
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({"export": str(path), "items": items, "expected": str(expected),
                                    "dataframe": dataframe}))
        if data_dir is not None:
            shutil.rmtree(data_dir)
        cwd = tmp_path / "fresh_cwd"
        cwd.mkdir(exist_ok=True)
        env = {**os.environ, "LEARNKIT_DATA": str(tmp_path / "no-data-here"), "HF_HUB_OFFLINE": "1"}
        out = subprocess.run([sys.executable, "-c", LOADER, str(spec)], cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-4000:]
        res = json.loads(out.stdout.strip().splitlines()[-1])
        assert res["max_err"] <= TOL and res["predict_err"] <= TOL, res
        assert res["idx"] == _jsonable_idx(idx)
        if isinstance(label, (str, int, float)):
            assert res["label"] == label
        return res
    return check
