"""Tokenization time of the IMDB sample (4,000 review files + texts.csv = 5,000 texts), both tokenizers.

Run with the learnkit to measure first on the path (``root``: a checkout; default this one), e.g. before/after::

    git archive <old-commit> learnkit | tar -x -C /tmp/lk_before
    python benchmarks/text_tokenize.py /tmp/lk_before
    python benchmarks/text_tokenize.py .

Words: build the vocabulary on 4,000 texts and encode all 5,000 (what `TextDataLoaders.from_texts` does).
MiniLM: `PretrainedTokenizer.encode_batch` of all texts, and the same one text at a time. Best of 3.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)

import pandas as pd  # noqa: E402

from learnkit.text import PretrainedTokenizer, WordTokenizer, clean_text, truncate  # noqa: E402

DATA = Path(os.environ.get("LEARNKIT_DATA", "/work/shared/data")) / "imdb"


def best(f, n: int = 3):
    out, secs = None, []
    for _ in range(n):
        s = time.perf_counter()
        out = f()
        secs.append(time.perf_counter() - s)
    return min(secs), out


def main() -> None:
    texts = [clean_text(f.read_text(encoding="utf-8")) for f in sorted(DATA.glob("*/*/*.txt"))]
    texts += [clean_text(t) for t in pd.read_csv(DATA / "texts.csv")["text"].astype(str)]
    train = texts[:4000]
    if hasattr(WordTokenizer, "split_batch"):  # tokenise once, vocabulary from the training token lists
        def words():
            toks = WordTokenizer.split_batch(texts)
            return WordTokenizer.from_tokens(toks[:4000]).encode_tokens(toks)
    else:
        def words():
            return WordTokenizer.train(train).encode_batch(texts)
    sec, ids_w = best(words)
    print(f"{ROOT}: words, vocab + encode of {len(texts)} texts: {sec:.3f} s")
    bert = PretrainedTokenizer("minilm", max_len=256)
    sec, ids_b = best(lambda: bert.encode_batch(texts))
    print(f"{ROOT}: minilm encode_batch: {sec:.3f} s")
    sec, one = best(lambda: [[bert.cls_id, *truncate(bert.hf(t, add_special_tokens=False)["input_ids"], 254),
                              bert.sep_id] for t in texts], n=1)
    print(f"{ROOT}: minilm one text at a time: {sec:.3f} s (same ids as the batch: {one == ids_b})")
    for name, ids in (("words", ids_w), ("minilm", ids_b)):
        print(f"ids md5 {name}: {hashlib.md5(json.dumps(ids).encode()).hexdigest()}")


if __name__ == "__main__":
    main()
