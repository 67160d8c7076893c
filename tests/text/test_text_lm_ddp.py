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
