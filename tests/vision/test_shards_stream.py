"""Image shards as a stream (issue 27): plain tar headers, pixels bit-identical to the folder path, a new
(reproducible) training order each epoch, and fine_tune's frozen-feature cache on a stream."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("webdataset")

from learnkit.vision import (FrozenFeatureCache, ImageDataLoaders, Resize, error_rate, parent_label,  # noqa: E402
                             vision_learner, write_image_shards)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """20 noisy JPEGs of two sizes in two class folders: red-ish cats, blue-ish dogs."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for c, lab in enumerate(("cat", "dog")):
        (root / lab).mkdir()
        for i in range(10):
            a = rng.integers(0, 90, (18 + 4 * (i % 2), 24, 3), dtype=np.uint8)
            a[..., 2 * c] += 160
            Image.fromarray(a).save(root / lab / f"{i:02d}.jpg", quality=85)
    return root


def test_shards_from_a_file_list_have_plain_tar_headers(photos, tmp_path):
    files = sorted(photos.rglob("*.jpg"))[::-1]  # any order: kept as given
    shards = write_image_shards(files, tmp_path, per_shard=8)
    assert [p.name for p in shards] == [f"shard-{i:06d}.tar" for i in range(3)]
    with tarfile.open(shards[0]) as t:
        members = t.getmembers()
    # no PAX header per member (webdataset's float mtime made one): half the headers for a reader to parse
    assert members[0].pax_headers == {} and isinstance(members[0].mtime, int)
    assert [m.name for m in members[:2]] == ["00000000.cls", "00000000.jpg"]
    assert members[1].size == files[0].stat().st_size  # the bytes as they are
    with pytest.raises(FileNotFoundError, match="1 of the 2 image files"):
        write_image_shards([files[0], photos / "missing.jpg"], tmp_path / "x", label_func=parent_label)


def test_shards_decode_bit_identical_to_the_folder_path(photos, tmp_path):
    folder = ImageDataLoaders.from_folder(photos, valid_pct=0.5, item_tfms=Resize(16), bs=4, num_workers=0,
                                          device="cpu")
    ds = folder.valid.dataset
    shards = write_image_shards(ds.items, tmp_path, per_shard=4, vocab=folder.vocab)
    dls = ImageDataLoaders.from_shards([str(p) for p in shards], [str(p) for p in shards], item_tfms=Resize(16),
                                       bs=4, num_workers=0, device="cpu")
    xs, ys = zip(*dls[1])  # the loader itself: decoded uint8, before the batch transforms
    ref = [ds[i] for i in range(len(ds))]
    assert torch.equal(torch.cat(xs), torch.stack([x for x, _ in ref]))
    assert torch.cat(ys).tolist() == [int(y) for _, y in ref]


@pytest.mark.parametrize("workers", [0, 2])
def test_training_order_is_new_each_epoch_and_repeats_across_runs(photos, tmp_path, workers):
    shards = [str(p) for p in write_image_shards(photos, tmp_path, per_shard=5)]

    def epochs() -> list[list[int]]:
        dls = ImageDataLoaders.from_shards(shards, item_tfms=Resize(8), bs=4, num_workers=workers, device="cpu",
                                           shuffle_buffer=8)
        # an item's identity: its pixels (noise: all 20 differ)
        return [[bytes(v.numpy()) for x, _ in dls[0] for v in x.flatten(1)] for _ in range(2)]

    first, again = epochs(), epochs()
    assert first == again  # seeded: a run repeats itself
    assert sorted(first[0]) == sorted(first[1]) and len(set(first[0])) == 20  # every item once per epoch
    assert first[0] != first[1]  # reshuffled each epoch (in the workers too)


def tiny_arch(pretrained: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 2))


def test_fine_tune_on_a_stream_fits_the_head_on_cached_features(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNKIT_SMALL_DATA_WARNINGS", "0")  # 20 items, a few steps: on purpose
    shards = [str(p) for p in write_image_shards(photos, tmp_path, per_shard=5)]
    dls = ImageDataLoaders.from_shards(shards[:3], shards[3:], item_tfms=Resize(16), bs=4, num_workers=0,
                                       device="cpu")
    learn = vision_learner(dls, tiny_arch, pretrained=False, metrics=error_rate, progress=False, path=tmp_path)
    learn.fine_tune(1)
    cache = next(cb for cb in learn.cbs if isinstance(cb, FrozenFeatureCache))
    assert cache.head_solved  # the frozen phase solved the output layer on the stream's cached features
    assert learn.recorder.final_record()["error_rate"] == 0  # red cats, blue dogs
