"""``img_cls=`` on the `ImageDataLoaders` factories: ``img_cls=PILImageBW`` gives 1-channel batches (fastai's)."""
from __future__ import annotations

import pandas as pd
import pytest

from learnkit.vision import (ImageDataLoaders, PILImage, PILImageBW, Resize, load_learner, vision_learner)

from .conftest import make_two_class_folder

OPTS = dict(bs=4, num_workers=0, device="cpu")


def _channels(dls) -> tuple[int, int]:
    return next(iter(dls.train))[0].shape[1], next(iter(dls.valid))[0].shape[1]


@pytest.mark.parametrize("img_cls,n", [(PILImageBW, 1), (PILImage, 3)])
def test_every_file_factory_takes_img_cls(tmp_path, img_cls, n):
    files = make_two_class_folder(tmp_path / "names", n=4)
    make_two_class_folder(tmp_path / "folders", n=6, layout="folders")
    names = [f.name for f in files]
    labels = ["cat" if f.name[0].isupper() else "dog" for f in files]
    df = pd.DataFrame({"name": names, "label": labels})
    df.to_csv(tmp_path / "names" / "labels.csv", index=False)
    all_dls = {
        "from_folder": ImageDataLoaders.from_folder(tmp_path / "folders", img_cls=img_cls, **OPTS),
        "from_name_func": ImageDataLoaders.from_name_func(tmp_path / "names", files, lambda s: s[:3].lower(),
                                                          valid_pct=0.25, img_cls=img_cls, **OPTS),
        "from_path_func": ImageDataLoaders.from_path_func(tmp_path / "names", files, lambda p: p.name[:3].lower(),
                                                          valid_pct=0.25, img_cls=img_cls, **OPTS),
        "from_name_re": ImageDataLoaders.from_name_re(tmp_path / "names", files, r"^([A-Za-z]+)_", valid_pct=0.25,
                                                      img_cls=img_cls, **OPTS),
        "from_path_re": ImageDataLoaders.from_path_re(tmp_path / "names", files, r"/([A-Za-z]+)_\d+", valid_pct=0.25,
                                                      img_cls=img_cls, **OPTS),
        "from_lists": ImageDataLoaders.from_lists(tmp_path / "names", names, labels, valid_pct=0.25, img_cls=img_cls,
                                                  **OPTS),
        "from_df": ImageDataLoaders.from_df(df, tmp_path / "names", valid_pct=0.25, img_cls=img_cls, **OPTS),
        "from_csv": ImageDataLoaders.from_csv(tmp_path / "names", "labels.csv", valid_pct=0.25, img_cls=img_cls,
                                              **OPTS),
    }
    for name, dls in all_dls.items():
        assert _channels(dls) == (n, n), name
        assert len(dls.vocab) == 2, name


def test_img_cls_bw_is_the_luminance_and_survives_export(tmp_path):
    make_two_class_folder(tmp_path, n=6, layout="folders")
    bw = ImageDataLoaders.from_folder(tmp_path, img_cls=PILImageBW, item_tfms=Resize(16), **OPTS)
    rgb = ImageDataLoaders.from_folder(tmp_path, item_tfms=Resize(16), shuffle=False, **OPTS)
    x_bw, x_rgb = next(iter(bw.valid))[0], next(iter(rgb.valid))[0]
    assert x_bw.shape[1] == 1 and x_rgb.shape[1] == 3
    # red cats are darker in luminance than they are bright in red: the grey image is not one RGB channel
    assert not bool((x_bw[:, 0] == x_rgb[:, 0]).all())
    learn = vision_learner(bw, "resnet18", pretrained=False, progress=False, lin_ftrs=[8])
    inf = load_learner(learn.export(tmp_path / "bw.safetensors"))
    img = next((tmp_path / "valid" / "cat").iterdir())
    assert inf.predict(img)[0] in ("cat", "dog")
    assert learn.predict(img)[0] == inf.predict(img)[0]


def test_a_wrong_img_cls_is_a_clear_error(tmp_path):
    make_two_class_folder(tmp_path, n=4, layout="folders")
    with pytest.raises(TypeError, match="img_cls must be PILImage or PILImageBW"):
        ImageDataLoaders.from_folder(tmp_path, img_cls="L", **OPTS)


def test_mnist_tiny_from_csv_as_greyscale(data_path):
    path = data_path / "mnist_tiny"
    if not (path / "labels.csv").is_file():
        pytest.skip("mnist_tiny not in the data folder")
    dls = ImageDataLoaders.from_csv(path, "labels.csv", img_cls=PILImageBW, bs=16, num_workers=0, device="cpu")
    x, y = dls.one_batch()
    assert tuple(x.shape) == (16, 1, 28, 28)
    assert [str(v) for v in dls.vocab] == ["3", "7"]
