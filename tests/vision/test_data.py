"""ImageDataLoaders: the factories, bad inputs, new items, export config."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from learnkit.vision import (ImageDataLoaders, ImageLoadError, Normalize, RandomResizedCrop, Resize, aug_transforms,
                             get_image_files)


def is_cat(name: str) -> bool:
    return name[0].isupper()


def _labels(dl, dls):
    return sorted(dls.vocab[int(y)] for _, y in dl.dataset)


def test_from_name_func_split_labels_and_batches(two_class_folder):
    root, files = two_class_folder("name", n=10)
    dls = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(16), bs=4, device="cpu")
    assert dls.vocab == [False, True] and dls.c == 2
    assert len(dls.train.dataset) == 16 and len(dls.valid.dataset) == 4  # 20 % of 20
    x, y = next(iter(dls[0]))  # the loader itself; dls.train gives prepared batches
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 16, 16) and y.dtype == torch.long
    xb, yb = dls.one_batch()
    assert xb.dtype == torch.float32 and 0 <= float(xb.min()) and float(xb.max()) <= 1  # no normalisation yet
    assert next(iter(dls.train))[0].dtype == torch.float32  # iterating dls.train: batches as the model sees them
    # the same split every time (seed 42)
    again = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(16), bs=4, device="cpu")
    assert again.valid.dataset.items == dls.valid.dataset.items


def test_from_name_re_and_path_func(two_class_folder):
    root, files = two_class_folder("name", n=5)
    dls = ImageDataLoaders.from_name_re(root, files, r"^([a-zA-Z]+)_\d+", bs=2, device="cpu")
    assert dls.vocab == ["Cat", "dog"]
    dls = ImageDataLoaders.from_path_func(root, files, lambda p: p.stem.split("_")[0].lower(), bs=2, device="cpu")
    assert dls.vocab == ["cat", "dog"]
    with pytest.raises(ValueError, match=r"does not match 'Cat_0.png'"):
        ImageDataLoaders.from_name_re(root, files, r"^(\d+)$", device="cpu")
    with pytest.raises(ValueError, match="group"):
        ImageDataLoaders.from_name_re(root, files, r"^\w+", device="cpu")


def test_from_folder_train_valid_and_random_split(two_class_folder):
    root, _ = two_class_folder("folders", n=6)
    (root / "test").mkdir()
    Image.new("RGB", (24, 20)).save(root / "test" / "unlabelled.png")
    dls = ImageDataLoaders.from_folder(root, bs=4, device="cpu")
    assert dls.vocab == ["cat", "dog"]
    assert len(dls.train.dataset) == 8 and len(dls.valid.dataset) == 4  # test/ is left out
    assert all("valid" in str(p) for p in dls.valid.dataset.items)
    root2, _ = two_class_folder("classes", n=10)
    dls2 = ImageDataLoaders.from_folder(root2, valid_pct=0.25, bs=4, device="cpu")
    assert len(dls2.valid.dataset) == 5 and dls2.vocab == ["cat", "dog"]


def test_from_df_csv_lists_and_valid_col(two_class_folder):
    root, files = two_class_folder("name", n=5)
    names = [f.name for f in files]
    df = pd.DataFrame({"file": names, "label": ["cat" if is_cat(n) else "dog" for n in names],
                       "is_valid": [i % 5 == 0 for i in range(len(names))]})
    dls = ImageDataLoaders.from_df(df, root, fn_col="file", label_col="label", valid_col="is_valid", bs=2, device="cpu")
    assert [p.name for p in dls.valid.dataset.items] == [n for n, v in zip(names, df.is_valid) if v]
    df.to_csv(root / "labels.csv", index=False)
    dls = ImageDataLoaders.from_csv(root, "labels.csv", valid_col="is_valid", bs=2, device="cpu")
    assert dls.vocab == ["cat", "dog"] and len(dls.valid.dataset) == 2
    dls = ImageDataLoaders.from_lists(root, names, list(df.label), bs=2, device="cpu")
    assert dls.vocab == ["cat", "dog"]
    with pytest.raises(KeyError, match="'nope'"):
        ImageDataLoaders.from_df(df, root, fn_col="nope", device="cpu")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        ImageDataLoaders.from_csv(root, "missing.csv", device="cpu")


def test_options_are_keyword_only_after_the_lessons_positional_arguments(two_class_folder):
    """fastai's lessons pass path, files and labelling positionally; everything after is keyword-only, so a
    misplaced option is an error rather than, say, ``valid_pct`` read as the seed."""
    root, files = two_class_folder("folders", n=6)
    assert ImageDataLoaders.from_folder(root, "train", "valid", bs=4, device="cpu").vocab == ["cat", "dog"]
    with pytest.raises(TypeError, match="positional"):
        ImageDataLoaders.from_folder(root, "train", "valid", None)
    names = [f.name for f in files]
    with pytest.raises(TypeError, match="positional"):
        ImageDataLoaders.from_name_func(root, files, is_cat, 0.2)
    with pytest.raises(TypeError, match="positional"):
        ImageDataLoaders.from_lists(root, names, names, 0.2)
    df = pd.DataFrame({"fn": [str(f) for f in files], "label": [f.parent.name for f in files]})
    assert ImageDataLoaders.from_df(df, ".", bs=4, device="cpu").vocab == ["cat", "dog"]
    with pytest.raises(TypeError, match="positional"):
        ImageDataLoaders.from_df(df, ".", 0.2)
    df.to_csv(root / "labels.csv", index=False)
    with pytest.raises(TypeError, match="positional"):
        ImageDataLoaders.from_csv(root, "labels.csv", "infer")
    with pytest.raises(TypeError, match="positional"):
        ImageDataLoaders.from_dsets([], [], [Resize(8)])


def test_multi_label_with_delimiter(two_class_folder):
    root, files = two_class_folder("name", n=5)
    tags = ["red furry", "blue", "red", "blue furry", "furry", "red blue", "", "red", "blue", "furry"]
    df = pd.DataFrame({"fn": [f.name for f in files], "tags": tags})
    dls = ImageDataLoaders.from_df(df, root, label_delim=" ", valid_pct=0.2, bs=4, device="cpu")
    assert dls.multi_label and dls.vocab == ["blue", "furry", "red"]
    _, y = dls.one_batch()
    assert y.dtype == torch.float32 and y.shape == (4, 3)
    assert type(dls.loss_func).__name__ == "BCEWithLogitsLossFlat"
    all_targets = torch.cat([y for _, y in dls.train] + [y for _, y in dls.valid])
    assert all_targets.sum() == sum(len(t.split()) for t in tags)


# --- bad input -------------------------------------------------------------------------------------------

def _corrupt(root, kind):
    if kind == "truncated":
        p = root / "Cat_broken.jpg"
        Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(p, quality=95)
        p.write_bytes(p.read_bytes()[:400])
    elif kind == "empty":
        p = root / "Cat_empty.jpg"
        p.write_bytes(b"")
    else:
        p = root / "Cat_notes.jpg"
        p.write_text("a text file with an image suffix")
    return p


@pytest.mark.parametrize("kind", ["truncated", "empty", "text"])
def test_bad_file_raises_naming_it(two_class_folder, img_tools, kind):
    """Files are decoded lazily: a bad one raises when a loader meets it, naming the file and the step."""
    root, _ = two_class_folder("name", n=5)
    bad = _corrupt(root, kind)
    before = img_tools.snapshot(root)
    dls = ImageDataLoaders.from_name_func(root, get_image_files(root), is_cat, item_tfms=Resize(16), device="cpu")
    with pytest.raises(ImageLoadError, match=bad.name) as err:
        for dl in dls.loaders:
            for _ in dl:
                pass
    assert "ImageBlock.encode" in str(err.value)
    assert img_tools.snapshot(root) == before


def test_bad_files_skipped_with_warning_and_count(two_class_folder, img_tools):
    root, _ = two_class_folder("name", n=5)
    bad = [_corrupt(root, k) for k in ("truncated", "empty", "text")]
    before = img_tools.snapshot(root)
    dls = ImageDataLoaders.from_name_func(root, get_image_files(root), is_cat, item_tfms=Resize(16),
                                          on_error="skip", device="cpu", bs=4, shuffle=False)  # no drop_last
    assert dls.skipped == []  # nothing is read before the first batch
    n = 0
    with pytest.warns(UserWarning, match="skipped .*Cat_"):
        for dl in dls.loaders:
            for x, y in dl:
                n += len(x)
    assert sorted(p for p, _ in dls.skipped) == sorted(str(b) for b in bad)
    assert n == 10  # every good image, none of the bad ones
    assert dls.summary()["skipped files"] == 3
    assert img_tools.snapshot(root) == before

def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files found"):
        ImageDataLoaders.from_folder(tmp_path / "empty", device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageDataLoaders.from_folder(tmp_path / "nowhere", device="cpu")


def test_label_function_that_raises(two_class_folder):
    root, files = two_class_folder("name", n=5)

    def label(name):
        if name.startswith("dog_3"):
            raise KeyError("no label for this one")
        return is_cat(name)
    with pytest.raises(ValueError, match=r"dog_3\.png.*KeyError"):
        ImageDataLoaders.from_name_func(root, files, label, device="cpu")
    with pytest.warns(UserWarning, match="skipped 1 of 10"):
        dls = ImageDataLoaders.from_name_func(root, files, label, on_error="skip", device="cpu")
    assert dls.skipped[0][0].endswith("dog_3.png")
    with pytest.raises(ValueError, match="missing"):
        ImageDataLoaders.from_name_func(root, files, lambda n: None, device="cpu")


def test_single_class_is_a_clear_error(two_class_folder):
    root, files = two_class_folder("name", n=5)
    with pytest.raises(ValueError, match=r"same label 'pet' \(e\.g\. .*png\).*at least two classes"):
        ImageDataLoaders.from_name_func(root, files, lambda n: "pet", device="cpu")


def test_class_only_in_validation_and_bad_options(two_class_folder):
    root, files = two_class_folder("folders", n=6)
    (root / "valid" / "bird").mkdir()
    Image.new("RGB", (24, 20)).save(root / "valid" / "bird" / "b.png")
    with pytest.raises(ValueError, match="only in the validation set"):
        ImageDataLoaders.from_folder(root, device="cpu")
    with pytest.raises(ValueError, match="on_error"):
        ImageDataLoaders.from_folder(root, on_error="ignore", device="cpu")


def test_different_sizes_without_resize_explain_the_fix(two_class_folder, img_tools):
    root, files = two_class_folder("name", n=4)
    img_tools.write_image(root / "Cat_big.png", (200, 0, 0), size=(40, 30))
    dls = ImageDataLoaders.from_name_func(root, get_image_files(root), is_cat, valid_pct=0.0, bs=9, device="cpu")
    assert dls.valid is None
    with pytest.raises(RuntimeError, match=r"Resize\(224\)"):
        next(iter(dls.train))


# --- caching, test_dl, export -----------------------------------------------------------------------------

def test_images_are_decoded_lazily_and_cached_on_request(two_class_folder):
    root, files = two_class_folder("name", n=4)
    dls = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(12), device="cpu")
    ds = dls.train.dataset
    assert ds.cache is None and ds.deterministic and "off" in dls.summary()["cache"]
    cached = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(12), cache=True, device="cpu")
    cds = cached.train.dataset
    assert cds.cache.n_filled == 0 and "memory-mapped" in cached.summary()["cache"]
    assert torch.equal(cds[0][0], ds[0][0]) and cds.cache.n_filled == 1
    assert torch.equal(cds[0][0], ds[0][0])  # read back from the cache
    with pytest.raises(ValueError, match="Resize"):  # never dropped silently
        ImageDataLoaders.from_name_func(root, files, is_cat, cache=True, device="cpu")
    rrc = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=RandomResizedCrop(12), device="cpu")
    assert not rrc.train.dataset.deterministic and rrc.valid.dataset.deterministic
    assert rrc.train_deterministic is False and dls.train_deterministic is True
    aug = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(12), batch_tfms=aug_transforms(),
                                          device="cpu")
    assert aug.train_deterministic is False


def test_test_dl_accepts_paths_pil_and_tensors(two_class_folder):
    root, files = two_class_folder("name", n=4)
    dls = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(12), device="cpu")
    dls.normalize = Normalize((0.5,) * 3, (0.5,) * 3)
    pil = Image.open(files[0])
    tensor = torch.from_numpy(np.array(pil)).permute(2, 0, 1)
    dl = dls.test_dl([files[0], pil, tensor, tensor.float() / 255])
    (x,) = next(iter(dl))
    assert x.shape == (4, 3, 12, 12)
    assert all(torch.equal(x[0], x[i]) for i in range(1, 4))
    (xn,) = dls.on_device((x,), training=False)
    assert xn.min() < 0  # normalised
    x2, y2 = next(iter(dls.test_dl(files[:2], with_labels=True)))
    assert y2.tolist() == [int(is_cat(f.name)) for f in files[:2]]
    with pytest.raises(ValueError, match="no items"):
        dls.test_dl([])


def test_export_config_roundtrip(two_class_folder):
    root, files = two_class_folder("name", n=4)
    dls = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(12, method="squish"),
                                          batch_tfms=aug_transforms(), device="cpu")
    dls.normalize = Normalize((0.5,) * 3, (0.5,) * 3)
    cfg = json.loads(json.dumps(dls.export_config()))  # JSON-able
    back = ImageDataLoaders.from_config(cfg, device="cpu")
    assert back.vocab == [False, True] and back.train is None and back.valid is None
    (a,) = dls.on_device(tuple(next(iter(dls.test_dl(files[:3])))), training=False)
    (b,) = back.on_device(tuple(next(iter(back.test_dl(files[:3])))), training=False)
    assert torch.equal(a, b)
    assert back.decode_pred(torch.tensor(1), torch.tensor([0.2, 0.8]))[0] is True
    with pytest.raises(ValueError, match="exported"):
        back.test_dl(files[:1], with_labels=True)


def test_show_batch_renders(two_class_folder, tmp_path):
    root, files = two_class_folder("name", n=4)
    dls = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(12), batch_tfms=aug_transforms(),
                                          bs=4, device="cpu")
    dls.normalize = Normalize((0.5,) * 3, (0.5,) * 3)
    fig = dls.show_batch(max_n=4)
    assert len([ax for ax in fig.axes if ax.images]) == 4
    assert {ax.get_title() for ax in fig.axes if ax.images} <= {"True", "False"}
    fig.savefig(tmp_path / "batch.png")
    assert (tmp_path / "batch.png").stat().st_size > 1000
    fig = dls.show_batch(nrows=1, ncols=3)  # fastbook ch. 5: the grid's size, not max_n=9, sets how many
    assert len(fig.axes) == 3 and all(ax.images for ax in fig.axes)
