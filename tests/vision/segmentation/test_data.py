"""SegmentationDataLoaders on tiny generated folders: factories, batches, bad input, export."""
from __future__ import annotations

import json
import shutil

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from learnkit.core.registry import get_dls_class
from learnkit.core.split import FuncSplitter
from learnkit.vision.io import get_image_files
from learnkit.vision.segmentation import SegmentationDataLoaders
from learnkit.vision.transforms import Normalize, Resize, aug_transforms


def _dls(seg, root, **kw):
    kw.setdefault("codes", seg.CODES)
    kw.setdefault("bs", 4)
    return SegmentationDataLoaders.from_label_func(root, get_image_files(root / "images"), seg.label_func_for(root),
                                                   device="cpu", **kw)


def test_from_label_func_batches(seg, seg_folder):
    dls = _dls(seg, seg_folder, void_code="void")
    assert len(dls.train.dataset) == 8 and len(dls.valid.dataset) == 2  # automatic 20 % split
    assert dls.codes == dls.vocab == seg.CODES and dls.c == 5 and dls.void_code == 4 and dls.ignore_index == 4
    assert dls.loss_func.ignore_index == 4
    raw = next(iter(dls[0]))  # the loader itself: collated, before the batch transforms
    assert raw[0].dtype == torch.uint8 and raw[1].dtype == torch.uint8 and raw[1].shape == (4, 32, 48)
    x, y = dls.one_batch()
    assert x.dtype == torch.float32 and x.shape == (4, 3, 32, 48) and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.long
    # the decoded masks are the files' values, and the images' pixels say the same classes
    for img, mask in zip(*next(iter(dls[1]))):
        assert torch.equal(seg.classes_from_pixels(img), mask.long())


def test_codes_txt_is_read_and_required(seg, seg_folder):
    dls = _dls(seg, seg_folder, codes=None)
    assert dls.codes == seg.CODES
    (seg_folder / "codes.txt").unlink()
    with pytest.raises(ValueError, match="codes is required"):
        _dls(seg, seg_folder, codes=None)


def test_no_void_code_means_ignore_minus_100(seg, seg_folder):
    dls = _dls(seg, seg_folder)
    assert dls.void_code is None and dls.ignore_index == -100 and dls.loss_func.ignore_index == -100


def test_item_transforms_resize_masks_with_nearest(seg, seg_folder):
    dls = _dls(seg, seg_folder, item_tfms=Resize((64, 96)))
    x, y = next(iter(dls.valid))
    assert x.shape[-2:] == y.shape[-2:] == (64, 96)
    assert set(torch.unique(y).tolist()) <= {0, 1, 2, 3}  # nearest neighbour: no blended class values
    agree = np.mean([float((seg.classes_from_pixels(i) == m.long()).float().mean()) for i, m in zip(x, y)])
    assert agree > 0.97


def test_cache_and_no_cache_give_the_same_batches(seg, seg_folder):
    a = _dls(seg, seg_folder, cache=True, item_tfms=Resize(24))
    b = _dls(seg, seg_folder, cache=False, item_tfms=Resize(24))
    assert a.valid.dataset.cache is not None and b.valid.dataset.cache is None
    for _ in range(2):  # the first pass fills the cache, the second reads it
        for (xa, ya), (xb, yb) in zip(a.valid, b.valid):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.valid.dataset.cache.n_filled == len(a.valid.dataset)


def test_from_folders_segnet_layout(seg, tmp_path):
    seg.write_pairs(tmp_path, n=6, img_dir="train", mask_dir="trainannot", mask_name=lambda s: f"{s}.png")
    seg.write_pairs(tmp_path, n=3, seed=1, img_dir="val", mask_dir="valannot", mask_name=lambda s: f"{s}.png")
    dls = SegmentationDataLoaders.from_folders(tmp_path, codes=seg.CODES, void_code=4, bs=2, device="cpu")
    assert len(dls.train.dataset) == 6 and len(dls.valid.dataset) == 3
    assert all(p.parent.name == "val" for p in dls.valid.dataset.items)
    assert dls.label_func(tmp_path / "val" / "f001.png") == tmp_path / "valannot" / "f001.png"
    # without validation folders: a random split of the training pairs
    dls = SegmentationDataLoaders.from_folders(tmp_path, valid_images=None, codes=seg.CODES, valid_pct=0.5,
                                               device="cpu")
    assert len(dls.train.dataset) == len(dls.valid.dataset) == 3
    with pytest.raises(FileNotFoundError, match="folder .*nope does not exist.*trainannot"):
        SegmentationDataLoaders.from_folders(tmp_path, masks="nope", codes=seg.CODES)


def test_splitter_argument(seg, seg_folder):
    files = get_image_files(seg_folder / "images")
    dls = SegmentationDataLoaders.from_label_func(seg_folder, files, seg.label_func_for(seg_folder), codes=seg.CODES,
                                                  splitter=FuncSplitter(lambda o: o.stem in ("f000", "f001", "f002")),
                                                  device="cpu")
    assert sorted(p.stem for p in dls.valid.dataset.items) == ["f000", "f001", "f002"]


# --- bad input: each names the files -----------------------------------------------------------------
def test_missing_mask_file_names_it(seg, seg_folder):
    (seg_folder / "labels" / "f003_P.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 10 mask files do not exist: .*f003_P\.png \(for image .*f003\.png\)"):
        _dls(seg, seg_folder)


def _read_all(dls):
    """Pairs are decoded lazily: go through every batch (where a bad pair raises)."""
    for dl in dls.loaders:
        for _ in dl:
            pass


def test_mask_of_another_size_names_both_files(seg, seg_folder):
    Image.fromarray(np.zeros((16, 48), np.uint8), mode="L").save(seg_folder / "labels" / "f005_P.png")
    with pytest.raises(ValueError, match=r"f005\.png \(with .*f005_P\.png\).*mask is 48x16 .*image is 48x32"):
        _read_all(_dls(seg, seg_folder))


def test_mask_value_outside_codes_names_file(seg, seg_folder):
    m = np.array(Image.open(seg_folder / "labels" / "f002_P.png"))
    m[0, 0] = 9
    Image.fromarray(m, mode="L").save(seg_folder / "labels" / "f002_P.png")
    with pytest.raises(ValueError, match=r"f002_P\.png holds value\(s\) \[9\] outside the codes \(5 codes"):
        _read_all(_dls(seg, seg_folder))
    dls = _dls(seg, seg_folder, void_code=9)  # declared as void: fine, and ignored
    assert dls.ignore_index == 9


def test_checks_also_run_without_cache(seg, seg_folder):
    Image.fromarray(np.zeros((16, 48), np.uint8), mode="L").save(seg_folder / "labels" / "f005_P.png")
    with pytest.raises(ValueError, match="f005_P.png"):
        _read_all(_dls(seg, seg_folder, cache=False))


def test_images_of_different_sizes_need_a_resize(seg, seg_folder):
    img = Image.fromarray(np.zeros((40, 40, 3), np.uint8))
    img.save(seg_folder / "images" / "f000.png")
    Image.fromarray(np.zeros((40, 40), np.uint8), mode="L").save(seg_folder / "labels" / "f000_P.png")
    dls = _dls(seg, seg_folder, valid_pct=0.0, bs=10)
    with pytest.raises(RuntimeError, match="different sizes.*Resize"):
        dls.one_batch()
    dls = _dls(seg, seg_folder, valid_pct=0.0, bs=10, item_tfms=Resize(32))
    assert dls.one_batch()[0].shape == (10, 3, 32, 32)


# --- inference loaders and export -------------------------------------------------------------------
def test_test_dl_with_and_without_labels(seg, seg_folder):
    dls = _dls(seg, seg_folder, item_tfms=Resize((16, 24)))
    files = get_image_files(seg_folder / "images")[:3]
    batch = next(iter(dls.test_dl(files)))
    assert len(batch) == 1 and batch[0].shape == (3, 3, 16, 24)
    x, y = next(iter(dls.test_dl(files, with_labels=True)))
    assert y.shape == (3, 16, 24)
    pil = Image.open(files[0])
    assert next(iter(dls.test_dl([pil])))[0].shape == (1, 3, 16, 24)
    with pytest.raises(ValueError, match="no items"):
        dls.test_dl([])


def test_export_config_round_trip(seg, seg_folder):
    dls = _dls(seg, seg_folder, void_code="void", item_tfms=Resize((16, 24)), batch_tfms=aug_transforms())
    dls.normalize = Normalize((0.5,) * 3, (0.5,) * 3)
    cfg = dls.export_config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["codes"] == seg.CODES and cfg["void_code"] == 4 and cfg["batch_tfms"] == []  # random ones dropped
    new = get_dls_class("SegmentationDataLoaders").from_config(cfg, device="cpu")
    assert new.train is None and new.codes == seg.CODES and new.void_code == 4
    files = get_image_files(seg_folder / "images")[:2]
    a = dls.on_device(next(iter(dls.test_dl(files))), training=False)[0]
    b = new.on_device(next(iter(new.test_dl(files))), training=False)[0]
    assert torch.equal(a, b) and a.shape == (2, 3, 16, 24)
    assert float(a.min()) < 0  # normalised with mean 0.5, std 0.5
    shutil.rmtree(seg_folder / "labels")  # inference needs no masks
    assert next(iter(new.test_dl(files)))[0].shape == (2, 3, 16, 24)


def test_show_batch_has_a_legend(seg, seg_folder):
    matplotlib.use("Agg")
    dls = _dls(seg, seg_folder, void_code="void", batch_tfms=aug_transforms())
    fig = dls.show_batch(max_n=3)
    assert len([a for a in fig.axes if a.images]) == 3
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "background" in labels and all(lab in seg.CODES for lab in labels)


def test_summary_mentions_void(seg, seg_folder):
    dls = _dls(seg, seg_folder, void_code="void")
    assert dls.summary()["void code"] == "4 (void)"
    assert "void code" in dls._repr_html_()


def test_label_func_errors_name_the_image(seg, seg_folder):
    with pytest.raises(ValueError, match=r"label_func failed on image .*f000\.png: KeyError"):
        SegmentationDataLoaders.from_label_func(seg_folder, get_image_files(seg_folder / "images"),
                                                lambda o: {}[o], codes=seg.CODES)


def test_datablock_with_maskblock_moves_masks_with_random_crops(seg, seg_folder):
    """A hand-written DataBlock: MaskBlock is the target, masks follow every random crop (nearest neighbour) with
    the same draws in 0 or 2 workers, and the loaders are SegmentationDataLoaders."""
    from learnkit.vision import DataBlock, ImageBlock, MaskBlock, RandomResizedCrop, RandomSplitter

    dblock = DataBlock(blocks=(ImageBlock, MaskBlock(seg.CODES, void_code="void")),
                       get_items=lambda p: get_image_files(p / "images"), get_y=seg.label_func_for(seg_folder),
                       splitter=RandomSplitter(0.2, seed=0), item_tfms=RandomResizedCrop((24, 32), min_scale=0.3))
    batches = []
    for nw in (0, 2):
        dls = dblock.dataloaders(seg_folder, bs=4, num_workers=nw, device="cpu")
        assert type(dls).__name__ == "SegmentationDataLoaders" and dls.void_code == 4
        batches.append([(x, y) for x, y in dls.train])
    for (x0, y0), (x2, y2) in zip(*batches):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    for x, y in batches[0]:
        assert x.shape[-2:] == y.shape[-2:] == (24, 32)
        agree = np.mean([float((seg.classes_from_pixels(i) == m.long()).float().mean()) for i, m in zip(x, y)])
        assert agree > 0.9  # the crop moved the mask with its image
