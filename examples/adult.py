"""Adult income (UCI census): predict whether a person earns >= 50k from 14 columns.

    python examples/adult.py                 # all 14 columns, ~0.87 validation accuracy
    python examples/adult.py --reduced       # fastai's tutorial: 6 cat + 3 cont columns, bs 64, 3 epochs
    python examples/adult.py --fast          # one epoch, a smoke test

The data is ``$LEARNKIT_DATA/adult/adult.csv`` (or ``--data PATH``: the folder holding ``adult/`` or the
CSV itself). The validation set is the automatic 20 % split (``RandomSplitter(0.2, seed=42)``); a
scikit-learn ``HistGradientBoostingClassifier`` on the same split and columns is printed as a reference.

The three lines that matter:

    dls = TabularDataLoaders.from_csv(csv, cat_names=..., cont_names=..., y_names="salary", na_values=["?"])
    learn = tabular_learner(dls, metrics=accuracy)
    learn.fit_one_cycle(5, 1e-2)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from learnkit import set_seed
from learnkit.datasets import URLs, find_data
from learnkit.core.split import RandomSplitter
from learnkit.tabular import (Callback, Categorify, Discretize, FillMissing, Normalize, TabularDataLoaders, accuracy,
                              tabular_learner)

CAT_NAMES = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
             "native-country"]
CONT_NAMES = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
# fastai's tabular tutorial ("the lesson's reduced set"): 6 categorical + 3 continuous columns.
REDUCED_CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
REDUCED_CONT = ["age", "fnlwgt", "education-num"]


class EpochTimer(Callback):
    """Wall time of each epoch (training + validation), read after the Recorder has logged it."""

    order = 55

    def before_fit(self):
        self.times: list[float] = []

    def after_epoch(self):
        self.times.append(self.learn.recorder.log[-1])


def find_csv(data: str | None) -> Path:
    """adult.csv: ``--data`` (the CSV, ``adult/`` or the folder holding it), else ``$LEARNKIT_DATA/adult``."""
    found = find_data(URLs.ADULT_SAMPLE, data, marker="adult.csv", download=False)
    return found if found.is_file() else found / "adult.csv"


def sklearn_reference(csv: Path, cat_names: list[str], cont_names: list[str]) -> tuple[float, float]:
    """HistGradientBoostingClassifier (native categorical support) on the same split and columns."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    t0 = time.perf_counter()
    df = pd.read_csv(csv, skipinitialspace=True, na_values=["?"])
    train_idx, valid_idx = RandomSplitter(0.2, seed=42)(range(len(df)))
    x = df[cat_names + cont_names].copy()
    for c in cat_names:
        x[c] = x[c].astype("category")
    y = df["salary"].to_numpy()
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(x.iloc[train_idx], y[train_idx])
    acc = float((model.predict(x.iloc[valid_idx]) == y[valid_idx]).mean())
    return acc, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="folder with adult/adult.csv, or the CSV (default $LEARNKIT_DATA)")
    ap.add_argument("--epochs", type=int, default=None, help="default 5 (3 with --reduced, 1 with --fast)")
    ap.add_argument("--fast", action="store_true", help="one epoch: a quick check that everything runs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation, dropout and augmentation")
    ap.add_argument("--reduced", action="store_true",
                    help="fastai's tutorial setup: 6 cat + 3 cont columns, standard procs, bs 64, lr 1e-3")
    ap.add_argument("--bs", type=int, default=None, help="batch size (default 256; 64 with --reduced)")
    ap.add_argument("--lr", type=float, default=None, help="peak one-cycle learning rate (default 1e-2; "
                                                           "1e-3 with --reduced)")
    ap.add_argument("--discretize", action=argparse.BooleanOptionalAction, default=None,
                    help="add the Discretize proc (default: on, off with --reduced)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: this small MLP gains nothing from more, and on a "
                         "shared machine extra threads spin against other processes)")
    ap.add_argument("--no-reference", action="store_true", help="skip the scikit-learn reference")
    args = ap.parse_args(argv)
    set_seed(args.seed)

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    csv = find_csv(args.data)
    cat_names, cont_names = (REDUCED_CAT, REDUCED_CONT) if args.reduced else (CAT_NAMES, CONT_NAMES)
    epochs = args.epochs or (1 if args.fast else 3 if args.reduced else 5)
    bs = args.bs or (64 if args.reduced else 256)
    lr = args.lr or (1e-3 if args.reduced else 1e-2)
    discretize = (not args.reduced) if args.discretize is None else args.discretize
    procs = [Categorify, FillMissing, Normalize] + ([Discretize] if discretize else [])

    dls = TabularDataLoaders.from_csv(csv, path=".", procs=procs, cat_names=cat_names, cont_names=cont_names,
                                      y_names="salary", na_values=["?"], bs=bs, device="cpu")
    t_data = time.perf_counter() - t_start
    print(f"data: {len(dls.train.dataset)} train / {len(dls.valid.dataset)} valid rows, "
          f"{len(dls.cat_names)} categorical ({', '.join(dls.cat_names)}), {len(dls.cont_names)} continuous; "
          f"procs {[type(p).__name__ for p in dls.procs.procs]}; built in {t_data:.1f}s")

    timer = EpochTimer()
    learn = tabular_learner(dls, metrics=accuracy, cbs=[timer])
    t0 = time.perf_counter()
    learn.fit_one_cycle(epochs, lr)
    t_fit = time.perf_counter() - t0
    acc = learn.recorder.final_record()["accuracy"]
    total = time.perf_counter() - t_start
    per_epoch = sorted(timer.times)[len(timer.times) // 2]
    print(f"learnkit: validation accuracy {acc:.4f} after {epochs} epochs (bs {bs}, lr {lr:g}); "
          f"median epoch {per_epoch:.2f}s, fit {t_fit:.1f}s, total {total:.1f}s "
          f"({torch.get_num_threads()} thread(s))")

    row, idx, probs = learn.predict(pd.read_csv(csv, skipinitialspace=True, nrows=1).iloc[0])
    print(f"predict(first row): {row['salary']!r} with p={float(probs[idx]):.3f}")

    if not args.no_reference:
        ref, t_ref = sklearn_reference(csv, cat_names, cont_names)
        print(f"reference: sklearn HistGradientBoostingClassifier validation accuracy {ref:.4f} "
              f"on the same split and columns ({t_ref:.1f}s)")
    print(f"total time {time.perf_counter() - t_start:.1f}s")
    return acc


if __name__ == "__main__":
    main()
