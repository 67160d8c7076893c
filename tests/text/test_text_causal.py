"""A local Hugging Face causal LM folder (a tiny random GPT-2 and a tokenizer built here; nothing downloaded):
fine-tuning, generation, export and generation after load_learner."""
from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from learnkit.core import load_learner
from learnkit.text import (CausalTokenizer, Perplexity, TextDataLoaders, accuracy, language_model_learner,
                           text_classifier_learner)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

ANIMALS = ["cat", "dog", "bird", "fish", "horse", "cow"]
PLACES = ["mat", "log", "tree", "pond", "field", "barn"]


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"the {rng.choice(ANIMALS)} sat on the {rng.choice(PLACES)} and the {rng.choice(ANIMALS)} slept ."
            for _ in range(n)]


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_gpt2")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus(200, seed=1), trainer)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                              eos_token="<|endoftext|>", model_max_length=128)
    hf.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(hf), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=hf.bos_token_id, eos_token_id=hf.eos_token_id)
    transformers.GPT2LMHeadModel(config).save_pretrained(str(folder))
    return folder


def test_tiny_gpt2_fine_tunes_generates_and_exports(gpt2_folder, tmp_path):
    df = pd.DataFrame({"text": corpus(120), "is_valid": [i % 6 == 0 for i in range(120)]})
    dls = TextDataLoaders.from_df(df, tok=gpt2_folder, is_lm=True, valid_col="is_valid", bs=4, seq_len=32)
    assert isinstance(dls.tokenizer, CausalTokenizer) and dls.train.docs[0][0] == dls.tokenizer.hf.bos_token_id
    torch.manual_seed(0)
    learn = language_model_learner(dls, gpt2_folder, metrics=[accuracy, Perplexity()], path=tmp_path, progress=False)
    before = learn.validate()[2]
    learn.fit_one_cycle(1, 1e-2)
    after = learn.validate()[2]
    print(f"tiny GPT-2 validation perplexity {before:.1f} -> {after:.1f} in one epoch")
    assert after < before / 2
    a = learn.predict("the cat", n_words=12, temperature=0.75, seed=1)
    b = learn.predict("the cat", n_words=12, temperature=0.75, seed=2)
    assert a.startswith("the cat") and a != b and len(a) > len("the cat") + 5
    greedy = learn.predict("the cat", n_words=12, temperature=0)
    assert greedy == learn.predict("the cat", n_words=12, temperature=0)
    fname = learn.export("gpt2.safetensors")
    moved = tmp_path / "elsewhere"
    shutil.move(str(gpt2_folder), moved)  # the export needs neither the folder nor a download
    try:
        new = load_learner(fname, cpu=True)
        assert type(new).__name__ == "CausalLMLearner" and new.predict("the cat", n_words=12, temperature=0) == greedy
        code = ("from learnkit import load_learner; import sys; "
                "print(load_learner(sys.argv[1], cpu=True).predict('the cat', n_words=12, temperature=0))")
        out = subprocess.run([sys.executable, "-c", code, str(fname)], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[2])
        assert out.stdout.strip() == greedy  # in a fresh process too
    finally:
        shutil.move(str(moved), gpt2_folder)


def test_causal_lm_bad_inputs(gpt2_folder, tmp_path):
    no_tok = tmp_path / "no_tokenizer"
    no_tok.mkdir()
    shutil.copy(gpt2_folder / "config.json", no_tok / "config.json")
    df = pd.DataFrame({"text": corpus(20)})
    with pytest.raises(FileNotFoundError, match="has no tokenizer.*save_pretrained"):
        TextDataLoaders.from_df(df, tok=no_tok, is_lm=True, bs=2)
    words = TextDataLoaders.from_df(df, tok="words", is_lm=True, bs=2, min_freq=1)
    with pytest.raises(ValueError, match="build them with tok="):
        language_model_learner(words, gpt2_folder)
    dls = TextDataLoaders.from_df(df, tok=gpt2_folder, is_lm=True, bs=2)
    with pytest.raises(TypeError, match="language model's TextDataLoaders"):
        language_model_learner(pd.DataFrame(), gpt2_folder)
    learn = language_model_learner(dls, gpt2_folder, progress=False)
    with pytest.raises(ValueError, match="exceed the model's 128 positions"):
        learn.predict("the cat", n_words=200)
    with pytest.raises(ValueError, match="language model's TextDataLoaders"):
        text_classifier_learner(dls, "lstm")
