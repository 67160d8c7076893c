"""ULMFiT on IMDB: fine-tune an AWD-LSTM language model on the reviews, then a classifier with its encoder.

    python examples/imdb_lm.py                 # a small-scale CPU run (minutes)
    python examples/imdb_lm.py --fast          # a few dozen reviews, one epoch each: a smoke test
    python examples/imdb_lm.py --pretrained    # start the LM from fastai's WikiText-103 weights (a download)

The data is ``$LEARNKIT_DATA/imdb/{train,valid}/{pos,neg}/*.txt`` (or ``--data PATH``). The steps are
fastbook chapter 10's:

    dls_lm = TextDataLoaders.from_folder(path, is_lm=True, tok="words", valid_pct=0.1)
    learn = language_model_learner(dls_lm, AWD_LSTM, drop_mult=0.3, metrics=[accuracy, Perplexity()])
    learn.fit_one_cycle(1, 2e-2); learn.save_encoder("finetuned")
    dls = TextDataLoaders.from_folder(path, tok="words", text_vocab=dls_lm.vocab)
    learn = text_classifier_learner(dls, AWD_LSTM, drop_mult=0.5, metrics=accuracy).load_encoder("finetuned")
    learn.fit_one_cycle(1, 2e-2); learn.freeze_to(-2); ...; learn.unfreeze(); learn.fit_one_cycle(2, ...)

and, side by side in the same run, the same classifier trained for as many epochs without the encoder.
As in ULMFiT, the language model reads the texts of every review, the validation reviews included (without
their labels). Without ``--pretrained`` nothing is downloaded and the language model starts from random
weights, so it learns English from these reviews alone, and at this scale that is not enough: one run with
``--reviews 250`` (500 training and 250 validation reviews, 2 LM epochs, 11 minutes on a shared 2-core CPU)
gave an LM perplexity of 218, 0.556 accuracy with the encoder and 0.820 without it. A logistic regression on
that frozen encoder's pooled features reaches 0.556 too: the features carry little sentiment yet, and the
gradual-unfreezing learning rates (made for a strong WT103 encoder) barely move it. ULMFiT's gain needs the
WT103 start (``--pretrained``) and far more text.
The model is a small AWD-LSTM (``--emb``, ``--hid``, ``--layers``) on a third of the reviews (``--reviews``),
and classifier reviews are cut to 256 words, so that a CPU run takes minutes.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from learnkit import set_seed
from learnkit.datasets import URLs, find_data
from learnkit.text import (AWD_LSTM, Perplexity, TextDataLoaders, accuracy, language_model_learner, read_text,
                           text_classifier_learner)


def find_imdb(data: str | None) -> Path:
    return find_data(URLs.IMDB, data, marker="train", download=False)


def reviews(path: Path, n: int | None) -> tuple[list[str], list[str], list[int], list[int]]:
    """Texts and labels of the train and valid folders (``n`` per class and split, all when ``None``)."""
    texts, labels, train_idx, valid_idx = [], [], [], []
    for split in ("train", "valid"):
        for label in ("neg", "pos"):
            files = sorted((path / split / label).glob("*.txt"))
            for f in files[: (n if split == "train" else n // 2) if n else None]:
                (valid_idx if split == "valid" else train_idx).append(len(texts))
                texts.append(read_text(f))
                labels.append(label)
    return texts, labels, train_idx, valid_idx


def classify(dls, config: dict, encoder: str | None, epochs: int, tmp: Path):
    """The ULMFiT classifier: with ``encoder``, gradual unfreezing (head, then 2, 3, all groups); without it,
    the same model and number of epochs, everything trained from the start."""
    learn = text_classifier_learner(dls, AWD_LSTM, config=config, drop_mult=0.5, pretrained=False,
                                    metrics=accuracy, path=tmp)
    if encoder is None:
        learn.fit_one_cycle(3 + epochs, 1e-2)
        return learn
    learn.load_encoder(encoder)  # and freeze all but the head
    learn.fit_one_cycle(1, 2e-2)
    learn.freeze_to(-2)
    learn.fit_one_cycle(1, slice(1e-2 / (2.6 ** 4), 1e-2))
    learn.freeze_to(-3)
    learn.fit_one_cycle(1, slice(5e-3 / (2.6 ** 4), 5e-3))
    learn.unfreeze()
    learn.fit_one_cycle(epochs, slice(1e-3 / (2.6 ** 4), 1e-3))
    return learn


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder holding imdb/ (default: $LEARNKIT_DATA)")
    ap.add_argument("--epochs", type=int, default=None, help="classifier epochs once unfrozen (default 2)")
    ap.add_argument("--lm-epochs", type=int, default=None, help="language-model epochs (default 2)")
    ap.add_argument("--reviews", type=int, default=500, help="training reviews per class, half as many validation "
                    "ones (default 500; 0: all 1,500)")
    ap.add_argument("--emb", type=int, default=100, help="AWD_LSTM emb_sz (fastai: 400)")
    ap.add_argument("--hid", type=int, default=200, help="AWD_LSTM n_hid (fastai: 1152)")
    ap.add_argument("--layers", type=int, default=2, help="AWD_LSTM n_layers (fastai: 3)")
    ap.add_argument("--pretrained", action="store_true", help="start from fastai's WT103 weights (downloads them; "
                    "needs fastai's config: --emb 400 --hid 1152 --layers 3)")
    ap.add_argument("--fast", action="store_true", help="a tiny subset and one epoch each (smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    set_seed(args.seed)
    path = find_imdb(args.data)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="imdb_lm_"))

    n = 24 if args.fast else (args.reviews or None)
    lm_epochs = 1 if args.fast else (2 if args.lm_epochs is None else args.lm_epochs)
    epochs = 1 if args.fast else (2 if args.epochs is None else args.epochs)
    config = dict(emb_sz=32, n_hid=64, n_layers=1) if args.fast else dict(emb_sz=args.emb, n_hid=args.hid,
                                                                             n_layers=args.layers)
    texts, labels, train_idx, valid_idx = reviews(path, n)
    # the language model: every review's text, 10 % of them held out to measure its perplexity
    order = list(range(len(texts)))
    lm_valid = order[::10]
    lm_train = [i for i in order if i % 10]
    dls_lm = TextDataLoaders.from_texts(texts, None, lm_train, lm_valid, tok="words", is_lm=True,
                                        min_freq=2 if args.fast else 3, max_vocab=8_000, bs=16 if args.fast else 32,
                                        seq_len=72)
    print(dls_lm)
    learn = language_model_learner(dls_lm, AWD_LSTM, config=config, drop_mult=0.3, pretrained=args.pretrained,
                                   metrics=[accuracy, Perplexity()], path=tmp)
    print("language model:", "fastai's WT103 weights" if args.pretrained else
          "random initial weights (no WT103 download): it learns from these reviews alone")
    learn.fit_one_cycle(lm_epochs, 2e-2 if not args.pretrained else 1e-2)
    _, lm_acc, ppl = learn.recorder.values[-1][1:4]
    print(f"language model: validation perplexity {ppl:.1f}, next-word accuracy {lm_acc:.4f}")
    for i in range(2):
        print(f"sample {i + 1}:", learn.predict("I liked this movie because", n_words=30, temperature=0.75, seed=i))
    learn.save_encoder("finetuned")

    dls = TextDataLoaders.from_texts(texts, labels, train_idx, valid_idx, tok="words", text_vocab=dls_lm.vocab,
                                     max_len=256, bs=16 if args.fast else 32)
    with_enc = classify(dls, config, "finetuned", epochs, tmp)
    acc = with_enc.recorder.values[-1][2]
    without = classify(dls, config, None, epochs, tmp)
    acc0 = without.recorder.values[-1][2]
    print(f"\nclassifier with the LM encoder: validation accuracy {acc:.4f} on {len(dls.valid.dataset)} reviews")
    print(f"the same classifier without the LM encoder: validation accuracy {acc0:.4f}")
    print(f"time: {time.perf_counter() - t0:.0f} s wall")
    shutil.rmtree(tmp, ignore_errors=True)  # the saved encoder
    return acc


if __name__ == "__main__":
    main()
