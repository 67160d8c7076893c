"""learnkit vs fastai on adult, paired by seed: final accuracy of each side over several seeds, mean and spread.

The recipe is `vs_fastai.py`'s (the lesson's columns, Categorify + FillMissing + Normalize, the default
tabular model, bs 64, ``fit_one_cycle(3, 1e-2)``, the same validation rows on both sides). Seed ``s`` seeds
the weights and the training loader's shuffle on each side (fastai: ``set_seed(s)``; learnkit:
``torch.manual_seed(s)`` and the loader's ``seed=s``), so a seed is a paired draw, not the same numbers. The
sides alternate who goes first for each seed.

    python benchmarks/adult_paired.py [--seeds 0 1 2 3 4] [--fastai-python /work/bench-venv/bin/python]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import REPO, Worker, data_root, machine  # noqa: E402
from vs_fastai import CONFIG, _adult_df, _valid_idx  # noqa: E402


def _summary(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return f"mean {statistics.mean(xs):.4f} sd {sd:.4f} (min {min(xs):.4f}, max {max(xs):.4f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per side (default: torch's)")
    ap.add_argument("--fastai-python", default=str(REPO / "bench-venv" / "bin" / "python"))
    ap.add_argument("--learnkit-python", default=sys.executable)
    ap.add_argument("--json", default=None, help="also write the raw results here")
    args = ap.parse_args()
    root = data_root(args.data)
    script = REPO / "benchmarks" / "vs_fastai.py"
    print(f"machine: {machine()}")
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S')}; seeds {args.seeds}; settings {json.dumps(CONFIG['adult'])}",
          flush=True)
    workers = [Worker("learnkit", args.learnkit_python, script, args.threads),
               Worker("fastai", args.fastai_python, script, args.threads)]
    jargs: dict[str, Any] = {"data": str(root), **CONFIG["adult"], "valid_idx": _valid_idx(len(_adult_df(root)))}
    res: dict[str, list[dict[str, Any]]] = {w.name: [] for w in workers}
    try:
        print(f"{'seed':>4s}  {'learnkit':>8s}  {'fastai':>8s}  {'diff':>7s}  epoch s (lk / fa)")
        for i, seed in enumerate(args.seeds):
            for w in (workers if i % 2 == 0 else workers[::-1]):
                res[w.name].append(w.call({"job": "adult", "args": {**jargs, "seed": seed}}))
            lk, fa = res["learnkit"][-1], res["fastai"][-1]
            print(f"{seed:4d}  {lk['metric']:8.4f}  {fa['metric']:8.4f}  {lk['metric'] - fa['metric']:+7.4f}  "
                  f"{statistics.mean(lk['epoch_s']):.2f} / {statistics.mean(fa['epoch_s']):.2f}", flush=True)
    finally:
        for w in workers:
            w.close()
    acc = {side: [r["metric"] for r in runs] for side, runs in res.items()}
    epoch = {side: statistics.mean(t for r in runs for t in r["epoch_s"]) for side, runs in res.items()}
    diffs = [a - b for a, b in zip(acc["learnkit"], acc["fastai"])]
    for side in ("learnkit", "fastai"):
        print(f"{side:9s} accuracy {_summary(acc[side])}; epoch {epoch[side]:.2f}s")
    print(f"paired diff (learnkit - fastai): {_summary(diffs)}; learnkit better or equal on "
          f"{sum(d >= 0 for d in diffs)}/{len(diffs)} seeds; epoch time ratio {epoch['learnkit'] / epoch['fastai']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
