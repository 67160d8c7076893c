"""fastai's IMDB_SAMPLE: 1,000 reviews in ``texts.csv`` (800 training, 200 validation by its ``is_valid`` column).

    python examples/imdb_sample.py               # pretrained MiniLM encoder, offline (learnkit[text])
    python examples/imdb_sample.py --arch lstm   # from scratch (word vocabulary + LSTM)
    python examples/imdb_sample.py --fast        # 100 rows, one epoch: a smoke test

The data is ``$LEARNKIT_DATA/imdb/texts.csv`` (or ``--data PATH``: the folder holding ``imdb/``, the imdb
folder, or the CSV itself). The three lines that matter:

    dls = TextDataLoaders.from_csv(path, "texts.csv", text_col="text", label_col="label", valid_col="is_valid",
                                   tok="minilm")
    learn = text_classifier_learner(dls, "minilm", metrics=accuracy)
    learn.fine_tune(3, 1e-3, freeze_epochs=5, unfreeze_to=-3, head_lr=1e-2)

See examples/imdb.py for how the frozen-body cache keeps this cheap on a CPU.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from learnkit import set_seed
from learnkit.datasets import URLs, find_data
from learnkit.text import TextClassificationInterpretation, TextDataLoaders, accuracy, text_classifier_learner


def find_csv(data: str | None) -> Path:
    """texts.csv: ``--data`` (the CSV, ``imdb/`` or the folder holding it), else ``$LEARNKIT_DATA/imdb``."""
    found = find_data(URLs.IMDB_SAMPLE, data, marker="texts.csv", download=False)
    return found if found.is_file() else found / "texts.csv"


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder holding imdb/texts.csv (default: $LEARNKIT_DATA)")
    ap.add_argument("--arch", default="minilm", choices=["minilm", "lstm"])
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs with the top layers unfrozen (minilm, default 3) or in all (lstm, default 10)")
    ap.add_argument("--unfreeze", type=int, default=2, help="minilm: how many top transformer layers to train")
    ap.add_argument("--lr", type=float, default=None, help="base learning rate (minilm 1e-3, lstm 3e-3)")
    ap.add_argument("--bf16", action="store_true",
                    help="minilm: bf16 autocast (CPUs with native bfloat16: AVX512-BF16 or AMX; about 1.3x faster)")
    ap.add_argument("--fast", action="store_true", help="100 rows and one epoch (smoke test)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation, dropout and augmentation")
    args = ap.parse_args(argv)
    set_seed(args.seed)
    csv = find_csv(args.data)
    t0, c0 = time.perf_counter(), time.process_time()

    tok = "minilm" if args.arch == "minilm" else "words"
    df = pd.read_csv(csv)
    if args.fast:
        df = pd.concat([df[~df.is_valid].head(80), df[df.is_valid].head(20)])
    dls = TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_col="is_valid", tok=tok,
                                  max_len=64 if args.fast else None, min_freq=1 if args.fast else 3, bs=32)
    print(dls)
    dls.show_batch(max_n=3, max_chars=120)

    if args.arch == "minilm":
        epochs = 1 if args.fast else (3 if args.epochs is None else args.epochs)
        learn = text_classifier_learner(dls, "minilm", metrics=accuracy)
        if args.bf16:
            learn.to_bf16()
        learn.fine_tune(epochs, args.lr or 1e-3, freeze_epochs=1 if args.fast else 5,
                        unfreeze_to=-(args.unfreeze + 1), head_lr=1e-2)
    else:
        epochs = 1 if args.fast else (10 if args.epochs is None else args.epochs)
        learn = text_classifier_learner(dls, "lstm", metrics=accuracy)
        learn.fit_one_cycle(epochs, args.lr or 3e-3, wd=0.05)

    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    loss, acc = learn.recorder.values[-1][1:3]  # the last epoch's validation (no extra pass over the reviews)
    print(f"\narch={args.arch} validation accuracy {acc:.4f} (loss {loss:.4f}) on {len(dls.valid.dataset)} reviews")
    print(f"time: {wall:.0f} s wall, {cpu:.0f} s CPU (this process)")
    print("predict('This movie was wonderful'):", learn.predict("This movie was wonderful"))
    print("\nmost confidently wrong (one more pass over the validation reviews, not timed above):")
    TextClassificationInterpretation.from_learner(learn).show_top_losses(3, max_chars=150)
    return acc


if __name__ == "__main__":
    main()
