"""Language models: LMDataLoader, is_lm=True data, AWD_LSTM, ULMFiT encoder transfer, generation, export."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from learnkit.core import DataBlock, load_learner
from learnkit.text import (AWD_LSTM, LMDataLoader, ModelResetter, Perplexity, RNNRegularizer, TextBlock,
                           TextDataLoaders, TextLearner, accuracy, generate, get_language_model, language_model_learner,
                           sample_next, text_classifier_learner)
from learnkit.text.awdlstm import awd_lstm_lm_split
from learnkit.text.awdclas import awd_lstm_clas_split

TINY = dict(emb_sz=16, n_hid=24, n_layers=2)
CORPUS = ["the cat sat on the mat .", "the dog sat on the log .", "a cat and a dog met on the mat .",
          "the dog ate the cat's food .", "a bird sat on the dog ."]


def lm_df(n: int = 6) -> pd.DataFrame:
    texts = CORPUS * n
    return pd.DataFrame({"text": texts, "is_valid": [i % 5 == 0 for i in range(len(texts))]})


def lm_dls(bs: int = 4, seq_len: int = 6) -> TextDataLoaders:
    return TextDataLoaders.from_df(lm_df(), tok="words", is_lm=True, valid_col="is_valid", bs=bs, seq_len=seq_len,
                                   min_freq=1, device="cpu")


# --- LMDataLoader ----------------------------------------------------------------------------------------
def test_lm_loader_cuts_contiguous_rows_with_shifted_targets():
    docs = [list(range(10 * d, 10 * d + 7)) for d in range(5)]  # 35 tokens
    dl = LMDataLoader(docs, bs=3, seq_len=4, shuffle=False)
    xs, ys = zip(*dl)
    x, y = torch.cat(xs, 1), torch.cat(ys, 1)
    stream = torch.tensor([t for d in docs for t in d])
    row = 8  # (35 - 1) // 3 = 11 tokens a row, cut to a multiple of seq_len: every batch has one shape
    assert len(dl) == 2 and x.shape == (3, row) and [b.shape[1] for b in xs] == [4, 4]
    for r in range(3):  # each row is a contiguous piece of the stream, and the targets are one token later
        assert torch.equal(x[r], stream[r * row: (r + 1) * row])
        assert torch.equal(y[r], stream[r * row + 1: (r + 1) * row + 1])


def test_lm_loader_shuffles_documents_every_epoch_but_keeps_them_whole():
    docs = [[d] * 5 for d in range(1, 9)]
    dl = LMDataLoader(docs, bs=2, seq_len=50, shuffle=True, seed=0)
    firsts = []
    for _ in range(3):
        x, _ = next(iter(dl))
        stream = x.reshape(-1).tolist()
        assert all(len(set(stream[i: i + 5])) == 1 for i in range(0, 35, 5))  # whole documents, in some order
        firsts.append(stream[::5])
    assert len({tuple(f) for f in firsts}) > 1  # a new order each epoch
    assert [b[0].tolist() for b in LMDataLoader(docs, bs=2, seq_len=3)] == \
        [b[0].tolist() for b in LMDataLoader(docs, bs=2, seq_len=3)]  # validation: always the same


def test_lm_loader_errors():
    with pytest.raises(ValueError, match="needs more than 8 tokens"):
        LMDataLoader([[1, 2, 3]], bs=8)
    with pytest.raises(ValueError, match="seq_len"):
        LMDataLoader([[1, 2, 3]], bs=1, seq_len=0)


# --- is_lm data ------------------------------------------------------------------------------------------
def test_from_df_is_lm_builds_lm_batches_and_a_word_vocab():
    dls = lm_dls()
    assert dls.is_lm and isinstance(dls[0], LMDataLoader) and dls.vocab[:2] == ["xxpad", "xxunk"]
    assert "xxbos" in dls.vocab and dls.vocab == dls.tokenizer.vocab.itos
    x, y = dls.one_batch()
    assert x.shape == y.shape == (4, 6) and torch.equal(x[:, 1:], y[:, :-1])
    table = dls.batch_table(max_n=2)
    assert list(table.columns) == ["text", "text_"] and table["text_"][0].split()[:-1] == table["text"][0].split()[1:]
    assert "language model" in repr(dls)


def test_from_folder_and_datablock_is_lm(review_folder):
    dls = TextDataLoaders.from_folder(review_folder, tok="words", is_lm=True, bs=4, seq_len=8, min_freq=1)
    assert dls.train.n_docs == 24 and dls.valid.n_docs == 8  # train/ and valid/ folders, both labels
    unsup = review_folder / "train" / "unsup"
    unsup.mkdir()
    (unsup / "0.txt").write_text("an unlabelled review", encoding="utf-8")
    assert TextDataLoaders.from_folder(review_folder, tok="words", is_lm=True, bs=4, min_freq=1).train.n_docs == 25
    dblock = DataBlock(blocks=(TextBlock.from_df("text", tok="words", is_lm=True, seq_len=5, min_freq=1),),
                       splitter=lambda items: (list(range(20)), list(range(20, 30))))
    dls = dblock.dataloaders(lm_df(), bs=3)
    assert dls.is_lm and dls.one_batch()[0].shape == (3, 5)


def test_from_csv_is_lm(tmp_path):
    lm_df().to_csv(tmp_path / "texts.csv", index=False)
    dls = TextDataLoaders.from_csv(tmp_path, tok="words", is_lm=True, valid_col="is_valid", bs=2, min_freq=1)
    assert dls.is_lm and dls.valid.n_docs == 6


def test_is_lm_refuses_a_label_column_and_a_label_block():
    df = lm_df()
    df["label"] = ["x", "y"] * (len(df) // 2)
    with pytest.raises(ValueError, match="label_col='label2'.*drop label_col"):
        TextDataLoaders.from_df(df.rename(columns={"label": "label2"}), tok="words", is_lm=True, label_col="label2")
    from learnkit.core import CategoryBlock, ColReader
    dblock = DataBlock(blocks=(TextBlock.from_df("text", tok="words", is_lm=True), CategoryBlock),
                       get_y=ColReader("label"))
    with pytest.raises(Exception, match="only block"):
        dblock.dataloaders(df)


def test_lm_vocab_carries_over_to_the_classifier(review_df):
    dls_lm = lm_dls()
    dls = TextDataLoaders.from_df(review_df, valid_col="is_valid", tok="words", text_vocab=dls_lm.vocab, bs=4)
    assert dls.tokenizer.vocab.itos == dls_lm.vocab and dls.vocab == ["negative", "positive"]
    block = TextBlock.from_df("text", tok="words", vocab=dls_lm.vocab)
    from learnkit.core import CategoryBlock, ColReader, ColSplitter
    dls2 = DataBlock(blocks=(block, CategoryBlock), get_y=ColReader("label"),
                     splitter=ColSplitter("is_valid")).dataloaders(review_df, bs=4)
    assert dls2.tokenizer.vocab.itos == dls_lm.vocab


# --- AWD_LSTM --------------------------------------------------------------------------------------------
def test_awd_lstm_dropouts_scale_with_drop_mult_and_the_decoder_is_tied():
    m = get_language_model(AWD_LSTM, 30, config=TINY, drop_mult=0.5)
    assert m[1].decoder.weight is m[0].encoder.weight
    assert (m[0].input_dp.p, m[0].hidden_dps[0].p, m[0].encoder_dp.embed_p, m[0].rnns[0].weight_p, m[1].output_dp.p) \
        == pytest.approx((0.125, 0.075, 0.01, 0.1, 0.05))
    with pytest.raises(TypeError, match="unknown AWD_LSTM config key.*n_hidden"):
        get_language_model(AWD_LSTM, 30, config={"n_hidden": 3})
    names = {k for k in m.state_dict()}  # fastai's names, so WT103 weights load unchanged
    assert {"0.encoder.weight", "0.rnns.0.weight_hh_l0_raw", "0.rnns.0.module.weight_ih_l0", "1.decoder.bias"} <= names


def test_awd_lstm_weight_dropout_only_in_training_and_state_carries_over():
    m = get_language_model(AWD_LSTM, 30, config={**TINY, "weight_p": 0.9}).eval()
    x = torch.randint(2, 30, (2, 5))
    m.reset()
    a = m(x)[0]
    m.reset()
    assert torch.equal(a, m(x)[0])  # eval: deterministic after a reset
    assert not torch.equal(a, m(x)[0])  # without a reset the hidden state carries over
    m.train()
    w1 = (m[0].rnns[0](torch.randn(1, 2, 16))[0])
    assert m[0].rnns[0].module.weight_hh_l0.eq(0).float().mean() > 0.5  # 90 % of the weights dropped
    assert w1.shape == (1, 2, 24)


def test_model_resetter_and_rnn_regularizer():
    calls = []

    dls = lm_dls()
    n = len(dls.vocab)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lin = torch.nn.Embedding(n, 4), torch.nn.Linear(4, n)

        def reset(self):
            calls.append("reset")

        def forward(self, x):
            h = self.emb(x)
            return self.lin(h), h, h * 2

    learn = TextLearner(dls, Model(), alpha=0.0, beta=0.0, progress=False)
    assert any(isinstance(c, ModelResetter) for c in learn.cbs) and any(isinstance(c, RNNRegularizer) for c in learn.cbs)
    learn.fit(1)
    assert calls.count("reset") == 3  # before train, before validate, after fit
    reg = next(c for c in learn.cbs if isinstance(c, RNNRegularizer))
    learn.training = True
    learn.pred = learn.model(dls.one_batch()[0])
    reg.after_pred()
    assert learn.pred.shape == (4, 6, n) and reg.out.shape == (4, 6, 4)
    learn.loss_grad = torch.tensor(1.0)
    reg.alpha, reg.beta = 2.0, 1.0
    reg.after_loss()
    h = reg.raw_out
    expected = 1 + 2 * reg.out.pow(2).mean() + (h[:, 1:] - h[:, :-1]).pow(2).mean()
    assert float(learn.loss_grad.detach()) == pytest.approx(float(expected.detach()))
    assert len(learn.validate()) == 1 and learn.get_preds()[0].shape[-1] == n  # tuple outputs: validate/get_preds


# --- generation ------------------------------------------------------------------------------------------
def test_sample_next_known_logits():
    logits = torch.tensor([1.0, 4.0, 3.0, 2.0, 0.0])
    g = torch.Generator().manual_seed(0)
    assert int(sample_next(logits, temperature=0)) == 1
    assert {int(sample_next(logits, top_k=1, generator=g)) for _ in range(50)} == {1}
    assert {int(sample_next(logits, top_k=3, generator=g)) for _ in range(400)} == {1, 2, 3}
    probs = torch.tensor([0.6, 0.25, 0.1, 0.05])
    assert {int(sample_next(probs.log(), top_p=0.5, generator=g)) for _ in range(100)} == {0}
    assert {int(sample_next(probs.log(), top_p=0.8, generator=g)) for _ in range(400)} == {0, 1}
    assert {int(sample_next(probs.log(), top_p=0.9, generator=g)) for _ in range(600)} == {0, 1, 2}
    # temperature sharpens or flattens: a low one draws the arg-max far more often
    cold = sum(int(sample_next(logits, temperature=0.1, generator=g)) == 1 for _ in range(200))
    hot = sum(int(sample_next(logits, temperature=5.0, generator=g)) == 1 for _ in range(200))
    assert cold > 190 and hot < 120


def test_generate_bans_tokens_and_feeds_each_new_token():
    fed = []

    def step(ids):
        fed.append(ids.tolist())
        return torch.tensor([9.0, 5.0, 1.0])

    assert generate(step, [2, 2], 3, temperature=0, banned=[0]) == [1, 1, 1]
    assert fed == [[[2, 2]], [[1]], [[1]]]


@pytest.fixture(scope="module")
def trained_lm():
    torch.manual_seed(0)
    dls = lm_dls()
    learn = language_model_learner(dls, AWD_LSTM, config=TINY, pretrained=False, drop_mult=0.3,
                                   metrics=[accuracy, Perplexity()], progress=False)
    learn.fit_one_cycle(8, 3e-2)
    return learn


def test_language_model_learns_and_generates(trained_lm, tmp_path):
    learn = trained_lm
    loss, acc, ppl = learn.validate()
    assert acc > 0.2 and ppl < 10  # 20 words: a uniform guess has perplexity 20, a unigram model about 13
    assert learn.splitter is awd_lstm_lm_split and len(learn.param_groups()) == 3
    a = learn.predict("the cat", n_words=12, temperature=0.75, seed=1)
    b = learn.predict("the cat", n_words=12, temperature=0.75, seed=2)
    assert a != b and a.startswith("the cat") and len(a) > len("the cat") + 12
    g1, g2 = (learn.predict("the dog", n_words=10, temperature=0) for _ in range(2))
    assert g1 == g2 and len(g1) >= len("the dog") + 10
    assert "xxunk" not in learn.predict("the zebra", n_words=20, temperature=3.0, seed=0)[len("the zebra"):]
    with pytest.raises(ValueError, match="n_words must be at least 1"):
        learn.predict("the cat", n_words=0)
    with pytest.raises(ValueError, match="top_p"):
        learn.predict("the cat", n_words=2, top_p=1.5)


def test_ulmfit_encoder_transfer_and_gradual_unfreezing(trained_lm, review_df, tmp_path):
    trained_lm.path = tmp_path
    trained_lm.save_encoder("finetuned")
    vocab = trained_lm.dls.vocab
    df = pd.DataFrame({"text": ["the cat sat on the mat", "the dog ate the log", "a cat met a bird", "the dog sat"] * 4,
                       "label": ["cat", "dog", "cat", "dog"] * 4, "is_valid": [False] * 12 + [True] * 4})
    dls = TextDataLoaders.from_df(df, valid_col="is_valid", tok="words", text_vocab=vocab, bs=4)
    learn = text_classifier_learner(dls, AWD_LSTM, config=TINY, pretrained=False, drop_mult=0.5, metrics=accuracy,
                                    path=tmp_path, progress=False)
    assert learn.splitter is awd_lstm_clas_split and len(learn.param_groups()) == 4  # embedding, 2 LSTMs, head
    learn.load_encoder("finetuned")
    enc_lm, enc = trained_lm.model[0], learn.model[0].module
    assert torch.equal(enc.encoder.weight.cpu(), enc_lm.encoder.weight.cpu())
    assert learn.frozen_groups == 3  # load_encoder freezes all but the head
    learn.fit_one_cycle(1, 2e-2)
    learn.freeze_to(-2)
    assert [any(p.requires_grad for p in g) for g in learn.param_groups()] == [False, False, True, True]
    learn.fit_one_cycle(1, slice(1e-2 / (2.6 ** 4), 1e-2))
    learn.unfreeze()
    learn.fit_one_cycle(1, slice(1e-3 / (2.6 ** 4), 1e-3))
    assert learn.predict("the cat sat")[0] in ("cat", "dog")
    # another vocabulary, another shape: refused by name
    other = TextDataLoaders.from_df(df, valid_col="is_valid", tok="words", min_freq=1, bs=4)
    bad = text_classifier_learner(other, AWD_LSTM, config=TINY, pretrained=False, path=tmp_path, progress=False)
    with pytest.raises(ValueError, match="another vocabulary.*text_vocab=dls_lm.vocab"):
        bad.load_encoder("finetuned")
    bad = text_classifier_learner(dls, AWD_LSTM, config={**TINY, "n_hid": 8}, pretrained=False, path=tmp_path,
                                  progress=False)
    with pytest.raises(ValueError, match=r"'rnns.0.weight_hh_l0_raw' is \(96, 24\) there and \(32, 8\) here"):
        bad.load_encoder("finetuned")
    with pytest.raises(FileNotFoundError, match="save_encoder"):
        learn.load_encoder("missing")


def test_lm_export_generates_after_load_learner_in_a_fresh_process(trained_lm, tmp_path):
    fname = trained_lm.export(tmp_path / "lm.safetensors")
    here = trained_lm.predict("the cat", n_words=8, temperature=0)
    new = load_learner(fname, cpu=True)
    assert type(new).__name__ == "LMLearner" and new.predict("the cat", n_words=8, temperature=0) == here
    code = ("from learnkit import load_learner; import sys; "
            f"print(load_learner(sys.argv[1], cpu=True).predict('the cat', n_words=8, temperature=0))")
    out = subprocess.run([sys.executable, "-c", code, str(fname)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == here


def test_pretrained_fails_offline_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("LEARNKIT_HOME", str(tmp_path))
    monkeypatch.setattr("learnkit.text.wt103.WT103_FWD", (tmp_path / "missing" / "wt103-fwd.tgz").as_uri())
    import learnkit.text.wt103 as wt
    monkeypatch.setattr(wt.load_wt103, "__defaults__", (wt.WT103_FWD,))
    with pytest.raises(Exception, match="pass pretrained=False"):
        language_model_learner(lm_dls(), AWD_LSTM, config=TINY, progress=False)


def test_pretrained_weights_load_through_the_download_path(monkeypatch, tmp_path):
    """A WT103-shaped archive served from a file URL: downloaded, cached, matched to the new vocabulary."""
    import pickle
    import tarfile
    import learnkit.text.wt103 as wt
    src = get_language_model(AWD_LSTM, 5, config=TINY)
    itos = ["xxunk", "xxpad", "the", "cat", "zebra"]
    folder = tmp_path / "src" / "wt103-fwd"
    folder.mkdir(parents=True)
    torch.save(src.state_dict(), folder / "lstm_fwd.pth")
    (folder / "itos_wt103.pkl").write_bytes(pickle.dumps(itos))
    archive = tmp_path / "wt103-fwd.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="wt103-fwd")
    monkeypatch.setenv("LEARNKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(wt.load_wt103, "__defaults__", (archive.as_uri(),))
    learn = language_model_learner(lm_dls(), AWD_LSTM, config=TINY, progress=False)
    assert (tmp_path / "home" / "models" / "wt103-fwd" / ".learnkit-complete").exists()
    vocab = learn.dls.vocab
    emb = learn.model[0].encoder.weight.detach().cpu()
    assert torch.equal(emb[vocab.index("cat")], src[0].encoder.weight[3].detach())
    mean = src[0].encoder.weight.detach().mean(0)
    assert torch.allclose(emb[vocab.index("dog")], mean)  # a word WT103 does not know: the mean vector
    assert learn.frozen_groups == 2  # fastai: a pretrained LM trains its embedding and decoder first


def test_accuracy_and_cross_entropy_read_scores_last_for_token_targets():
    """fastbook ch. 12's ``CrossEntropyLossFlat()`` and ``accuracy`` on ``[B, L, V]`` scores (fastai's axis=-1)."""
    from learnkit.core import CrossEntropyLossFlat
    pred = torch.randn(2, 5, 30)
    targ = pred.argmax(-1)
    assert float(accuracy(pred, targ)) == 1.0
    ref = torch.nn.functional.cross_entropy(pred.reshape(-1, 30), targ.reshape(-1))
    assert float(CrossEntropyLossFlat()(pred, targ)) == pytest.approx(float(ref))
    seg = torch.randn(2, 3, 4, 4)  # segmentation scores stay on axis 1
    assert float(CrossEntropyLossFlat()(seg, seg.argmax(1))) < float(CrossEntropyLossFlat()(seg, seg.argmin(1)))
