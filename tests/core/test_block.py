"""DataBlock in core: blocks end to end on a data frame, summary(), clear errors, splitters, helpers."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from learnkit import (BlockDataLoaders, CategoryBlock, ColReader, ColSplitter, DataBlock, DataBlockError, EndSplitter,
                      IndexSplitter, Learner, MultiCategoryBlock, RandomSplitter, RegressionBlock, TrainTestSplitter,
                      TransformBlock, accuracy, accuracy_multi, using_attr)
from learnkit.core.blockdata import ItemSampler, SkipLog
from learnkit.core.blockloader import collate_skipping, default_num_workers


def _df(n: int = 40) -> pd.DataFrame:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return pd.DataFrame({"a": x[:, 0].tolist(), "b": x[:, 1].tolist(),
                         "cls": ["pos" if v > 0 else "neg" for v in x[:, 0].tolist()],
                         "tags": [" ".join(t for t, f in (("A", a > 0), ("B", b > 0)) if f) for a, b in x.tolist()],
                         "y": (2 * x[:, 0] - x[:, 1]).tolist(), "is_valid": [i % 5 == 0 for i in range(n)]})


def _x(row) -> torch.Tensor:
    return torch.tensor([row["a"], row["b"]], dtype=torch.float32)


@pytest.mark.parametrize("target, metric", [(CategoryBlock, accuracy), (MultiCategoryBlock, accuracy_multi),
                                            (RegressionBlock, None)])
def test_every_target_block_trains_end_to_end(target, metric):
    get_y = {CategoryBlock: ColReader("cls"), MultiCategoryBlock: ColReader("tags", label_delim=" "),
             RegressionBlock: ColReader("y")}[target]
    dblock = DataBlock(blocks=(TransformBlock(encode=_x), target), get_y=get_y, splitter=ColSplitter("is_valid"))
    dls = dblock.dataloaders(_df(), bs=8, num_workers=0, device="cpu")
    assert isinstance(dls, BlockDataLoaders) and len(dls.valid.dataset) == 8 and len(dls.train.dataset) == 32
    expected_c = {CategoryBlock: 2, MultiCategoryBlock: 2, RegressionBlock: 1}[target]
    assert dls.c == expected_c
    x, y = dls.one_batch()
    assert x.shape == (8, 2)
    learn = Learner(dls, torch.nn.Linear(2, dls.c), lr=0.1, metrics=metric, progress=False)
    learn.fit(8)
    assert type(learn.loss_func).__name__ == {CategoryBlock: "CrossEntropyLossFlat",
                                              MultiCategoryBlock: "BCEWithLogitsLossFlat",
                                              RegressionBlock: "MSELossFlat"}[target]
    if metric is None:
        assert learn.validate()[0] < 0.5  # a linear target: learnt
    else:
        assert learn.validate()[1] > 0.8
    decoded = dls.decode_target(y[0])
    if target is CategoryBlock:
        assert decoded in {"pos", "neg"}
    elif target is MultiCategoryBlock:
        assert set(decoded) <= {"A", "B"} and len(decoded) == int(y[0].sum())
    else:
        assert decoded == pytest.approx(float(y[0]))


def test_summary_names_the_failing_step_and_item():
    def get_y(row):
        if row.name == 7:
            raise KeyError("no label here")
        return row["cls"]
    dblock = DataBlock(blocks=(TransformBlock(encode=_x), CategoryBlock), get_y=get_y, splitter=ColSplitter())
    lines: list[str] = []
    with pytest.raises(DataBlockError, match=r"get_y failed on item row 7 .*KeyError.*no label here"):
        dblock.summary(_df(), show=lines.append)
    assert lines[0].startswith("get_items: 40 items") and "8 validation" in lines[1]
    assert lines[-1].startswith("FAILED: get_y failed on item row 7")
    ok = DataBlock(blocks=(TransformBlock(encode=_x), CategoryBlock), get_y=ColReader("cls"), splitter=ColSplitter())
    lines = []
    ok.summary(_df(), show=lines.append)
    assert any(line.strip().startswith("get_y: ") for line in lines)
    assert any("CategoryBlock.encode: Tensor torch.int64 []" in line for line in lines)
    assert lines[-1].startswith("after batch_tfms")


def test_a_failing_step_in_a_batch_names_step_and_item():
    def enc(row):
        if row.name == 3:
            raise ValueError("bad row")
        return _x(row)
    dblock = DataBlock(blocks=(TransformBlock(encode=enc), CategoryBlock), get_y=ColReader("cls"),
                       splitter=EndSplitter(0.2))
    dls = dblock.dataloaders(_df(), bs=4, shuffle=False, num_workers=0, device="cpu")
    with pytest.raises(DataBlockError, match=r"TransformBlock.encode failed on item row 3 .*bad row"):
        list(dls.train)
    dls = dblock.dataloaders(_df(), bs=4, shuffle=False, num_workers=0, device="cpu", on_error="skip")
    with pytest.warns(UserWarning, match="skipped row 3"):
        sizes = [len(x) for x, _ in dls.train]
    assert sizes == [3] + [4] * 7 and [n for n, _ in dls.skipped] == [dls.train.dataset.item_name(3)]


def test_clear_errors_for_mismatches():
    with pytest.raises(ValueError, match="2 get_y functions for 1 target blocks"):
        DataBlock(blocks=(TransformBlock, CategoryBlock), get_y=[ColReader("cls"), ColReader("y")])
    with pytest.raises(ValueError, match="get_y is given but there is no target block"):
        DataBlock(blocks=(TransformBlock,), get_y=ColReader("cls"))
    with pytest.raises(TypeError, match="blocks must be blocks"):
        DataBlock(blocks=(TransformBlock, "category"))
    lists = DataBlock(blocks=(TransformBlock(encode=_x), CategoryBlock), get_y=ColReader("tags", label_delim=" "))
    with pytest.raises(DataBlockError, match="use MultiCategoryBlock"):
        lists.datasets(_df())
    with pytest.raises(DataBlockError, match=r"get_y failed on item row \d+ .*column 'nope' not found"):
        DataBlock(blocks=(TransformBlock, CategoryBlock), get_y=ColReader("nope")).datasets(_df())
    only_valid = _df()
    only_valid.loc[0, "cls"] = "rare"  # row 0 is in the validation set
    with pytest.raises(DataBlockError, match=r"\['rare'\] appear only in the validation set"):
        DataBlock(blocks=(TransformBlock, CategoryBlock), get_y=ColReader("cls"),
                  splitter=ColSplitter()).datasets(only_valid)
    with pytest.raises(DataBlockError, match="no items"):
        DataBlock(blocks=(TransformBlock, CategoryBlock)).datasets([])


def test_default_split_new_and_column_splitter_by_index():
    dblock = DataBlock(blocks=(TransformBlock(encode=_x), RegressionBlock), get_y=ColReader("y"))
    d = dblock.datasets(_df(50))
    assert (len(d.train), len(d.valid)) == (40, 10)  # the seeded 20 % default
    assert d.valid.idxs == RandomSplitter(0.2, seed=42)(range(50))[1]
    new = dblock.new(item_tfms=[lambda v: v * 2])
    assert len(new.item_tfms) == 1 and dblock.item_tfms == []
    by_index = ColSplitter(5)(_df(10))
    assert by_index == ColSplitter("is_valid")(_df(10)) == ([1, 2, 3, 4, 6, 7, 8, 9], [0, 5])
    with pytest.raises(IndexError, match="out of range"):
        ColSplitter(9)(_df(10))
    tr, va = TrainTestSplitter(0.25, random_state=0, stratify=_df(40)["cls"].tolist())(range(40))
    assert len(va) == 10 and not set(tr) & set(va)
    assert EndSplitter(0.2, valid_last=False)(range(10)) == (list(range(2, 10)), [0, 1])
    assert IndexSplitter([1])(range(3)) == ([0, 2], [1])


def test_helpers():
    row = _df(3).iloc[1]
    assert ColReader("cls", pref="x/", suff=".png")(row) == f"x/{row['cls']}.png"
    assert ColReader(["a", "b"])(row) == [row["a"], row["b"]]
    assert using_attr(str.upper, "cls")(row) == row["cls"].upper()
    with pytest.raises(AttributeError, match="has no attribute 'stem'"):
        using_attr(str.upper, "stem")("a string")


def test_sampler_seeds_are_independent_of_epoch_iteration_style():
    a, b = ItemSampler(10, seed=3, with_seeds=True), ItemSampler(10, seed=3, with_seeds=True)
    assert list(a) == list(b) and list(a) != list(ItemSampler(10, seed=4, with_seeds=True))
    first, second = list(ItemSampler(10, seed=3)), None
    s = ItemSampler(10, seed=3)
    list(s)
    second = list(s)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second  # a new order each epoch


def test_collate_skipping_and_workers_default(monkeypatch, tmp_path):
    assert [t.tolist() for t in collate_skipping([(torch.tensor(1),), None, (torch.tensor(2),)])] == [[1, 2]]
    with pytest.raises(DataBlockError, match="all 2 items"):
        collate_skipping([None, None])
    with pytest.raises(RuntimeError, match="Resize"):
        collate_skipping([(torch.zeros(2),), (torch.zeros(3),)])
    log = SkipLog(str(tmp_path / "log"))
    with pytest.warns(UserWarning, match="skipped f1"):
        log.add("f1", "broken")
        log.add("f1", "broken")
    assert log.read() == [("f1", "broken")]
    monkeypatch.delenv("LEARNKIT_NUM_WORKERS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(32)))
    assert default_num_workers() == 8 and default_num_workers(3) == 3
    monkeypatch.setattr("multiprocessing.get_start_method", lambda allow_none=False: "spawn")
    with pytest.warns(UserWarning, match="does not pickle"):
        assert default_num_workers(None, dataset=lambda: 0) == 0
    with pytest.raises(ValueError, match="num_workers"):
        default_num_workers(-1)


def test_from_dsets_takes_the_vocab_from_classes():
    from torch.utils.data import TensorDataset

    from learnkit import DataLoaders

    class WithClasses(TensorDataset):  # like torchvision's CIFAR10 / FashionMNIST
        classes = ["zero", "one"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    ds = WithClasses(x, (x[:, 0] > 0).long())
    dls = DataLoaders.from_dsets(ds, ds, bs=16, device="cpu")
    assert dls.vocab == ["zero", "one"] and dls.c == 2 and dls.decode(1) == "one"
    learn = Learner(dls, torch.nn.Linear(2, 2), lr=0.1, metrics=accuracy, progress=False)  # loss from the vocab
    learn.fit(5)
    assert type(learn.loss_func).__name__ == "CrossEntropyLossFlat" and learn.validate()[1] > 0.9
    assert DataLoaders.from_dsets(TensorDataset(x, x), device="cpu").vocab is None
