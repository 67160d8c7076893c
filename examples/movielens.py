"""Movie recommendations from MovieLens 100K ratings: a biased dot-product model in three lines.

    python examples/movielens.py                 # 6 epochs, dot product with biases, 50 factors
    python examples/movielens.py --nn            # the neural variant (embeddings into an MLP)
    python examples/movielens.py --fast          # a tiny run for CI

The ratings come from ``--data`` (a data root holding ``ml-100k/u.data``, or the ``ml-100k`` folder
itself), else ``$LEARNKIT_DATA/ml-100k``, else ``untar_data(URLs.ML_100k)`` downloads them. Prints the
validation MSE on the automatic 20 % split (seed 42), the wall time, the 5 movies with the highest and
lowest learned bias (among the 1,000 most-rated) and 10 recommendations for user 1.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from learnkit.datasets import URLs, find_data
from learnkit.collab import CollabDataLoaders, collab_learner


def find_ml100k(data: str | None) -> Path:
    """``--data`` (``ml-100k/`` or the folder holding it), else ``$LEARNKIT_DATA/ml-100k``, else a download."""
    return find_data(URLs.ML_100k, data, marker="u.data")


def read_titles(path: Path) -> dict[int, str]:
    """Movie id → title from ``u.item`` ('|'-separated, latin-1)."""
    items = pd.read_csv(path / "u.item", sep="|", header=None, encoding="latin-1", usecols=[0, 1],
                        names=["item", "title"])
    return dict(zip(items["item"], items["title"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data root (with ml-100k/u.data) or the ml-100k folder")
    parser.add_argument("--epochs", type=int, default=6, help="fit_one_cycle epochs")
    parser.add_argument("--bs", type=int, default=256, help="batch size")
    parser.add_argument("--lr", type=float, default=1e-2, help="peak learning rate")
    parser.add_argument("--wd", type=float, default=0.5, help="weight decay of the embeddings (biases get none)")
    parser.add_argument("--n-factors", type=int, default=50, help="width of the user/item vectors")
    parser.add_argument("--nn", action="store_true", help="the neural model instead of the dot product")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation (the split is fixed)")
    parser.add_argument("--fast", action="store_true", help="a tiny CI run: one epoch")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (0: torch's default). One is fastest here: a batch of this model "
                             "is too small to split, and on a busy machine extra threads wait on each other")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    epochs = 1 if args.fast else args.epochs

    start = time.perf_counter()
    path = find_ml100k(args.data)
    dls = CollabDataLoaders.from_csv(path / "u.data", sep="\t", header=None,
                                     names=["user", "item", "rating", "timestamp"], bs=args.bs)
    torch.manual_seed(args.seed)
    learn = collab_learner(dls, n_factors=args.n_factors, y_range=(0, 5.5), use_nn=args.nn, wd=args.wd,
                           progress=not args.fast)
    learn.fit_one_cycle(epochs, args.lr)
    fit_time = time.perf_counter() - start

    mse = learn.validate()[0]
    print(f"{'EmbeddingNN' if args.nn else 'EmbeddingDotBias'}: {len(dls.users.ids)} users, {len(dls.items.ids)} movies, "
          f"{len(dls.train.dataset)} training / {len(dls.valid.dataset)} validation ratings, {epochs} epochs")
    print(f"validation MSE {mse:.4f} (RMSE {mse ** 0.5:.4f})")
    print(f"wall time {fit_time:.1f} s (data + training)")

    titles = read_titles(path)
    if not args.nn:
        ratings = pd.read_csv(path / "u.data", sep="\t", header=None, names=["user", "item", "rating", "timestamp"])
        top = [i for i in ratings["item"].value_counts().index[:1000] if i in dls.items]
        bias = learn.model.bias(top, is_item=True)
        order = bias.argsort(descending=True).tolist()
        print("highest bias:", "; ".join(f"{titles[top[i]]} ({float(bias[i]):+.2f})" for i in order[:5]))
        print("lowest bias: ", "; ".join(f"{titles[top[i]]} ({float(bias[i]):+.2f})" for i in order[::-1][:5]))
    recs = learn.recommend(1, n=10)
    print("10 recommendations for user 1 (movies they have not rated):")
    for item, pred in zip(recs["item"], recs["prediction"]):
        print(f"  {pred:.2f}  {titles[item]}")


if __name__ == "__main__":
    main()
