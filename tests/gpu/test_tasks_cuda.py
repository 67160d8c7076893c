"""The five task pipelines end to end on CUDA: fp32, fp16 and bf16 (conv nets channels-last), ``compile()``,
``get_preds``/``predict``/``tta``, export on the GPU then load on the CPU with the same predictions, and
checkpoint resume with the CUDA RNG and the gradient scaler's state.

Every test is marked ``gpu`` and skips without CUDA (tests/conftest.py). The data is tiny and generated.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from learnkit import Callback, CrossEntropyLossFlat, DataLoaders, Learner, load_learner

pytestmark = pytest.mark.gpu
DEV = "cuda"
PRECISIONS = ["fp32", "fp16", "bf16"]
# Predictions of a model trained in mixed precision, run on the GPU under autocast, against the same weights
# run in fp32 on the CPU: half-precision rounding separates them.
TOL = {"fp32": 1e-3, "fp16": 3e-2, "bf16": 6e-2}


def _set_precision(learn: Learner, precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    if precision != "fp32":
        getattr(learn, f"to_{precision}")()
    assert learn.precision == precision


def _write_images(folder: Path, n: int, size: int = 32, prefix: str = "") -> list[Path]:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(n)
    files = []
    for i in range(n):
        cls = "ab"[i % 2]
        base = torch.full((3, size, size), 60 if cls == "a" else 190, dtype=torch.int32)
        img = (base + torch.randint(-40, 40, (3, size, size), generator=g)).clamp(0, 255).to(torch.uint8)
        f = folder / f"{prefix}{cls}_{i}.png"
        Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy()).save(f)
        files.append(f)
    return files


def _check_export_on_cpu(learn: Learner, items, tmp_path: Path, precision: str) -> None:
    """Export on the GPU, load on the CPU: the same predictions (up to half-precision rounding)."""
    probs_gpu = learn.get_preds(dl=learn.dls.test_dl(items))[0]
    assert probs_gpu.device.type == "cpu" and torch.isfinite(probs_gpu.float()).all()
    cpu = load_learner(learn.export(tmp_path / f"export_{precision}.safetensors"), device="cpu")
    assert cpu.device.type == "cpu" and all(p.device.type == "cpu" for p in cpu.model.parameters())
    assert cpu.precision == "fp32", "a CPU load must not keep half-precision autocast"
    probs_cpu = cpu.get_preds(dl=cpu.dls.test_dl(items))[0]
    err = float((probs_gpu.float() - probs_cpu.float()).abs().max())
    assert err <= TOL[precision], f"GPU vs CPU predictions differ by {err} ({precision})"


# --- vision ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", PRECISIONS)
def test_vision_on_cuda(tmp_path, precision):
    from learnkit.vision import ImageDataLoaders, Resize, aug_transforms, error_rate, get_image_files, vision_learner
    data = tmp_path / "data"
    _write_images(data, 64)
    dls = ImageDataLoaders.from_name_func(data, get_image_files(data), lambda n: n[0], item_tfms=Resize(32),
                                          batch_tfms=aug_transforms(), bs=16, device="cuda")
    learn = vision_learner(dls, "resnet18", pretrained=False, metrics=error_rate, progress=False)
    _set_precision(learn, precision)
    conv = next(m for m in learn.model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.device.type == DEV
    if precision != "fp32":
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    learn.fine_tune(1, base_lr=1e-3)
    probs, targs = learn.get_preds()
    assert probs.shape == (len(learn.dls.valid.dataset), 2) and torch.isfinite(probs.float()).all()
    tta_probs, tta_targs = learn.tta(n=2)
    assert tta_probs.shape == probs.shape and torch.equal(tta_targs, targs)
    label, idx, p = learn.predict(get_image_files(data)[0])
    assert label in ("a", "b") and abs(float(p.sum()) - 1) < 1e-3
    _check_export_on_cpu(learn, [str(f) for f in _write_images(tmp_path / "new", 4, size=40)], tmp_path, precision)


# --- segmentation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", PRECISIONS)
def test_segmentation_on_cuda(tmp_path, precision):
    from PIL import Image

    from learnkit.vision.segmentation import SegmentationDataLoaders, unet_learner
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(20):  # 16 training pairs: full batches of 4 (BatchNorm needs > 1 item)
        mask = torch.zeros(32, 32, dtype=torch.uint8)
        mask[:, : 6 + i] = 1
        img = (mask * 150 + 50).expand(3, 32, 32) + torch.randint(0, 30, (3, 32, 32), generator=g).to(torch.uint8)
        Image.fromarray(img.contiguous().permute(1, 2, 0).squeeze(-1).numpy()).save(data / "images" / f"f{i}.png")
        Image.fromarray(mask[None].contiguous().permute(1, 2, 0).squeeze(-1).numpy()).save(data / "labels" / f"f{i}_P.png")
    fnames = sorted((data / "images").glob("*.png"))
    dls = SegmentationDataLoaders.from_label_func(data, fnames, lambda o: data / "labels" / f"{Path(o).stem}_P.png",
                                                  codes=["bg", "fg"], bs=4, device="cuda")
    learn = unet_learner(dls, "resnet18", pretrained=False, progress=False)
    _set_precision(learn, precision)
    learn.fit_one_cycle(2, 1e-3)
    probs, targs = learn.get_preds()
    assert probs.shape[1:] == (2, 32, 32) and torch.isfinite(probs.float()).all()
    _check_export_on_cpu(learn, [str(f) for f in fnames[:3]], tmp_path, precision)


# --- text --------------------------------------------------------------------------------------------------
_POS = ["a great film, wonderful acting", "lovely story and great music", "wonderful, I loved it"]
_NEG = ["an awful film, terrible acting", "boring story and awful music", "terrible, I hated it"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_text_lstm_on_cuda(tmp_path, precision):
    from learnkit.text import TextDataLoaders, accuracy, text_classifier_learner
    df = pd.DataFrame([(t, "pos") for t in _POS * 8] + [(t, "neg") for t in _NEG * 8], columns=["text", "label"])
    dls = TextDataLoaders.from_df(df, tok="words", min_freq=1, bs=8, device="cuda")
    learn = text_classifier_learner(dls, "lstm", pretrained=False, metrics=accuracy, progress=False)
    _set_precision(learn, precision)
    learn.fit_one_cycle(2, 1e-2)
    probs, _ = learn.get_preds()
    assert torch.isfinite(probs.float()).all()
    label, _, _ = learn.predict("what a great film")
    assert label in ("pos", "neg")
    _check_export_on_cpu(learn, ["great fun", "awful mess", "an unseen word"], tmp_path, precision)


def test_text_transformer_on_cuda(tmp_path):
    transformers = pytest.importorskip("transformers")
    from learnkit.text import TextDataLoaders, text_classifier_learner
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "great", "film", "awful", "terrible", "lovely",
             "story", "and", "music", "boring", "i", "loved", "hated", "it", "wonderful", "acting", "an", ","]
    folder = tmp_path / "bert"
    transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True,
                               model_max_length=64).save_pretrained(str(folder))
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(cfg, add_pooling_layer=False).save_pretrained(str(folder))
    df = pd.DataFrame([(t, "pos") for t in _POS * 8] + [(t, "neg") for t in _NEG * 8], columns=["text", "label"])
    dls = TextDataLoaders.from_df(df, tok=str(folder), bs=8, device="cuda")
    learn = text_classifier_learner(dls, str(folder), progress=False)
    _set_precision(learn, "bf16" if torch.cuda.is_bf16_supported() else "fp16")
    learn.fit_one_cycle(1, 1e-3)
    _check_export_on_cpu(learn, ["great film", "awful acting"], tmp_path, learn.precision)


# --- tabular -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", PRECISIONS)
def test_tabular_on_cuda(tmp_path, precision):
    from learnkit.tabular import Categorify, FillMissing, Normalize, TabularDataLoaders, accuracy, tabular_learner
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"job": rng.choice(["clerk", "nurse", "pilot"], n), "age": rng.integers(18, 70, n).astype(float),
                       "hours": rng.normal(40, 8, n)})
    df.loc[::7, "age"] = np.nan
    df["y"] = np.where((df["job"] == "pilot") | (df["hours"] > 45), ">=50k", "<50k")
    dls = TabularDataLoaders.from_df(df, cat_names=["job"], cont_names=["age", "hours"], y_names="y",
                                     procs=[Categorify, FillMissing, Normalize], bs=32, device="cuda")
    learn = tabular_learner(dls, layers=[32, 16], metrics=accuracy, progress=False)
    _set_precision(learn, precision)
    learn.fit_one_cycle(3, 1e-2)
    assert learn.recorder.values[-1][-1] > 0.75
    _check_export_on_cpu(learn, df.iloc[:20].drop(columns="y"), tmp_path, precision)


# --- collab ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", PRECISIONS)
def test_collab_on_cuda(tmp_path, precision):
    from learnkit.collab import CollabDataLoaders, collab_learner
    rng = np.random.default_rng(0)
    users, items = rng.integers(1, 30, 800), rng.integers(1, 40, 800)
    ratings = pd.DataFrame({"user": users, "item": items,
                            "rating": np.clip((users % 5) + (items % 3) + rng.normal(0, 0.5, 800), 0.5, 5.0)})
    ratings = ratings.drop_duplicates(["user", "item"])
    dls = CollabDataLoaders.from_df(ratings, bs=64, device="cuda")
    learn = collab_learner(dls, n_factors=8, y_range=(0, 5.5), progress=False)
    _set_precision(learn, precision)
    learn.fit_one_cycle(3, 5e-3)
    assert torch.isfinite(torch.tensor(learn.recorder.values[-1][:2])).all()
    _check_export_on_cpu(learn, ratings.head(8)[["user", "item"]], tmp_path, precision)


# --- compile and resume ------------------------------------------------------------------------------------
def _mlp_dls(n: int = 1024) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g)
    y = (x[:, :4].sum(1) > 0).long()
    return DataLoaders.from_dsets(TensorDataset(x[:768], y[:768]), TensorDataset(x[768:], y[768:]), bs=64,
                                  device="cuda")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 2))


def test_compile_then_export_loads_on_cpu(tmp_path):
    learn = Learner(_mlp_dls(), _mlp(), loss_func=CrossEntropyLossFlat(), lr=1e-2, progress=False)
    learn.to_bf16() if torch.cuda.is_bf16_supported() else learn.to_fp16()
    learn.compile()
    learn.fit_one_cycle(2)
    assert learn.recorder.values[-1][0] < 0.6
    path = learn.save(tmp_path / "compiled")
    plain = Learner(_mlp_dls(), _mlp(), loss_func=CrossEntropyLossFlat(), progress=False, device="cpu")
    plain.load(path, with_opt=False)  # the compiled wrapper's names must not leak into the checkpoint
    for (k, a), (k2, b) in zip(learn.model.state_dict().items(), plain.model.state_dict().items()):
        assert k == k2 and torch.equal(a.cpu(), b), k


class _Interrupt(Callback):
    def __init__(self, epoch: int):
        self.at = epoch

    def before_epoch(self):
        if self.learn.epoch == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resume_restores_cuda_rng_and_scaler(tmp_path, precision):
    """Dropout draws from the CUDA RNG and fp16 scales the loss: a run interrupted after epoch 2 and resumed
    ends with the weights (and loss scale) of an uninterrupted run."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        def make(folder: str) -> Learner:
            learn = Learner(_mlp_dls(), _mlp(), loss_func=CrossEntropyLossFlat(), lr=1e-2, progress=False,
                            path=tmp_path / folder)
            if precision == "fp16":
                learn.to_fp16()
            return learn

        torch.cuda.manual_seed_all(1)
        ref = make("ref")
        ref.fit_one_cycle(4, resume="auto")
        torch.cuda.manual_seed_all(1)
        run = make("run")
        with pytest.raises(KeyboardInterrupt):
            run.fit_one_cycle(4, cbs=_Interrupt(2), resume="auto")
        torch.cuda.manual_seed_all(123)  # a different CUDA RNG state: the checkpoint must bring the right one back
        resumed = make("run")
        resumed.fit_one_cycle(4, resume="auto")
        for k, v in ref.model.state_dict().items():
            assert torch.allclose(v, resumed.model.state_dict()[k], atol=1e-6), k
        if precision == "fp16":
            assert resumed.scaler.get_scale() == ref.scaler.get_scale()
    finally:
        torch.use_deterministic_algorithms(False)
