"""DataBlock with ImageBlock: every target end to end (train, predict, export), workers, bad files, DDP shards."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from learnkit.vision import (CategoryBlock, DataBlock, ImageBlock, ImageDataLoaders, MultiCategoryBlock,
                             RandomResizedCrop, RandomSplitter, RegressionBlock, Resize, accuracy_multi, error_rate,
                             F1ScoreMulti, get_image_files, load_learner, parent_label, verify_images, vision_learner)

HERE = Path(__file__).resolve()


def _folder(root: Path, img_tools, n: int = 8) -> list[Path]:
    """``root/{red,blue}/i.png``: red and blue images with brightness growing with ``i``."""
    files = []
    for i in range(n):
        for label, color in (("red", (120 + 15 * i, 20, 20)), ("blue", (20, 20, 120 + 15 * i))):
            files.append(img_tools.write_image(root / label / f"{i}.png", color, size=(20, 16), seed=i))
    return sorted(files)


def _brightness(p: Path) -> float:
    return float(p.stem) / 7.0


def _labels(p: Path) -> list[str]:
    return [parent_label(p)] + (["bright"] if int(p.stem) >= 4 else [])


@pytest.mark.parametrize("target", ["category", "multi", "regression"])
def test_every_target_trains_predicts_and_exports(tmp_path, img_tools, target):
    root = tmp_path / "imgs"
    files = _folder(root, img_tools)
    block, get_y, kw, metrics = {
        "category": (CategoryBlock, parent_label, {}, error_rate),
        "multi": (MultiCategoryBlock, _labels, {}, [accuracy_multi, F1ScoreMulti()]),
        "regression": (RegressionBlock, _brightness, {"y_range": (0.0, 1.0)}, None),
    }[target]
    dblock = DataBlock(blocks=(ImageBlock, block), get_items=get_image_files, get_y=get_y,
                       splitter=RandomSplitter(0.25, seed=0), item_tfms=Resize(12))
    dls = dblock.dataloaders(root, bs=4, num_workers=0, device="cpu")
    assert isinstance(dls, ImageDataLoaders)
    assert dls.c == {"category": 2, "multi": 3, "regression": 1}[target]
    learn = vision_learner(dls, "resnet18", pretrained=False, metrics=metrics, progress=False, **kw)
    assert type(learn.loss_func).__name__ == {"category": "CrossEntropyLossFlat", "multi": "BCEWithLogitsLossFlat",
                                              "regression": "MSELossFlat"}[target]
    learn.fit(1, 1e-3)
    probs, targs = learn.get_preds()
    assert probs.shape[0] == 4 and targs.shape[0] == 4
    if target == "regression":
        assert probs.min() >= 0 and probs.max() <= 1  # y_range
    pred = learn.predict(files[0])
    fname = learn.export(tmp_path / "export.safetensors")
    again = load_learner(fname, device="cpu")
    pred2 = again.predict(files[0])
    assert torch.allclose(torch.as_tensor(pred[2]), torch.as_tensor(pred2[2]), atol=1e-5)
    if target == "category":
        assert pred[0] in ("red", "blue") and pred2[0] == pred[0]
    elif target == "multi":
        assert set(pred2[0]) <= {"red", "blue", "bright"} and pred2[0] == pred[0]
    else:
        assert 0 <= pred2[0] <= 1
    fig = dls.show_batch(max_n=4)
    assert len([ax for ax in fig.axes if ax.images]) == 4


def test_workers_and_main_process_give_the_same_batches(tmp_path, img_tools):
    """Random item transforms draw from per-item seeds of the loader's own sampler: same batches with 0 or 2
    workers, and a new draw each epoch."""
    root = tmp_path / "imgs"
    _folder(root, img_tools)
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                       item_tfms=RandomResizedCrop(10, min_scale=0.3))

    def two_epochs(nw: int) -> list[list[torch.Tensor]]:
        dls = dblock.dataloaders(root, bs=4, num_workers=nw, seed=7, device="cpu")
        assert dls.train.num_workers == nw
        return [[x for x, _ in dls.train] for _ in range(2)]
    a, b = two_epochs(0), two_epochs(2)
    assert len(a[0]) == 3
    for ea, eb in zip(a, b):
        for xa, xb in zip(ea, eb):
            assert torch.equal(xa, xb)
    assert not all(torch.equal(x, y) for x, y in zip(a[0], a[1]))  # epochs differ


def test_presized_cache_is_shared_by_the_workers(tmp_path, img_tools):
    root = tmp_path / "imgs"
    _folder(root, img_tools)
    plain = ImageDataLoaders.from_folder(root, item_tfms=Resize(12), bs=4, shuffle=False, num_workers=0,
                                         valid_pct=0.25, device="cpu")
    cached = ImageDataLoaders.from_folder(root, item_tfms=Resize(12), bs=4, shuffle=False, num_workers=2,
                                          valid_pct=0.25, cache=True, device="cpu")
    cache = cached.train.dataset.cache
    assert cache.n_filled == 0 and "memory-mapped" in cached.summary()["cache"]
    expected = [x for x, _ in plain.train]
    for _ in range(2):  # filled by the workers in the first epoch, read back in the second
        got = [x for x, _ in cached.train]
        assert all(torch.equal(a, b) for a, b in zip(expected, got)) and len(got) == len(expected)
        assert cache.n_filled == len(cached.train.dataset)


def test_corrupt_file_trains_with_skip_and_is_reported(tmp_path, img_tools):
    root = tmp_path / "imgs"
    _folder(root, img_tools)
    bad = root / "red" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but not really a picture")
    assert verify_images(get_image_files(root)) == [bad]
    dls = ImageDataLoaders.from_folder(root, item_tfms=Resize(12), bs=4, on_error="skip", num_workers=2,
                                       valid_pct=0.25, device="cpu")
    assert dls.skipped == []  # nothing read up front
    learn = vision_learner(dls, "resnet18", pretrained=False, metrics=error_rate, progress=False)
    learn.fit(1)
    learn.validate()
    assert [p for p, _ in dls.skipped] == [str(bad)]  # met in a worker, reported in the main process
    assert "broken.png" in dls.skipped[0][1] and dls.summary()["skipped files"] == 1
    raising = ImageDataLoaders.from_folder(root, item_tfms=Resize(12), bs=4, num_workers=0, valid_pct=0.25,
                                           shuffle=False, device="cpu")
    with pytest.raises(OSError, match=r"ImageBlock.encode failed on item .*broken\.png"):
        for dl in raising.loaders:
            list(dl)


class _TorchvisionLike(torch.utils.data.Dataset):
    """Like torchvision's CIFAR10: ``classes``, ``targets`` and ``(PIL image, index)`` items."""

    classes = ["dark", "light"]

    def __init__(self, n: int):
        self.targets = [i % 2 for i in range(n)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image
        return Image.new("RGB", (10, 8), (40 + 170 * self.targets[i],) * 3), self.targets[i]


def test_from_dsets_with_classes_trains_predicts_and_exports(tmp_path):
    dls = ImageDataLoaders.from_dsets(_TorchvisionLike(16), _TorchvisionLike(6), bs=4, num_workers=0, device="cpu")
    assert dls.vocab == ["dark", "light"] and len(dls.valid.dataset) == 6
    x, y = dls.one_batch()
    assert x.shape == (4, 3, 8, 10)
    learn = vision_learner(dls, "resnet18", pretrained=False, metrics=error_rate, progress=False)
    learn.fit(2, 1e-2)
    image = _TorchvisionLike(2)[1][0]
    again = load_learner(learn.export(tmp_path / "e.safetensors"), device="cpu")
    assert again.predict(image)[0] == learn.predict(image)[0] in ("dark", "light")
    with pytest.raises(ValueError, match="no `classes`"):
        ImageDataLoaders.from_dsets(torch.utils.data.TensorDataset(torch.zeros(2, 3, 4, 4)))


def _ddp_worker(out: Path, data: Path) -> None:
    """One rank: a learner on a DataBlock over ``data``; every decoded file is logged to ``decoded<rank>.txt``."""
    rank = int(os.environ["RANK"])
    log = out / f"decoded{rank}.txt"

    def get_x(p: Path) -> Path:
        with open(log, "a") as f:
            f.write(f"{p}\n")
        return p
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_x=get_x, get_y=parent_label,
                       splitter=RandomSplitter(0.25, seed=0), item_tfms=Resize(12))
    dls = dblock.dataloaders(data, bs=2, num_workers=0, device="cpu", drop_last=False)
    learn = vision_learner(dls, "resnet18", pretrained=False, progress=False)
    learn.fit(1)
    (out / f"split{rank}.json").write_text(json.dumps({"train": [str(p) for p in dls.train.dataset.items],
                                                        "valid": [str(p) for p in dls.valid.dataset.items]}))


def test_each_ddp_rank_decodes_only_its_shard(tmp_path, img_tools):
    data = tmp_path / "imgs"
    _folder(data, img_tools)  # 16 images: 12 training, 4 validation (even: no sampler padding)
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "LEARNKIT_DEVICE": "cpu",
           "PYTHONPATH": str(HERE.parents[2]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(HERE),
           "--ddp-worker", str(tmp_path), str(data)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    split = json.loads((tmp_path / "split0.json").read_text())
    assert split == json.loads((tmp_path / "split1.json").read_text())
    decoded = [(tmp_path / f"decoded{r}.txt").read_text().split() for r in (0, 1)]
    everything = set(split["train"]) | set(split["valid"])
    assert set(decoded[0]) | set(decoded[1]) == everything  # the epoch saw every item...
    assert not set(decoded[0]) & set(decoded[1])  # ...each decoded by one rank only
    assert len(decoded[0]) == len(decoded[1]) == len(everything) // 2  # and only once


if __name__ == "__main__" and "--ddp-worker" in sys.argv:
    i = sys.argv.index("--ddp-worker")
    _ddp_worker(Path(sys.argv[i + 1]), Path(sys.argv[i + 2]))
