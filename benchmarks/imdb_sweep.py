"""Several `fine_tune` settings of ``examples/imdb.py`` (MiniLM) on one shared caching pass: an accuracy sweep.

    python benchmarks/imdb_sweep.py --configs '[{"lr": 2e-3, "epochs": 3}, {"unfreeze": 1, "epochs": 4}]'

The frozen encoder's states (the inputs of every layer a setting unfreezes, and of the head) are computed
once, bf16 autocast, attention dropout 0, and handed to a fresh learner per setting (the batch order rewound
too, so each setting sees what a fresh run of the example with its seed sees), so a setting costs its own
head and unfrozen epochs only; a whole run of the example costs about tokenising + the caching pass (printed
once) + the setting's ``fine_tune`` CPU s. Keys of a setting (defaults): ``unfreeze`` (2), ``epochs`` (2),
``lr`` (1e-3), ``head_lr`` (1e-2), ``lr_mult`` (100), ``wd`` (None), ``seed`` (0), ``freeze_epochs`` (5),
``head_dropout`` (0.1: dropout before the new linear head), ``label_smoothing`` (0: plain cross-entropy),
``ema`` (0: none; else `EMACallback`'s decay, validating on the average, through both phases).
It reaches into the cache's private ``_fill``/``_valid`` (a benchmark, not a recipe).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from imdb import find_imdb  # noqa: E402
from imdb_phases import subset_dls  # noqa: E402

from learnkit import EMACallback, set_seed  # noqa: E402
from learnkit.text import (LabelSmoothingCrossEntropyFlat, TextDataLoaders, accuracy,  # noqa: E402
                           text_classifier_learner)
from learnkit.text.cache import FrozenFeatureCache, StageStates  # noqa: E402

DEFAULTS = dict(unfreeze=2, epochs=2, lr=1e-3, head_lr=1e-2, lr_mult=100, wd=None, seed=0, freeze_epochs=5,
                head_dropout=0.1, label_smoothing=0.0, ema=0.0)


def cache_of(learn) -> StageStates:
    return next(cb.source for cb in learn.cbs if isinstance(cb, FrozenFeatureCache))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--n-train", type=int, default=None, help="a subset: this many training reviews")
    ap.add_argument("--configs", required=True, help="a JSON list of settings (dicts; keys in the docstring)")
    args = ap.parse_args()
    configs = [DEFAULTS | c for c in json.loads(args.configs)]
    unknown = {k for c in configs for k in c} - set(DEFAULTS)
    if unknown:
        ap.error(f"unknown setting keys {sorted(unknown)}: use {sorted(DEFAULTS)}")
    path = find_imdb(args.data)
    c0 = time.process_time()
    dls = (subset_dls(path, args.n_train, args.n_train // 3, args.max_len) if args.n_train
           else TextDataLoaders.from_folder(path, tok="minilm", max_len=args.max_len, bs=32))
    print(f"tokenising: {time.process_time() - c0:.0f} CPU s", flush=True)

    def make(c: dict):
        set_seed(c["seed"])
        loss = LabelSmoothingCrossEntropyFlat(eps=c["label_smoothing"]) if c["label_smoothing"] else None
        learn = text_classifier_learner(dls, "minilm", metrics=accuracy, loss_func=loss,
                                        config={"attn_dropout": 0.0, "head_dropout": c["head_dropout"]})
        return learn.to_bf16()

    learn = make(DEFAULTS)
    learn.freeze()
    n_body = learn.model.n_stages - 2  # the pooling stage: the head's input
    need = sorted({n_body} | {n_body - c["unfreeze"] for c in configs})
    c1 = time.process_time()
    cache = cache_of(learn).cache
    if not cache._fill(learn.model, dls, need, learn.device, learn.autocast(), False):
        raise SystemExit("the states do not fit in max_cache_mb")
    print(f"caching pass (stages {need}): {time.process_time() - c1:.0f} CPU s", flush=True)
    saved = (cache.key, dict(cache.entries), dict(cache.fps))
    sampler = dls.train.batch_sampler  # its own generator (seeded by the loaders, not set_seed): rewound per setting
    sampler_state = sampler.generator.get_state()
    for c in configs:
        sampler.generator.set_state(sampler_state)
        learn = make(c)
        mine = cache_of(learn).cache
        mine.key, mine.entries, mine.fps = saved[0], dict(saved[1]), dict(saved[2])
        assert all(mine._valid(learn.model, b) for b in need), "the shared states do not match this model"
        t, w = time.process_time(), time.perf_counter()
        learn.fine_tune(c["epochs"], c["lr"], freeze_epochs=c["freeze_epochs"], unfreeze_to=-(c["unfreeze"] + 1),
                        head_lr=c["head_lr"], lr_mult=c["lr_mult"], wd=c["wd"],
                        cbs=[EMACallback(decay=c["ema"])] if c["ema"] else None)
        per_epoch = ["/".join(f"{x:.4f}" for x in v) for v in learn.recorder.values]
        print(f"{c}: accuracy {learn.recorder.values[-1][2]:.4f}; fine_tune {time.process_time() - t:.0f} CPU s, "
              f"{time.perf_counter() - w:.0f} s wall; load {os.getloadavg()[0]:.1f}; per unfrozen epoch "
              f"(train loss/valid loss/accuracy) {per_epoch}", flush=True)


if __name__ == "__main__":
    main()
