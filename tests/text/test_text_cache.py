"""Frozen-prefix caching: same training as without it, reused while valid, recomputed when stale."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from learnkit.text import ActivationCache, Callback, TextDataLoaders, accuracy, cache_start, text_classifier_learner


@pytest.fixture
def tiny_learners(tiny_bert, review_df):
    """Two identical learners (same data order, same initial weights) on the tiny BERT, without dropout."""
    def make(cache: bool):
        dls = TextDataLoaders.from_df(review_df, valid_col="is_valid", tok=str(tiny_bert), max_len=16, bs=8,
                                      device="cpu")
        return text_classifier_learner(dls, str(tiny_bert), config={"head_dropout": 0.0}, metrics=accuracy,
                                       cache_frozen=cache, progress=False)
    a, b = make(True), make(False)
    b.model.load_state_dict(a.model.state_dict())
    return a, b


def count_computes(monkeypatch) -> list:
    calls = []
    orig = ActivationCache.compute

    def spy(self, model, ds, stops, *args, **kwargs):
        calls.append((len(ds), tuple(stops), kwargs.get("origin", 0)))
        return orig(self, model, ds, stops, *args, **kwargs)
    monkeypatch.setattr(ActivationCache, "compute", spy)
    return calls


def test_cache_start_is_the_first_trainable_stage(tiny_learners):
    learn = tiny_learners[0]
    assert cache_start(learn.model) == 4  # embeddings, 2 layers and pooling frozen: the head's input
    learn.freeze_to(-2)
    assert cache_start(learn.model) == 2  # the last layer trains
    learn.unfreeze()
    assert cache_start(learn.model) == 0


def test_head_training_on_the_cache_matches_training_without_it(tiny_learners, monkeypatch):
    cached, plain = tiny_learners
    calls = count_computes(monkeypatch)
    cached.fit(2, lr=1e-2)
    assert len(calls) == 2  # train and valid states, computed once for both epochs
    plain.fit(2, lr=1e-2)
    assert len(calls) == 2  # the uncached learner never computes states
    for p, q in zip(cached.model.head.parameters(), plain.model.head.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    assert torch.allclose(torch.tensor(cached.recorder.values), torch.tensor(plain.recorder.values), atol=1e-4)
    frozen = [torch.equal(p, q) for p, q in zip(cached.model.encoder.parameters(), plain.model.encoder.parameters())]
    assert all(frozen)
    assert type(cached.dls).__name__ == "TextDataLoaders"  # the text loaders are back after the fit


def test_partial_unfreeze_on_cached_token_states_matches_closely(tiny_learners):
    cached, plain = tiny_learners
    start = [p.detach().clone() for p in plain.model.encoder.encoder.layer[1].parameters()]
    for learn in (cached, plain):
        learn.opt_func = torch.optim.SGD  # linear in the gradient: Adam would turn float16 rounding of a
        learn.freeze_to(-2)               # near-zero gradient into a full +-lr step of either sign
        learn.fit(1, lr=1e-1)
    top = list(zip(cached.model.encoder.encoder.layer[1].parameters(), plain.model.encoder.encoder.layer[1].parameters()))
    moved = max((q - s).abs().max().item() for (_, q), s in zip(top, start))
    worst = max((p - q).abs().max().item() for p, q in top)
    assert moved > 1e-3  # the layer really trained...
    assert worst < 0.01 * moved  # ...and the cached run (float16 states) agrees to 1 % of how far it moved


def test_cache_is_reused_then_recomputed_when_the_frozen_weights_change(tiny_learners, monkeypatch):
    learn = tiny_learners[0]
    calls = count_computes(monkeypatch)
    learn.fit(1, lr=1e-2)
    learn.fit(1, lr=1e-2)
    assert len(calls) == 2
    learn.unfreeze()
    learn.fit(1, lr=1e-3)  # trains the body: no cache
    assert len(calls) == 2
    learn.freeze()
    learn.fit(1, lr=1e-2)  # the body changed: recomputed
    assert len(calls) == 4


def test_fine_tune_fills_the_next_phase_states_in_the_same_pass(tiny_learners, monkeypatch):
    monkeypatch.setenv("LEARNKIT_SMALL_DATA_WARNINGS", "0")  # 36 items: a few steps per phase, on purpose
    learn = tiny_learners[0]
    calls = count_computes(monkeypatch)
    learn.fine_tune(1, base_lr=1e-3, freeze_epochs=1, unfreeze_to=-2, head_lr=1e-2)
    assert [c[1] for c in calls] == [(2, 4), (2, 4)]  # one pass per split fills both boundaries
    assert cache_start(learn.model) == 2  # the second phase trained the last layer and the head
    with pytest.raises(TypeError, match="unfreeze_to"):
        learn.fine_tune(1, unfreeze_to=1.5)


def test_a_later_boundary_is_computed_from_an_earlier_cached_one(tiny_learners, monkeypatch):
    learn = tiny_learners[0]
    calls = count_computes(monkeypatch)
    learn.freeze_to(-3)  # only the embeddings frozen: boundary 1
    learn.fit(1, lr=1e-3)
    learn.freeze()  # boundary 4; the embeddings did not change, so boundary 1 is still valid
    learn.fit(1, lr=1e-2)
    assert [(c[1], c[2]) for c in calls] == [((1,), 0), ((1,), 0), ((4,), 1), ((4,), 1)]
    cache = learn.frozen_feature_cache.source.cache
    assert list(cache.entries) == [4]  # only what the last fit needs is kept
    for name, dl in (("train", learn.dls.train), ("valid", learn.dls.valid)):
        direct = cache.compute(learn.model, dl.dataset, [4], torch.device("cpu"), learn.dls.tokenizer.pad_id)[4]
        assert all(torch.allclose(a, b, atol=1e-3) for a, b in zip(cache.entries[4][name], direct))


def test_too_big_a_cache_falls_back_to_the_whole_model(tiny_learners):
    learn = tiny_learners[0]
    learn.max_cache_mb = 1e-6
    learn.freeze_to(-2)
    with pytest.warns(UserWarning, match="not caching"):
        learn.fit(1, lr=1e-3)
    assert len(learn.recorder.values) == 1


def test_cache_frozen_false_never_caches(tiny_learners, monkeypatch):
    calls = count_computes(monkeypatch)
    learn = tiny_learners[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.fit(1, lr=1e-2)
    assert calls == []


def test_the_cache_is_the_core_callback_and_steps_aside_under_mixup(tiny_learners):
    from learnkit.core.feature_cache import FrozenFeatureCache
    from learnkit.core.learner import Learner
    from learnkit.text import TextLearner
    assert TextLearner.fit is Learner.fit  # no text-specific training loop: the callback does it
    learn = tiny_learners[0]
    assert isinstance(learn.frozen_feature_cache, FrozenFeatureCache)

    class Mixer(Callback):
        changes_inputs = True
    learn.fit(1, lr=1e-2, cbs=Mixer())
    assert not learn.frozen_feature_cache.active and "Mixer changes the training inputs" in learn.frozen_feature_cache.reason
    learn.fit(1, lr=1e-2)
    assert learn.frozen_feature_cache.active, learn.frozen_feature_cache.reason


def _ddp_worker(bert: Path, csv: Path, out: Path) -> None:
    """One rank: the same two-epoch head training with and without the cache, on this rank's shards."""
    import pandas as pd
    rank = int(os.environ["RANK"])
    res = {}
    for cache in (True, False):
        torch.manual_seed(0)
        dls = TextDataLoaders.from_df(pd.read_csv(csv), valid_col="is_valid", tok=str(bert), max_len=16, bs=4,
                                      device="cpu")
        learn = text_classifier_learner(dls, str(bert), config={"head_dropout": 0.0}, metrics=accuracy,
                                        cache_frozen=cache, progress=False)
        learn.fit(2, lr=1e-2)
        res[str(cache)] = {"head": [p.detach().flatten().tolist() for p in learn.model.head.parameters()],
                           "values": learn.recorder.values,
                           "reason": learn.frozen_feature_cache.reason if cache else None}
    (out / f"result{rank}.json").write_text(json.dumps(res))


def test_under_ddp_the_cached_training_matches_the_uncached_one(tiny_bert, review_df, tmp_path):
    review_df.to_csv(tmp_path / "reviews.csv", index=False)
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "LEARNKIT_DEVICE": "cpu",
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("LEARNKIT_DISTRIBUTED", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), "--ddp-worker", str(tiny_bert), str(tmp_path / "reviews.csv"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1  # every rank trained the same head and logged the same numbers
    assert r0["True"]["reason"] == "active"
    cached, plain = r0["True"], r0["False"]
    for p, q in zip(cached["head"], plain["head"]):
        assert torch.allclose(torch.tensor(p), torch.tensor(q), atol=1e-5)
    assert torch.allclose(torch.tensor(cached["values"]), torch.tensor(plain["values"]), atol=1e-4)


if __name__ == "__main__" and "--ddp-worker" in sys.argv:
    i = sys.argv.index("--ddp-worker")
    _ddp_worker(*(Path(a) for a in sys.argv[i + 1: i + 4]))
