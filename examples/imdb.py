"""IMDB sentiment (3,000 training / 1,000 validation reviews) on a CPU, in minutes.

    python examples/imdb.py                  # pretrained MiniLM encoder, offline (learnkit[text])
    python examples/imdb.py --arch lstm      # from scratch: word vocabulary + bidirectional LSTM
    python examples/imdb.py --fast           # a few dozen reviews, one epoch: a smoke test

The data is ``$LEARNKIT_DATA/imdb/{train,valid}/{pos,neg}/*.txt`` (or ``--data PATH``, the folder that holds
``imdb/`` or the imdb folder itself). The three lines that matter:

    dls = TextDataLoaders.from_folder(path, tok="minilm", max_len=512)
    learn = text_classifier_learner(dls, "minilm", metrics=accuracy, config={"attn_dropout": 0}).to_bf16()
    learn.fine_tune(3, 2e-3, freeze_epochs=5, unfreeze_to=-3, head_lr=1e-2)

How it fits a CPU budget: reviews are tokenised once, truncated to 512 WordPiece tokens (the first quarter and
the last three quarters: verdicts sit at the end), and batched by length so a batch costs its own longest review.
While the body is frozen its output never changes, so one pass computes, for every review, both the
head's input and the input of the last two layers (`learnkit.text.cache`); the head then trains for a few
epochs in seconds, and the last two layers plus the head train for ``--epochs`` epochs on the cached
states, each costing about the same as one forward pass of the full encoder. The caching pass and those
epochs run in bf16 autocast where the CPU computes bfloat16 natively (AVX512-BF16 or AMX; on other CPUs bf16
is slower and the script stays in fp32; ``--fp32`` forces fp32), and without dropout on the attention
probabilities, so PyTorch's fused attention kernel runs: together about half the CPU time of fp32 with
attention dropout (``benchmarks/imdb_phases.py``). Freed memory is kept for reuse (`reuse_cpu_memory`):
without it, glibc maps every large activation afresh and the run spends a minute of CPU in page faults. Accuracy, seeds 0-2: 0.903 / 0.899 / 0.894, mean 0.899, at
about 1,350 CPU s a run on a loaded 2-core CPU (``benchmarks/RESULTS.md``, "imdb.py: 512 tokens, base lr 2e-3").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from learnkit import native_bf16, reuse_cpu_memory, set_seed
from learnkit.datasets import URLs, find_data
from learnkit.text import (TextClassificationInterpretation, TextDataLoaders, accuracy, read_text,
                           text_classifier_learner)


def find_imdb(data: str | None) -> Path:
    """``--data`` (``imdb/`` or the folder holding it), else ``$LEARNKIT_DATA/imdb``: never downloaded here."""
    return find_data(URLs.IMDB, data, marker="train", download=False)


def fast_dls(path: Path, tok: str, max_len: int, n: int = 24):
    """A tiny subset (``n`` reviews per class and split, ``n // 2`` for validation) for smoke tests."""
    texts, labels, train_idx, valid_idx, sources = [], [], [], [], []
    for split, count in (("train", n), ("valid", n // 2)):
        for label in ("neg", "pos"):
            for f in sorted((path / split / label).glob("*.txt"))[:count]:
                (valid_idx if split == "valid" else train_idx).append(len(texts))
                texts.append(read_text(f))
                labels.append(label)
                sources.append(str(f))
    return TextDataLoaders.from_texts(texts, labels, train_idx, valid_idx, sources=sources, tok=tok, max_len=max_len,
                                      min_freq=1, bs=16)


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder holding imdb/ (default: $LEARNKIT_DATA)")
    ap.add_argument("--arch", default="minilm", choices=["minilm", "lstm"])
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs with the top layers unfrozen (minilm, default 3) or in all (lstm, default 8)")
    ap.add_argument("--unfreeze", type=int, default=2, help="minilm: how many top transformer layers to train")
    ap.add_argument("--lr", type=float, default=None, help="base learning rate (minilm 2e-3, lstm 3e-3)")
    ap.add_argument("--max-len", type=int, default=512, help="tokens kept per review")
    ap.add_argument("--fp32", action="store_true",
                    help="minilm: no bf16 autocast (the default where the CPU has no native bfloat16: AVX512-BF16 "
                         "or AMX)")
    ap.add_argument("--fast", action="store_true", help="a tiny subset and one epoch (smoke test)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation, dropout and augmentation")
    args = ap.parse_args(argv)
    set_seed(args.seed)
    reuse_cpu_memory()  # a CPU run re-allocates the same large activations every batch: keep them, no page faults
    path = find_imdb(args.data)
    t0, c0 = time.perf_counter(), time.process_time()

    tok = "minilm" if args.arch == "minilm" else "words"
    max_len = args.max_len
    if args.fast:
        dls = fast_dls(path, tok, max_len=min(max_len, 64))
    else:
        dls = TextDataLoaders.from_folder(path, tok=tok, max_len=max_len, bs=32)
    print(dls)
    dls.show_batch(max_n=3, max_chars=120)

    if args.arch == "minilm":
        epochs = 1 if args.fast else (3 if args.epochs is None else args.epochs)
        learn = text_classifier_learner(dls, "minilm", metrics=accuracy, config={"attn_dropout": 0})
        if not args.fp32 and native_bf16():
            learn.to_bf16()
        learn.fine_tune(epochs, args.lr or 2e-3, freeze_epochs=1 if args.fast else 5,
                        unfreeze_to=-(args.unfreeze + 1), head_lr=1e-2)
    else:
        epochs = 1 if args.fast else (8 if args.epochs is None else args.epochs)
        learn = text_classifier_learner(dls, "lstm", metrics=accuracy)
        learn.fit_one_cycle(epochs, args.lr or 3e-3, wd=0.05)

    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    loss, acc = learn.recorder.values[-1][1:3]  # the last epoch's validation (no extra pass over the reviews)
    print(f"\narch={args.arch} validation accuracy {acc:.4f} (loss {loss:.4f}) on {len(dls.valid.dataset)} reviews")
    print(f"time: {wall:.0f} s wall, {cpu:.0f} s CPU (this process; on an otherwise idle machine the wall time of "
          f"a 2-core run is about CPU / 2)")
    print("predict('This movie was wonderful'):", learn.predict("This movie was wonderful"))
    print("\nmost confidently wrong (one more pass over the validation reviews, not timed above):")
    TextClassificationInterpretation.from_learner(learn).show_top_losses(3, max_chars=150)
    return acc


if __name__ == "__main__":
    main()
