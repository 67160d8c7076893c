"""The U-Net's frozen-encoder cache: the decoder trains on encoder maps computed once (`EncoderFeatures`)."""
from __future__ import annotations

import pytest
import torch

from learnkit.core.headfit import HeadFit, SmallDataWarning
from learnkit.vision.segmentation import SegmentationDataLoaders, aug_transforms, get_image_files, unet_learner
from learnkit.vision.segmentation.feature_cache import EncoderFeatures, FrozenFeatureCache
from learnkit.vision.segmentation.unet import EncoderMaps

from .conftest import label_func_for


def _dls(root, batch_tfms=None):
    return SegmentationDataLoaders.from_label_func(root, get_image_files(root / "images"), label_func_for(root),
                                                   codes=root / "codes.txt", batch_tfms=batch_tfms, bs=4,
                                                   device="cpu")


def _learner(dls, **kw):
    return unet_learner(dls, "resnet18", pretrained=False, decoder_channels=(16, 8), progress=False, **kw)


@pytest.mark.parametrize("last_cross", [False, True])
def test_cached_encoder_maps_train_the_decoder_exactly_as_images_do(seg_folder, last_cross):
    """Same decoder weights and recorded values with and without the cache; the encoder sees each image once."""
    results = []
    for cache in (True, False):
        dls = _dls(seg_folder)  # fresh loaders: a loader's shuffling generator advances as it is used
        torch.manual_seed(0)
        learn = _learner(dls, cache_frozen_features=cache, last_cross=last_cross)
        seen = []
        learn.model.encoder.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
        learn.freeze()
        torch.manual_seed(1)
        learn.fit_one_cycle(2, 1e-2)
        decoder = {k: v for k, v in learn.model.state_dict().items() if not k.startswith("encoder.")}
        results.append((decoder, learn.recorder.values, sum(seen), learn))
    (dec_c, vals_c, n_c, lc), (dec_p, vals_p, n_p, _) = results
    assert lc.frozen_feature_cache.active, lc.frozen_feature_cache.reason
    n_train, n_valid = len(lc.dls.train.dataset), len(lc.dls.valid.dataset)
    assert n_c == n_train + n_valid       # once each
    assert n_p > n_c                      # every epoch without the cache
    for k in dec_p:
        assert torch.allclose(dec_c[k].float(), dec_p[k].float(), atol=1e-4), k
    assert torch.allclose(torch.tensor(vals_c), torch.tensor(vals_p), atol=1e-4)


def test_unet_takes_encoder_maps_in_place_of_images(seg_folder):
    learn = _learner(_dls(seg_folder))
    x = learn.dls.one_batch()[0]
    model = learn.model.eval()
    with torch.no_grad():
        maps = EncoderMaps(tuple(model.encoder(x)), None, tuple(x.shape[-2:]))
        assert torch.allclose(model(maps), model(x), atol=1e-5)


def test_frozen_phase_gives_the_decoder_min_steps_on_unaugmented_maps(seg_folder):
    """With augmentation the exact cache steps aside, but fine_tune's frozen phase still trains the decoder on the
    maps of the un-augmented images, for at least HeadFit.min_steps steps, and leaves the encoder as it was."""
    learn = _learner(_dls(seg_folder, batch_tfms=aug_transforms(max_rotate=0)))
    learn.freeze()
    learn.fit(1)
    assert not learn.frozen_feature_cache.active and "random transforms" in learn.frozen_feature_cache.reason
    enc = {k: v.clone() for k, v in learn.model.encoder.state_dict().items()}
    dec = {k: v.clone() for k, v in learn.model.decoder.state_dict().items()}
    learn.fit_frozen_head(1, 1e-2, plan=HeadFit(min_steps=24))
    cache = learn.frozen_feature_cache
    assert cache.reason == "active (fitting the head)" and cache.head_passes == 12  # 2 training batches a pass
    assert len(learn.recorder.losses) == 24
    assert all(torch.equal(v, learn.model.encoder.state_dict()[k]) for k, v in enc.items())
    assert any(not torch.equal(v, learn.model.decoder.state_dict()[k]) for k, v in dec.items())


def test_fine_tune_head_fit_sets_the_decoder_steps(seg_folder):
    """``fine_tune(head_fit=HeadFit(min_steps=N))`` gives the frozen phase N decoder steps (2 batches a pass:
    N / 2 passes), then the unfrozen epoch its 2 steps; anything but a HeadFit is refused by name."""
    from learnkit import Callback

    class Steps(Callback):  # training steps of each fit
        def __init__(self):
            self.per_fit = []

        def before_fit(self):
            self.per_fit.append(0)

        def after_batch(self):
            self.per_fit[-1] += self.learn.training

    learn, steps = _learner(_dls(seg_folder)), Steps()
    with pytest.warns(SmallDataWarning, match="unfrozen phase made only 2 optimizer steps"):  # on purpose here
        learn.fine_tune(1, freeze_epochs=1, head_fit=HeadFit(min_steps=10), cbs=steps)
    assert steps.per_fit == [10, 2]
    with pytest.raises(TypeError, match="head_fit must be a HeadFit"):
        learn.fine_tune(1, head_fit=200)


def test_cache_steps_aside_and_says_why(seg_folder):
    learn = unet_learner(_dls(seg_folder), "resnet18", pretrained=False, decoder_channels=(16, 8), progress=False,
                         cbs=None, cache_frozen_features=False)
    assert not any(isinstance(cb, FrozenFeatureCache) for cb in learn.cbs)
    small = _learner(_dls(seg_folder))
    small.frozen_feature_cache.source.max_bytes = 1024
    small.freeze()
    small.fit(1)
    assert not small.frozen_feature_cache.active and "MiB (> max_bytes)" in small.frozen_feature_cache.reason
    unfrozen = _learner(_dls(seg_folder))
    unfrozen.unfreeze()
    unfrozen.fit(1)
    assert unfrozen.frozen_feature_cache.reason == "the encoder is not frozen"
    assert isinstance(unfrozen.frozen_feature_cache.source, EncoderFeatures)
