"""`LMDataLoader` under DDP without processes: rank 0 and rank 1 of 2 read disjoint contiguous rows of the same
stream, together all of its rows, with as many batches each."""
import pytest
import torch

from learnkit.text import LMDataLoader

BS, SEQ_LEN = 3, 4


def _docs() -> list[list[int]]:
    """Documents of distinct token ids (a token tells where it came from), of uneven lengths."""
    lengths, start, docs = [7, 13, 5, 21, 9, 11, 17, 6], 0, []
    for n in lengths:
        docs.append(list(range(start, start + n)))
        start += n
    return docs


def _rows(dl: LMDataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows a loader read over one epoch (its batches side by side): ``(x [bs, row_len], y [bs, row_len])``."""
    batches = list(dl)
    return torch.cat([x for x, _ in batches], 1), torch.cat([y for _, y in batches], 1)


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_read_disjoint_rows_that_cover_the_stream(shuffle):
    base = LMDataLoader(_docs(), bs=BS, seq_len=SEQ_LEN, shuffle=shuffle, seed=3)
    ranks = [base.for_rank(r, 2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) > 0
    (x0, y0), (x1, y1) = (_rows(dl) for dl in ranks)
    assert x0.shape == x1.shape == (BS, ranks[0].row_len)
    assert not set(x0.flatten().tolist()) & set(x1.flatten().tolist())  # disjoint
    # the stream both ranks cut (the same document order: the shared seed), in 2 * bs rows
    stream = LMDataLoader(_docs(), bs=BS, seq_len=SEQ_LEN, shuffle=shuffle, seed=3).stream()
    n, row_len = 2 * BS * ranks[0].row_len, ranks[0].row_len
    assert torch.equal(torch.cat([x0, x1]), stream[:n].view(2 * BS, row_len))       # rank 0 first, then rank 1
    assert torch.equal(torch.cat([y0, y1]), stream[1: n + 1].view(2 * BS, row_len))  # targets shifted by one
    for x, y in ((x0, y0), (x1, y1)):
        assert torch.equal(y[:, :-1], x[:, 1:])
    # one rank reads what a single process with 2 * bs rows reads, split in two halves
    whole_x, _ = _rows(LMDataLoader(_docs(), bs=2 * BS, seq_len=SEQ_LEN, shuffle=shuffle, seed=3))
    assert torch.equal(whole_x, torch.cat([x0, x1]))


def test_every_rank_draws_the_same_order_each_epoch_and_a_new_one_per_epoch():
    base = LMDataLoader(_docs(), bs=BS, seq_len=SEQ_LEN, shuffle=True, seed=5)
    ranks = [base.for_rank(r, 2, seed=11) for r in (0, 1)]
    firsts = []
    for epoch in range(3):
        for dl in ranks:
            dl.set_epoch(epoch)
        (x0, _), (x1, _) = (_rows(dl) for dl in ranks)
        assert not set(x0.flatten().tolist()) & set(x1.flatten().tolist())
        firsts.append(x0[0].tolist())
    assert len({tuple(f) for f in firsts}) > 1  # the order changes with the epoch


def test_uneven_corpus_and_bad_rank_are_clear():
    base = LMDataLoader(_docs(), bs=BS, seq_len=SEQ_LEN)
    with pytest.raises(ValueError, match="rank=2 is not one of the 2 ranks"):
        base.for_rank(2, 2)
    with pytest.raises(ValueError, match=r"200 rows \(4 ranks of 50\) needs more than 200 tokens"):
        LMDataLoader(_docs(), bs=50, seq_len=SEQ_LEN).for_rank(0, 4)
    assert "rank 1/2" in repr(base.for_rank(1, 2))


# --- two real processes (torchrun, gloo on CPU), like tests/core/test_distributed.py --------------------------
CORPUS = ["the cat sat on the mat .", "the dog sat on the log .", "a cat and a dog met on the mat .",
          "the dog ate the cat's food .", "a bird sat on the dog ."]


def _lm_dls(seed):
    import pandas as pd
    from learnkit.text import TextDataLoaders
    texts = [f"{t} {i}" for i, t in enumerate(CORPUS * 8)]
    df = pd.DataFrame({"text": texts, "is_valid": [i % 5 == 0 for i in range(len(texts))]})
    return TextDataLoaders.from_df(df, tok="words", is_lm=True, valid_col="is_valid", bs=2, seq_len=5, min_freq=1,
                                   seed=seed, device="cpu")


def _worker(out) -> None:
    """One rank: fit a tiny AWD_LSTM language model for one epoch, recording the training rows it read."""
    import json
    import os

    from learnkit import Callback
    from learnkit.text import AWD_LSTM, language_model_learner

    class Rows(Callback):
        def before_train(self):
            self.kind, self.n_iter, self.xs = type(self.learn.dl).__name__, self.learn.n_iter, []

        def before_batch(self):
            if self.learn.training:
                self.xs.append(self.learn.xb[0].cpu())

    rank = int(os.environ["RANK"])
    torch.manual_seed(rank)  # each rank its own initial weights: DDP must make them agree
    dls = _lm_dls(seed=None)  # each rank its own random seed: DDP must use rank 0's
    learn = language_model_learner(dls, AWD_LSTM, config=dict(emb_sz=8, n_hid=12, n_layers=1), pretrained=False,
                                   progress=False, cbs=[rows := Rows()])
    learn.fit(1, 1e-2)
    digest = float(sum(p.detach().double().sum() * (i + 1) for i, p in enumerate(learn.model.parameters())))
    res = {"kind": rows.kind, "n_iter": rows.n_iter, "n_batches": len(rows.xs), "seed": dls.train.seed,
           "rows": torch.cat(rows.xs, 1).tolist(), "values": learn.recorder.values, "digest": digest}
    (out / f"lm{rank}.json").write_text(json.dumps(res))


def test_language_model_under_torchrun_reads_each_ranks_rows(tmp_path):
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path
    here = Path(__file__).resolve()
    spec = importlib.util.spec_from_file_location("_lk_test_distributed",
                                                  here.parents[1] / "core" / "test_distributed.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(here),
           "--lm-worker", str(tmp_path)]
    proc = subprocess.run(cmd, env=helpers._torchrun_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"lm{r}.json").read_text()) for r in (0, 1))
    assert r0["kind"] == r1["kind"] == "LMDataLoader"  # its own rows, not the per-item DistributedDL
    assert r0["n_iter"] == r1["n_iter"] == r0["n_batches"] == r1["n_batches"] > 0
    assert r0["digest"] == r1["digest"] and r0["values"] == r1["values"]  # one model, the same numbers
    # the rows of both ranks are the stream of rank 0's seed cut into 2 * bs rows, rank 0's first
    whole = LMDataLoader(_lm_dls(seed=r0["seed"]).train.docs, bs=4, seq_len=5, shuffle=True, seed=r0["seed"])
    whole.set_epoch(0)
    assert torch.equal(torch.tensor(r0["rows"] + r1["rows"]), _rows(whole)[0])
    assert r0["rows"] != r1["rows"]


if __name__ == "__main__" and "--lm-worker" in __import__("sys").argv:
    import sys
    from pathlib import Path
    _worker(Path(sys.argv[sys.argv.index("--lm-worker") + 1]))
