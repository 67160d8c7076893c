"""Predictions from uploads: bytes, io.BytesIO and PIL images for vision, a dict or a Series row for tables;
a bad upload gets an ImageLoadError that says what is wrong."""
from __future__ import annotations

import io

import pandas as pd
import pytest
import torch
from PIL import Image

from learnkit.vision import ImageLoadError, decode_image_bytes


def _png_bytes(color=(220, 40, 40), size=(32, 32), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def test_predict_accepts_bytes_bytesio_and_pil(image_learner, tmp_path):
    learn = image_learner
    path = tmp_path / "imgs" / "cat_0.png"
    raw = path.read_bytes()
    expected = learn.predict(path)
    for item in (raw, bytearray(raw), io.BytesIO(raw), Image.open(path)):
        label, idx, probs = learn.predict(item)
        assert label == expected[0] and idx == expected[1]
        assert torch.allclose(probs, expected[2], atol=1e-6), type(item).__name__


def test_test_dl_mixes_uploads_and_paths(image_learner, tmp_path):
    path = tmp_path / "imgs" / "dog_1.png"
    dl = image_learner.dls.test_dl([path, path.read_bytes(), io.BytesIO(path.read_bytes())])
    probs = image_learner.get_preds(dl=dl)[0]
    assert probs.shape == (3, 2)
    assert torch.allclose(probs[0], probs[1]) and torch.allclose(probs[0], probs[2])


def test_a_bytesio_already_read_is_rewound():
    buf = io.BytesIO(_png_bytes(size=(5, 4)))
    buf.read()
    assert decode_image_bytes(buf).shape == (3, 4, 5)


def test_jpeg_exif_and_grey_uploads():
    buf = io.BytesIO()
    Image.new("L", (6, 3), 128).save(buf, format="JPEG")
    x = decode_image_bytes(buf.getvalue())
    assert x.shape == (3, 3, 6) and x.dtype == torch.uint8


@pytest.mark.parametrize("data, message", [
    (b"", r"the upload is empty \(0 bytes\)"),
    (b"%PDF-1.7 not an image at all", r"the upload is not an image .*b'%PDF-1\.7"),
    (_png_bytes(size=(64, 64), fmt="JPEG")[:300], r"cannot decode the upload: .*truncated"),
    (_png_bytes(size=(64, 64))[:100], r"cannot decode the upload: .*truncated"),
])
def test_bad_uploads_say_what_is_wrong(image_learner, data, message):
    with pytest.raises(ImageLoadError, match=message):
        image_learner.predict(data)
    with pytest.raises(ImageLoadError, match=message):
        image_learner.predict(io.BytesIO(data))


def test_a_single_upload_must_be_wrapped_in_a_list(image_learner):
    with pytest.raises(TypeError, match=r"wrap it in a list: dls\.test_dl\(\[image\]\)"):
        image_learner.dls.test_dl(_png_bytes())
    with pytest.raises(TypeError, match="str"):
        decode_image_bytes("cat.png")


def test_tabular_predict_from_dict_and_series():
    from learnkit.tabular import TabularDataLoaders, tabular_learner
    df = pd.DataFrame({"job": ["a", "b"] * 20, "age": range(40), "y": ["no", "yes"] * 20})
    dls = TabularDataLoaders.from_df(df, cat_names="job", cont_names="age", y_names="y", bs=8, device="cpu")
    learn = tabular_learner(dls, layers=[8], progress=False)
    row_d, idx_d, probs_d = learn.predict({"job": "b", "age": 3})
    row_s, idx_s, probs_s = learn.predict(pd.Series({"job": "b", "age": 3}))
    assert idx_d == idx_s and torch.allclose(probs_d, probs_s) and row_d["job"] == "b"
    with pytest.raises(KeyError, match="age"):
        learn.predict({"job": "b"})
