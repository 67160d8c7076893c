"""fine_tune's frozen phase on tiny generated data: the head fitted on cached features (`HeadFit`), its output
bias started at the targets' prior, and the small-data warning."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from learnkit import Callback, set_seed
from learnkit.core.headfit import HeadFit, MIN_PHASE_STEPS, SmallDataWarning, init_output_bias, phase_warnings
from learnkit.vision import (FrozenFeatureCache, ImageDataLoaders, RandomResizedCrop, accuracy_multi, aug_transforms,
                             error_rate, vision_learner)

COLORS = {"red": (230, 30, 30), "green": (30, 230, 30), "blue": (30, 30, 230)}


def tiny_arch(pretrained: bool = False) -> nn.Module:
    """A fixed random conv body (cut before its pooling by vision_learner)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 2))


def multilabel_images(root, n: int = 60, seed: int = 0):
    """Gray 16x16 images with a patch of each colour present or not (each label in about a third of them)."""
    rng = np.random.default_rng(seed)
    files, labels = [], []
    for i in range(n):
        a = np.full((16, 16, 3), 120, np.uint8)
        present = [c for c in COLORS if rng.random() < 0.3]
        for k, c in enumerate(present):
            a[k * 5:(k + 1) * 5, :, :] = COLORS[c]
        p = root / f"img_{i}.png"
        Image.fromarray(a).save(p)
        files.append(p)
        labels.append(present)
    return files, labels


def multilabel_learner(tmp_path, batch_tfms=None, seed: int = 0, lin_ftrs=None):
    files, labels = multilabel_images(tmp_path)
    set_seed(seed)
    dls = ImageDataLoaders.from_lists(tmp_path, files, labels, bs=16, device="cpu", num_workers=0,
                                      batch_tfms=batch_tfms)
    return vision_learner(dls, tiny_arch, pretrained=False, metrics=accuracy_multi, progress=False, lin_ftrs=lin_ftrs)


def absent_accuracy(learn) -> float:
    y = torch.cat([b[1] for b in learn.dls.valid]).float()
    return float((y == 0).float().mean())


def test_head_fit_converges_where_one_frozen_epoch_does_not(tmp_path):
    """3 batches a frozen epoch: the old frozen phase (one pass, 3 steps) leaves the head near its random start
    and below the all-absent baseline; HeadFit fits it, by L-BFGS (the default head: one linear layer) or by
    passes over the cached features (a head with a hidden layer)."""
    results = {}
    plans = {"old": (HeadFit(min_steps=0, init_bias=False, solver=None), None),
             "lbfgs": (HeadFit(), None), "passes": (HeadFit(), [8])}
    for name, (plan, lin_ftrs) in plans.items():
        (tmp_path / name).mkdir()
        learn = multilabel_learner(tmp_path / name, lin_ftrs=lin_ftrs)
        learn.freeze()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learn.fit_frozen_head(1, 2e-3, plan=plan)
        cache = next(cb for cb in learn.cbs if isinstance(cb, FrozenFeatureCache))
        results[name] = (*learn.validate(), len(learn.recorder.losses), cache.head_passes, cache.head_solved)
        baseline = absent_accuracy(learn)
    assert results["old"][2:] == (3, 1, False)
    assert results["lbfgs"][2:] == (3, 1, True)      # solved, then the recipe's one pass
    assert results["passes"][2:] == (300, 100, False)  # ceil(300 / 3) passes of 3 batches
    for name in ("lbfgs", "passes"):
        assert results[name][0] < 0.5 * results["old"][0]
        assert results["old"][1] < baseline < results[name][1]


def test_head_fit_with_augmentation_uses_unaugmented_features(tmp_path):
    learn = multilabel_learner(tmp_path, batch_tfms=aug_transforms(size=16, min_scale=0.9))
    cache = next(cb for cb in learn.cbs if isinstance(cb, FrozenFeatureCache))
    learn.freeze()
    learn.fit_one_cycle(1)  # a plain fit with augmentation: no exact cache
    assert not cache.active and "random transforms" in cache.reason
    learn.fit_frozen_head(1, 2e-3)  # fine_tune's frozen phase: features of the un-augmented images
    assert cache.reason == "active (fitting the head)" and cache.head_solved
    assert cache.bias_init == "multi-label log-odds"
    assert learn.validate()[1] > absent_accuracy(learn)


def test_fine_tune_holds_the_solved_output_layer(tmp_path):
    """With the output layer solved in the frozen phase, the unfrozen epochs train the body (and the head's
    batch-norm) against it and leave it as solved; after fine_tune everything trains again. Without the
    solver nothing is held."""
    learn = multilabel_learner(tmp_path)
    lin = learn.model[1][-1]
    seen = []

    class Snapshot(Callback):
        def before_fit(self):
            seen.append((lin.weight.detach().clone(), lin.weight.requires_grad,
                         learn.model[0][0].weight.detach().clone()))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fine_tune(2, cbs=Snapshot())
    (_, frozen_grad, _), (w_unfrozen, held_grad, body_before) = seen
    assert frozen_grad and not held_grad
    assert torch.equal(lin.weight, w_unfrozen)                  # the solved layer did not move
    assert not torch.equal(learn.model[0][0].weight, body_before)  # the body did
    assert all(p.requires_grad for p in learn.model.parameters())

    (tmp_path / "passes").mkdir()
    learn = multilabel_learner(tmp_path / "passes", lin_ftrs=[8])  # a hidden layer: passes, no solver, no hold
    lin, seen = learn.model[1][-1], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fine_tune(1, cbs=Snapshot())
    assert seen[1][1] and not torch.equal(lin.weight, seen[1][0])


@pytest.mark.parametrize("kind", ["single", "multi", "regression"])
def test_output_bias_matches_prior(kind):
    head = nn.Sequential(nn.Linear(5, 3 if kind != "regression" else 2))
    if kind == "regression":
        from learnkit.core.layers import SigmoidRange
        from learnkit.core.losses import MSELossFlat
        head.append(SigmoidRange(0, 10))
        y = torch.tensor([[2.0, 5.0], [4.0, 7.0], [3.0, 6.0]])
        assert init_output_bias(head, y, MSELossFlat()) == "target mean inside y_range"
        nn.init.zeros_(head[0].weight)
        assert torch.allclose(head(torch.randn(4, 5)), torch.tensor([3.0, 6.0]).expand(4, 2), atol=1e-5)
    elif kind == "multi":
        from learnkit.core.losses import BCEWithLogitsLossFlat
        y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1]]).float()
        assert init_output_bias(head, y, BCEWithLogitsLossFlat()) == "multi-label log-odds"
        assert torch.allclose(torch.sigmoid(head[0].bias), torch.tensor([0.75, 0.25, 0.25]), atol=1e-5)
    else:
        from learnkit.core.losses import CrossEntropyLossFlat
        y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])  # counts 5, 2, 1, plus one pseudo-count each
        assert init_output_bias(head, y, CrossEntropyLossFlat()) == "class log-prior"
        assert torch.allclose(torch.softmax(head[0].bias, 0), torch.tensor([6, 3, 2]) / 11.0, atol=1e-5)


def test_output_bias_left_alone_for_unknown_loss():
    head = nn.Linear(4, 2)
    before = head.bias.clone()
    assert init_output_bias(head, torch.tensor([0, 1]), nn.functional.cross_entropy) is None
    assert torch.equal(head.bias, before)


def test_small_data_warning_fires_and_stays_silent(tmp_path, two_class_folder):
    path, files = two_class_folder(n=6)  # 12 images: 10 training, bs 16: one step per epoch
    dls = ImageDataLoaders.from_name_func(path, files, lambda n: n[0].isupper(), bs=16, device="cpu", num_workers=0)
    learn = vision_learner(dls, tiny_arch, pretrained=False, metrics=error_rate, progress=False)
    with pytest.warns(UserWarning, match=r"unfrozen phase made only 2 optimizer steps .*more epochs"):
        learn.fine_tune(2)
    path, files = two_class_folder(n=30)  # 60 images, bs 4: 12 steps an epoch
    dls = ImageDataLoaders.from_name_func(path, files, lambda n: n[0].isupper(), bs=4, device="cpu", num_workers=0)
    learn = vision_learner(dls, tiny_arch, pretrained=False, metrics=error_rate, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.fine_tune(1)
    assert len(learn.recorder.losses) >= MIN_PHASE_STEPS


def test_frozen_phase_warnings(tmp_path):
    """Without a feature cache one frozen epoch of 3 steps cannot fit the head: fine_tune says so; a loss still
    falling steeply at the end of the frozen phase is named, a flattened one is not."""
    files, labels = multilabel_images(tmp_path, n=60)
    dls = ImageDataLoaders.from_lists(tmp_path, files, labels, bs=16, device="cpu", num_workers=0)
    learn = vision_learner(dls, tiny_arch, pretrained=False, metrics=accuracy_multi, progress=False,
                           cache_frozen_features=False)
    with pytest.warns(UserWarning, match=r"frozen phase made only 3 optimizer steps .*freeze_epochs"):
        learn.fine_tune(0)
    falling = [1.0 - 0.04 * i for i in range(20)]
    flat = [0.2 + 0.8 * 0.7 ** i for i in range(20)]
    assert "still falling steeply" in phase_warnings("frozen", 20, falling, 80, 4, 1)[0]
    assert phase_warnings("frozen", 20, flat, 80, 4, 1) == []


def test_fine_tune_with_a_random_item_transform(tmp_path):
    """fastbook ch. 6's multi-label recipe (``item_tfms=RandomResizedCrop(..., min_scale=0.35)``): the training
    sampler draws ``(index, seed)`` pairs, which the cached-feature loader of the frozen phase must follow (it
    raised ``TypeError: range indices must be integers``)."""
    files, labels = multilabel_images(tmp_path)
    set_seed(0)
    dls = ImageDataLoaders.from_lists(tmp_path, files, labels, bs=16, device="cpu", num_workers=0,
                                      item_tfms=RandomResizedCrop(16, min_scale=0.35))
    learn = vision_learner(dls, tiny_arch, pretrained=False, metrics=accuracy_multi, progress=False)
    with pytest.warns(SmallDataWarning, match="too few"):  # 48 items on purpose: the warning is right
        learn.fine_tune(1, freeze_epochs=2)
    assert len(learn.recorder.values) == 1 and learn.recorder.values[-1][-1] > absent_accuracy(learn) - 0.05
