"""Small-data probes: does ``fine_tune`` with fastai's recipe reach a linear probe on the frozen features?

For each small task built from ``../shared/data`` (``--data`` / ``$LEARNKIT_DATA``) one run prints, side by side:

- **baseline**: the trivial constant predictor fitted on the training set (majority class, "absent" for every
  label, the training mean, the majority pixel class, the majority sentiment);
- **probe**: a scikit-learn linear model on the frozen, pretrained features of the same body learnkit fine-tunes
  (``vision_learner(dls, "efficientnet_lite0").model.features``: eval mode, concat-pooled, the same split and
  item transforms, no augmentation). Single-label: ``LogisticRegression``; multi-label: one logistic regression
  per label; regression: ``Ridge``; the regularisation strength of each is chosen by 3-fold cross-validation on
  the *training* set only (the validation set is never used to fit or tune the probe). Segmentation: a
  per-pixel linear softmax on the U-Net encoder's feature maps upsampled to the mask size. Text: logistic
  regression on the frozen MiniLM encoder's mean-pooled sentence features;
- **learnkit**: learnkit's ``fine_tune`` on fastai's recipe for that kind of task, unchanged (``RECIPES``);
- **fastai** (when ``--fastai-python`` exists): fastai 2.8 on the same split, items, recipe and starting
  weights, run in its own venv through ``_harness.Worker`` (as ``vs_fastai.py`` does); for the image tasks
  (breeds, multilabel, regression) only so far: segmentation and text show "n/a".

Every metric is computed here, the same way for every column, from validation-set predictions
(``get_preds``): ``error_rate``; ``accuracy_multi`` (threshold 0.5 on the sigmoid, over all labels); R²
(``sklearn.metrics.r2_score``); pixel accuracy over *all* pixels (void included); accuracy. ``--seeds`` set the
weight-init/dropout/augmentation seed of learnkit and fastai; the split is fixed (seed 42), so the baseline and
the probe do not depend on it. The table shows the mean and, in brackets, the range over seeds, and
"fine_tune >= probe?" per issue 24: single-label error <= the probe's; multi-label accuracy_multi >= probe - 0.01;
regression R² >= 0.5 and within 0.1 of the probe's; segmentation / text: the metric >= the probe's; and in every
case better than the baseline.

    python benchmarks/probes.py [--tasks breeds multilabel regression segmentation text] [--seeds 0 1 2]
                                [--fast] [--fastai-python PATH] [--json PATH] [--data DIR]

The tasks (``TASKS``; ``build_task(name, root, seed)`` gives ``(dls, learner_factory, recipe)`` for scripts):

- ``breeds``: 37 pet breeds from the 940 photos in ``pets/images`` (34 breeds with 10 photos, 3 with 200),
  labelled by ``RegexLabeller(r'(.+)_\\d+.jpg$')`` on the file name, fastbook ch. 5's presizing DataBlock at
  a smaller size (``Resize(160)``, ``aug_transforms(size=128, min_scale=0.75)``: the 460/224 of the chapter
  take 5-6 min per run here, see RESULTS.md), ``fine_tune(2)``;
- ``multilabel``: the 200 COCO photos of ``coco_tiny`` (128x128), labelled with the set of object classes with
  a box in ``train.json`` (6 classes: chair 107, book 53, vase 42, couch 27, tv 21, remote 14), ``Resize(128)``
  (fastbook ch. 6 uses ``RandomResizedCrop(128, min_scale=0.35)``; a fixed resize keeps the frozen phase
  cacheable), ``bs=16``, ``fine_tune(4)``;
- ``regression``: the 200 CamVid frames of ``camvid`` (150 + 50 from its train/val folders, pooled and split at
  random like every task here), the target is the fraction of the frame's pixels labelled ``Building`` in its
  mask (mean 0.24, sd 0.13), ``Resize((96, 128))``, ``RegressionBlock``, ``y_range=(0, 1)``, ``bs=16``,
  ``fine_tune(4)``. (coco_tiny's box sizes, counts or positions were tried first: no linear probe on pooled
  features gets R² above 0.2 on them. CamVid's own train/val folders are different drives, whose building
  fractions differ so much that every constant and probe has R² < 0; a random split puts neighbouring
  frames of the same drive on both sides, which flatters every column alike.)
- ``segmentation``: ``camvid_tiny`` (100 frames, 32 codes), fastai's quick start
  ``unet_learner(dls, arch).fine_tune(N)``;
- ``text``: the 1,000-review IMDB sample (``texts.csv``, its ``is_valid`` split), learnkit's MiniLM text
  classifier recipe (``examples/imdb_sample.py``).

``--fast`` shrinks every task (fewer items, one epoch each phase) for smoke tests; its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import REPO, Worker, data_root, machine, serve  # noqa: E402

TASKS = ("breeds", "multilabel", "regression", "segmentation", "text")
#: the metric of each task and whether higher is better
METRIC: dict[str, tuple[str, bool]] = {"breeds": ("error_rate", False), "multilabel": ("accuracy_multi", True),
                                       "regression": ("r2", True), "segmentation": ("pixel_accuracy", True),
                                       "text": ("accuracy", True)}
#: fastai's recipe per task; ``--fast`` overrides with ``FAST``
RECIPES: dict[str, dict[str, Any]] = {
    "breeds": {"arch": "efficientnet_lite0", "presize": 160, "size": 128, "min_scale": 0.75, "bs": 64, "epochs": 2},
    "multilabel": {"arch": "efficientnet_lite0", "size": 128, "bs": 16, "epochs": 4},
    "regression": {"arch": "efficientnet_lite0", "size": [96, 128], "bs": 16, "epochs": 4, "y_range": [0.0, 1.0]},
    "segmentation": {"arch": "efficientnet_lite0", "bs": 8, "epochs": 8},
    "text": {"arch": "minilm", "bs": 32, "epochs": 3, "lr": 1e-3, "freeze_epochs": 5, "unfreeze_to": -3,
             "head_lr": 1e-2},
}
FAST: dict[str, dict[str, Any]] = {
    "breeds": {"presize": 96, "size": 64, "epochs": 1}, "multilabel": {"size": 64, "epochs": 1},
    "regression": {"size": [48, 64], "epochs": 1}, "segmentation": {"epochs": 1},
    "text": {"epochs": 1, "freeze_epochs": 1},
}
VALID_PCT, SPLIT_SEED = 0.2, 42
BREED_RE = r"(.+)_\d+.jpg$"


# --- the items and the split: plain pandas/numpy, so that the fastai worker builds exactly the same ---------------
def _valid_mask(n: int, pct: float = VALID_PCT, seed: int = SPLIT_SEED) -> list[bool]:
    import numpy as np
    idx = set(np.random.default_rng(seed).permutation(n)[: int(round(n * pct))].tolist())
    return [i in idx for i in range(n)]


def breeds_items(root: Path, fast: bool = False) -> tuple[list[Path], set[str]]:
    """The pet photos (sorted) and the file names of the validation ones. ``fast``: the 3 breeds with 200
    photos, every 5th photo."""
    paths = sorted((root / "pets" / "images").glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no photos in {root / 'pets' / 'images'}: pass --data (the folder holding pets/)")
    if fast:
        paths = [p for p in paths if p.name.startswith(("Abyssinian_", "Bengal_", "american_bulldog_"))][::5]
    valid = {p.name for p, v in zip(paths, _valid_mask(len(paths))) if v}
    return paths, valid


def coco_table(root: Path, fast: bool = False):
    """coco_tiny's photos with ``labels`` (the classes with a box, space-separated), ``target`` (sqrt of the
    largest box's area over the image's 128x128) and ``is_valid``."""
    import pandas as pd
    folder = root / "coco_tiny"
    meta = json.loads((folder / "train.json").read_text())
    names = {c["id"]: c["name"] for c in meta["categories"]}
    boxes: dict[int, list[dict[str, Any]]] = {}
    for a in meta["annotations"]:
        boxes.setdefault(a["image_id"], []).append(a)
    rows = []
    for im in sorted(meta["images"], key=lambda m: m["file_name"]):
        bs = boxes.get(im["id"], [])
        rows.append({"fname": str(folder / "train" / im["file_name"]),
                     "labels": " ".join(sorted({names[b["category_id"]] for b in bs})),
                     "target": math.sqrt(max((b["bbox"][2] * b["bbox"][3] for b in bs), default=0.0) / (128 * 128))})
    df = pd.DataFrame(rows)
    if fast:
        df = df.iloc[::4].reset_index(drop=True)
    df["is_valid"] = _valid_mask(len(df))
    return df


def camvid_table(root: Path, fast: bool = False, target: str = "Building"):
    """camvid's 200 frames with ``target``: the fraction of the mask's pixels labelled ``target``, and
    ``is_valid``."""
    import numpy as np
    import pandas as pd
    from PIL import Image
    folder = root / "camvid"
    codes = (folder / "codes.txt").read_text().split()
    code = codes.index(target)
    rows = []
    for sub in ("train", "val"):
        for f in sorted((folder / sub).glob("*.png")):
            mask = np.asarray(Image.open(folder / f"{sub}annot" / f.name))
            rows.append({"fname": str(f), "target": float(np.mean(mask == code))})
    if not rows:
        raise FileNotFoundError(f"no frames in {folder}/train or /val: pass --data (the folder holding camvid/)")
    df = pd.DataFrame(rows)
    if fast:
        df = df.iloc[::4].reset_index(drop=True)
    df["is_valid"] = _valid_mask(len(df))
    return df


class InSet:
    """``FuncSplitter`` test: is the item's file name one of ``names``? (a class, so loader workers can pickle it)"""

    def __init__(self, names: set[str]):
        self.names = frozenset(names)

    def __call__(self, item: Any) -> bool:
        return Path(item).name in self.names


# --- metrics: numpy, the same for every column ----------------------------------------------------------------------
def error_rate(probs: Any, y: Any) -> float:
    import numpy as np
    return float(np.mean(np.asarray(probs).argmax(1) != np.asarray(y)))


def accuracy(probs: Any, y: Any) -> float:
    return 1.0 - error_rate(probs, y)


def accuracy_multi(probs: Any, y: Any, thresh: float = 0.5) -> float:
    """Mean over all (item, label) pairs of ``(prob > thresh) == label`` (fastai's with ``sigmoid=True``)."""
    import numpy as np
    return float(np.mean((np.asarray(probs) > thresh) == (np.asarray(y) > 0.5)))


def r2(pred: Any, y: Any) -> float:
    import numpy as np
    from sklearn.metrics import r2_score
    return float(r2_score(np.asarray(y, dtype=float).reshape(-1), np.asarray(pred, dtype=float).reshape(-1)))


def pixel_accuracy(probs: Any, y: Any) -> float:
    """Over all pixels, void included: ``probs`` ``[N, C, H, W]`` (or class ids ``[N, H, W]``), ``y`` ``[N, H, W]``."""
    import numpy as np
    p = np.asarray(probs)
    pred = p.argmax(1) if p.ndim == 4 else p
    return float(np.mean(pred == np.asarray(y)))


def score(task: str, preds: Any, y: Any) -> float:
    """The task's metric (``METRIC``) of validation predictions."""
    f = {"breeds": error_rate, "multilabel": accuracy_multi, "regression": r2, "segmentation": pixel_accuracy,
         "text": accuracy}[task]
    return f(preds, y)


def baseline(task: str, y_train: Any, y_valid: Any) -> float:
    """The constant predictor fitted on ``y_train``, scored on ``y_valid`` (targets as ``get_preds`` gives them)."""
    import numpy as np
    yt, yv = np.asarray(y_train), np.asarray(y_valid)
    if task in ("breeds", "text", "segmentation"):
        n = int(max(yt.max(), yv.max())) + 1
        onehot = np.zeros((n,))
        onehot[np.bincount(yt.reshape(-1).astype(int), minlength=n).argmax()] = 1.0
        if task == "segmentation":
            return pixel_accuracy(np.full(yv.shape, onehot.argmax()), yv)
        return score(task, np.tile(onehot, (len(yv), 1)), yv)
    if task == "multilabel":
        return accuracy_multi(np.zeros(yv.shape), yv)
    return r2(np.full(yv.shape, yt.astype(float).mean()), yv)


def beats(task: str, tuned: float, probe: float, base: float) -> bool:
    """Issue 24's bar for ``fine_tune``: better than the baseline, and single-label error <= the probe's,
    accuracy_multi >= probe - 0.01, R² >= 0.5 and >= probe - 0.1, otherwise >= the probe's."""
    if task == "breeds":
        return tuned < base and tuned <= probe
    if not tuned > base:
        return False
    if task == "multilabel":
        return tuned >= probe - 0.01
    if task == "regression":
        return tuned >= 0.5 and tuned >= probe - 0.1
    return tuned >= probe


# --- learnkit: the tasks as DataBlocks, fastai's recipe, the probe ----------------------------------------------------
def recipe_for(name: str, fast: bool = False) -> dict[str, Any]:
    """The task's recipe (``RECIPES``), shrunk by ``FAST`` when ``fast``."""
    if name not in RECIPES:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return {**RECIPES[name], **(FAST[name] if fast else {}), "fast": fast}


def _vision_dls(name: str, root: Path, recipe: dict[str, Any]):
    from learnkit.vision import (CategoryBlock, ColReader, ColSplitter, DataBlock, FuncSplitter, ImageBlock,
                                 MultiCategoryBlock, RegexLabeller, RegressionBlock, Resize, aug_transforms,
                                 using_attr)
    if name == "breeds":
        paths, valid = breeds_items(root, recipe["fast"])
        block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=lambda _: paths, splitter=FuncSplitter(InSet(valid)),
                          get_y=using_attr(RegexLabeller(BREED_RE), "name"), item_tfms=Resize(recipe["presize"]),
                          batch_tfms=aug_transforms(size=recipe["size"], min_scale=recipe["min_scale"]))
        return block.dataloaders(root / "pets" / "images", bs=recipe["bs"])
    df = coco_table(root, recipe["fast"]) if name == "multilabel" else camvid_table(root, recipe["fast"])
    y = ((MultiCategoryBlock, ColReader("labels", label_delim=" ")) if name == "multilabel"
         else (RegressionBlock, ColReader("target")))
    block = DataBlock(blocks=(ImageBlock, y[0]), get_x=ColReader("fname"), get_y=y[1], splitter=ColSplitter("is_valid"),
                      item_tfms=Resize(_size(recipe["size"])))
    return block.dataloaders(df, bs=recipe["bs"])


def _size(size: Any) -> Any:
    return tuple(size) if isinstance(size, list) else size


def _segmentation_dls(root: Path, recipe: dict[str, Any]):
    from learnkit.vision.segmentation import SegmentationDataLoaders, get_image_files
    path = root / "camvid_tiny"
    files = get_image_files(path / "images")
    if recipe["fast"]:
        files = files[:20]
    return SegmentationDataLoaders.from_label_func(path, files, label_func=_CamvidLabel(path), codes=path / "codes.txt",
                                                   bs=recipe["bs"])


class _CamvidLabel:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, o: Path) -> Path:
        return self.path / "labels" / f"{o.stem}_P{o.suffix}"


def _text_dls(root: Path, recipe: dict[str, Any]):
    import pandas as pd
    from learnkit.text import TextDataLoaders
    df = pd.read_csv(root / "imdb" / "texts.csv")
    if recipe["fast"]:
        df = pd.concat([df[~df.is_valid].head(80), df[df.is_valid].head(20)])
    return TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_col="is_valid", tok="minilm",
                                   max_len=64 if recipe["fast"] else None, bs=recipe["bs"])


def build_task(name: str, root: Path, seed: int = 0, fast: bool = False) -> tuple[Any, Callable[..., Any], dict[str, Any]]:
    """``(dls, learner_factory, recipe)`` for task ``name`` on the data under ``root``: ``learner_factory()`` is
    fastai's learner call for that kind of task on ``dls`` (``vision_learner(dls, arch)``, ``unet_learner``,
    ``text_classifier_learner``; extra keyword arguments go to it) and ``fit(learn, recipe)`` runs the recipe's
    ``fine_tune``. ``seed`` seeds the weight initialisation, dropout and augmentation (``set_seed``); the split is
    fixed."""
    from learnkit import set_seed
    recipe = recipe_for(name, fast)
    set_seed(seed)
    if name == "segmentation":
        from learnkit.vision.segmentation import unet_learner
        dls = _segmentation_dls(root, recipe)
        return dls, lambda **kw: unet_learner(dls, recipe["arch"], progress=False, **kw), recipe
    if name == "text":
        from learnkit.text import text_classifier_learner
        dls = _text_dls(root, recipe)
        return dls, lambda **kw: text_classifier_learner(dls, recipe["arch"], progress=False, **kw), recipe
    from learnkit.vision import vision_learner
    dls = _vision_dls(name, root, recipe)
    extra = {"y_range": tuple(recipe["y_range"])} if "y_range" in recipe else {}
    return dls, lambda **kw: vision_learner(dls, recipe["arch"], progress=False, **extra, **kw), recipe


def fit(learn: Any, recipe: dict[str, Any]) -> None:
    """The recipe's ``fine_tune`` call (default learning rate except for the text recipe's own)."""
    if "freeze_epochs" in recipe:
        learn.fine_tune(recipe["epochs"], recipe["lr"], freeze_epochs=recipe["freeze_epochs"],
                        unfreeze_to=recipe["unfreeze_to"], head_lr=recipe["head_lr"])
    else:
        learn.fine_tune(recipe["epochs"])


def valid_preds(learn: Any) -> tuple[Any, Any]:
    """``(predictions, targets)`` of the validation set as numpy arrays."""
    preds, targs = learn.get_preds(ds_idx=1)[:2]
    return preds.float().numpy(), targs.numpy()


def run_learnkit(name: str, root: Path, seed: int, fast: bool = False) -> dict[str, Any]:
    """learnkit's ``fine_tune`` on the recipe: the metric and the wall time (data, learner and training)."""
    t0 = time.perf_counter()
    dls, make, recipe = build_task(name, root, seed, fast)
    learn = make()
    fit(learn, recipe)
    seconds = time.perf_counter() - t0
    preds, y = valid_preds(learn)
    return {"metric": score(name, preds, y), "seconds": seconds}


# --- the probe ----------------------------------------------------------------------------------------------------------
def _plain_batches(learn: Any, ds_idx: int):
    """The batches of split ``ds_idx`` in dataset order, on the device, with the validation transforms (no
    augmentation)."""
    from learnkit.vision import make_loader, to_device
    dl = learn.dls[ds_idx]
    plain = make_loader(dl.dataset, 32, shuffle=False, collate_fn=dl.collate_fn,
                        num_workers=getattr(dl, "num_workers", 0), device=learn.device)
    for batch in plain:
        yield learn.dls.on_device(to_device(tuple(batch), learn.device), training=False)


def _pooled(learn: Any, x: Any) -> Any:
    """The frozen body's pooled features: the vision classifier's ``features`` (concat pool of the body), or the
    text transformer's masked mean over its last layer (every stage but the head)."""
    model = learn.model
    if hasattr(model, "features"):
        return model.features(x)
    return model.run_stages({"ids": x}, 0, model.n_stages - 1)["hidden"]


def frozen_features(learn: Any, ds_idx: int) -> tuple[Any, Any]:
    """Pooled features of the pretrained body (eval mode) for every item of split ``ds_idx`` in order, with the
    validation transforms (no augmentation), and the targets: numpy arrays."""
    import numpy as np
    import torch
    learn.model.eval()
    feats, targs = [], []
    with torch.inference_mode():
        for batch in _plain_batches(learn, ds_idx):
            feats.append(_pooled(learn, batch[0]).float().cpu().numpy())
            targs.append(batch[1].cpu().numpy())
    return np.concatenate(feats), np.concatenate(targs)


def _pixel_features(learn: Any, x: Any, size: Any) -> Any:
    """The U-Net encoder's feature maps (every stride), upsampled bilinearly to ``size`` and concatenated:
    ``[B, sum of channels, H, W]``."""
    import torch
    from torch.nn import functional as F
    maps = learn.model.encoder(x.contiguous(memory_format=torch.channels_last))
    return torch.cat([F.interpolate(m.float(), size=tuple(size), mode="bilinear", align_corners=False) for m in maps], 1)


def segmentation_probe(learn: Any, per_image: int = 200, seed: int = SPLIT_SEED) -> dict[str, Any]:
    """A per-pixel multinomial logistic regression on the frozen encoder's upsampled feature maps, fitted on
    ``per_image`` random pixels of each training image (void included, as a class like any other), scored on
    every validation pixel; with the majority-pixel-class baseline."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(seed)
    learn.model.eval()
    xs, ys, y_all = [], [], []
    with torch.inference_mode():
        for batch in _plain_batches(learn, 0):
            y = batch[1].cpu().numpy()
            f = _pixel_features(learn, batch[0], y.shape[-2:]).cpu().numpy()
            f = f.transpose(0, 2, 3, 1).reshape(len(y), -1, f.shape[1])
            for i in range(len(y)):
                pick = rng.choice(f.shape[1], size=min(per_image, f.shape[1]), replace=False)
                xs.append(f[i, pick])
                ys.append(y[i].reshape(-1)[pick])
            y_all.append(y)
        scaler = StandardScaler().fit(np.concatenate(xs))
        model = LogisticRegression(max_iter=300).fit(scaler.transform(np.concatenate(xs)), np.concatenate(ys))
        right = total = 0
        y_valid = []
        for batch in _plain_batches(learn, 1):
            y = batch[1].cpu().numpy()
            f = _pixel_features(learn, batch[0], y.shape[-2:]).cpu().numpy()
            pred = model.predict(scaler.transform(f.transpose(0, 2, 3, 1).reshape(-1, f.shape[1])))
            right += int((pred == y.reshape(-1)).sum())
            total += y.size
            y_valid.append(y)
    y_train, y_valid_arr = np.concatenate(y_all), np.concatenate(y_valid)
    return {"probe": right / total, "baseline": baseline("segmentation", y_train, y_valid_arr),
            "n_train": len(y_train), "n_valid": len(y_valid_arr)}


def fit_probe(task: str, x_train: Any, y_train: Any, x_valid: Any) -> Any:
    """The linear probe's validation predictions (probabilities, or values for regression), its regularisation
    chosen by 3-fold cross-validation on the training set."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    grid = {"logisticregression__C": [1e-3, 1e-2, 1e-1, 1.0]}

    def logistic(y: Any) -> Any:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        counts = np.bincount(y.astype(int))
        if min(c for c in counts if c) >= 3:
            model = GridSearchCV(model, grid, cv=3)
        return model.fit(x_train, y)

    if task == "regression":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))
        return model.fit(x_train, y_train.reshape(len(y_train), -1)[:, 0]).predict(x_valid)
    if task == "multilabel":
        cols = []
        for j in range(y_train.shape[1]):
            yj = y_train[:, j].astype(int)
            cols.append(np.full(len(x_valid), float(yj[0])) if yj.min() == yj.max()
                        else logistic(yj).predict_proba(x_valid)[:, 1])
        return np.stack(cols, 1)
    model = logistic(y_train.astype(int))
    probs = np.zeros((len(x_valid), int(max(y_train.max() + 1, 1))))
    probs[:, model.classes_] = model.predict_proba(x_valid)
    return probs


def run_probe(name: str, root: Path, fast: bool = False) -> dict[str, Any]:
    """The baseline and the linear probe of task ``name`` (both fitted on the training set only)."""
    t0 = time.perf_counter()
    dls, make, _ = build_task(name, root, 0, fast)
    learn = make()
    if name == "segmentation":
        return {**segmentation_probe(learn), "probe_seconds": time.perf_counter() - t0,
                "probe_kind": "per-pixel logistic on upsampled encoder maps"}
    x_train, y_train = frozen_features(learn, 0)
    x_valid, y_valid = frozen_features(learn, 1)
    preds = fit_probe(name, x_train, y_train, x_valid)
    return {"probe": score(name, preds, y_valid), "baseline": baseline(name, y_train, y_valid),
            "n_train": len(y_train), "n_valid": len(y_valid), "probe_seconds": time.perf_counter() - t0,
            "probe_kind": {"breeds": "LogisticRegression", "multilabel": "logistic per label",
                           "regression": "Ridge", "text": "LogisticRegression on mean-pooled MiniLM"}[name]}


# --- fastai: the same items, split, recipe and starting weights, in its own venv -----------------------------------------
def _fa_dls(name: str, root: Path, recipe: dict[str, Any]):
    from fastai.vision.all import (CategoryBlock, ColReader, ColSplitter, DataBlock, FuncSplitter, ImageBlock,
                                   MultiCategoryBlock, Normalize, RegexLabeller, RegressionBlock, Resize,
                                   aug_transforms, using_attr)
    norm = Normalize.from_stats((0.5,) * 3, (0.5,) * 3)  # the offline lite0 weights' statistics (as learnkit's)
    if name == "breeds":
        paths, valid = breeds_items(root, recipe["fast"])
        block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=lambda _: paths, splitter=FuncSplitter(InSet(valid)),
                          get_y=using_attr(RegexLabeller(BREED_RE), "name"), item_tfms=Resize(recipe["presize"]),
                          batch_tfms=[*aug_transforms(size=recipe["size"], min_scale=recipe["min_scale"]), norm])
        return block.dataloaders(root / "pets" / "images", bs=recipe["bs"])
    df = coco_table(root, recipe["fast"]) if name == "multilabel" else camvid_table(root, recipe["fast"])
    y = ((MultiCategoryBlock, ColReader("labels", label_delim=" ")) if name == "multilabel"
         else (RegressionBlock, ColReader("target")))
    block = DataBlock(blocks=(ImageBlock, y[0]), get_x=ColReader("fname"), get_y=y[1], splitter=ColSplitter("is_valid"),
                      item_tfms=Resize(_size(recipe["size"])), batch_tfms=[norm])
    return block.dataloaders(df, bs=recipe["bs"])


def fa_run(task: str, data: str, seed: int, fast: bool, weights: str) -> dict[str, Any]:
    """fastai's ``vision_learner(dls, arch).fine_tune(N)`` from learnkit's lite0 ImageNet weights."""
    import torch
    from fastai.vision.all import set_seed, vision_learner
    from safetensors.torch import load_file
    if task not in ("breeds", "multilabel", "regression"):
        raise ValueError(f"fastai side of {task!r} is not implemented")
    recipe = recipe_for(task, fast)
    set_seed(seed)
    t0 = time.perf_counter()
    dls = _fa_dls(task, Path(data), recipe)
    extra = {"y_range": tuple(recipe["y_range"])} if "y_range" in recipe else {}
    learn = vision_learner(dls, "tf_efficientnet_lite0", pretrained=False, **extra)
    learn.model[0].model.load_state_dict(load_file(weights), strict=True)  # fastai's TimmBody holds the timm model
    learn.freeze()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(recipe["epochs"])
        seconds = time.perf_counter() - t0
        preds, targs = learn.get_preds(ds_idx=1)
    y = targs.numpy()
    return {"metric": score(task, preds.float().numpy(), y), "seconds": seconds, "torch_threads": torch.get_num_threads()}


def _fa_ready() -> dict[str, Any]:
    import fastai
    import fastai.vision.all  # noqa: F401
    import torch
    return {"version": f"fastai {fastai.__version__}", "torch": torch.__version__}


# --- the driver ----------------------------------------------------------------------------------------------------------
def summarise(values: list[float]) -> dict[str, float]:
    """Mean, min and max of a column over seeds."""
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)} if values else {}


def _cell(s: dict[str, float]) -> str:
    if not s:
        return "n/a"
    if s["min"] == s["max"]:
        return f"{s['mean']:.4f}"
    return f"{s['mean']:.4f} ({s['min']:.4f}-{s['max']:.4f})"


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """The side-by-side table: one row per task (mean and range over seeds)."""
    head = ["task", "metric", "n train/valid", "baseline", "probe", "learnkit fine_tune", "fastai fine_tune",
            "lk s/run", "fine_tune >= probe?"]
    rows = [head]
    for task, r in results.items():
        name, higher = METRIC[task]
        lk, fa = summarise(r["learnkit"]), summarise(r["fastai"])
        secs = statistics.fmean(r["learnkit_seconds"]) if r["learnkit_seconds"] else float("nan")
        rows.append([task, f"{name} ({'higher' if higher else 'lower'} better)", f"{r['n_train']}/{r['n_valid']}",
                     f"{r['baseline']:.4f}", f"{r['probe']:.4f}", _cell(lk), _cell(fa), f"{secs:.0f}",
                     "n/a" if not lk else ("yes" if r["fine_tune_ge_probe"] else "NO")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def run_task(task: str, root: Path, seeds: list[int], fast: bool, fastai: Worker | None,
             weights: Path | None) -> dict[str, Any]:
    """Baseline, probe, learnkit (and fastai) over ``seeds`` for one task."""
    res: dict[str, Any] = {**run_probe(task, root, fast), "seeds": seeds, "learnkit": [], "learnkit_seconds": [],
                           "fastai": [], "fastai_seconds": [], "recipe": recipe_for(task, fast)}
    print(f"{task}: baseline {res['baseline']:.4f}, probe ({res['probe_kind']}) {res['probe']:.4f} "
          f"[{res['probe_seconds']:.0f} s]", flush=True)
    for seed in seeds:
        lk = run_learnkit(task, root, seed, fast)
        res["learnkit"].append(lk["metric"])
        res["learnkit_seconds"].append(lk["seconds"])
        print(f"  seed {seed}: learnkit {lk['metric']:.4f} [{lk['seconds']:.0f} s]", flush=True)
        if fastai is not None and weights is not None and task in ("breeds", "multilabel", "regression"):
            fa = fastai.call({"job": "run", "args": {"task": task, "data": str(root), "seed": seed, "fast": fast,
                                                      "weights": str(weights)}})
            res["fastai"].append(fa["metric"])
            res["fastai_seconds"].append(fa["seconds"])
            print(f"  seed {seed}: fastai   {fa['metric']:.4f} [{fa['seconds']:.0f} s]", flush=True)
    mean = statistics.fmean(res["learnkit"])
    res["fine_tune_ge_probe"] = beats(task, mean, res["probe"], res["baseline"])
    return res


def _default_fastai_python() -> str | None:
    for cand in ("/work/bench-venv/bin/python", str(REPO / "bench-venv" / "bin" / "python")):
        if Path(cand).exists():
            return cand
    return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="learnkit/fastai run seeds (the split is fixed)")
    ap.add_argument("--fast", action="store_true", help="tiny versions of every task (smoke test; numbers mean nothing)")
    ap.add_argument("--data", default=None, help="the data root (default: $LEARNKIT_DATA, else ../shared/data)")
    ap.add_argument("--fastai-python", default=_default_fastai_python(),
                    help="python of a venv with fastai (benchmarks/requirements-peers.txt); 'none' to skip fastai")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each side")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    root = data_root(args.data)
    print(f"machine: {machine()}\nstarted {time.strftime('%Y-%m-%d %H:%M:%S')}; tasks {args.tasks}; seeds {args.seeds}"
          f"{'; --fast' if args.fast else ''}", flush=True)
    fastai, weights = None, None
    fa_py = None if args.fastai_python in (None, "none") else args.fastai_python
    if fa_py and Path(fa_py).exists() and any(t in ("breeds", "multilabel", "regression") for t in args.tasks):
        from vs_fastai import _lite0_weights
        weights = Path(tempfile.mkdtemp(prefix="lk-probes-")) / "lite0.safetensors"
        _lite0_weights(weights)
        fastai = Worker("fastai", fa_py, Path(__file__), args.threads)
        print(f"fastai side: {fastai.started['version']} (torch {fastai.started['torch']}) via {fa_py}", flush=True)
    elif fa_py:
        print(f"fastai side skipped: {fa_py} not found", flush=True)
    results: dict[str, Any] = {}
    try:
        for task in args.tasks:
            results[task] = run_task(task, root, args.seeds, args.fast, fastai, weights)
    finally:
        if fastai is not None:
            fastai.close()
    print("\n" + format_table(results))
    out = {"machine": machine(), "seeds": args.seeds, "fast": args.fast, "tasks": results}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    if "--worker" in sys.argv:
        serve({"run": fa_run}, _fa_ready)
    else:
        main()
