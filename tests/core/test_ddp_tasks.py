"""Every task learner under ``torchrun --nproc_per_node=2`` (gloo, CPU), in one launch (issue 15).

The test writes tiny data (images, masks, texts, a table, ratings), then runs this file under torchrun:
each rank trains the five task learners in turn (vision with its frozen-feature cache, segmentation,
text with an LSTM, tabular, collab) and records a digest of its weights, ``get_preds(ds_idx=0)``'s targets
and the files it wrote. The ranks must end with identical weights, see every training item once and in
dataset order, and only rank 0 may write.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from learnkit import Callback

TASKS = ("vision", "segmentation", "text", "tabular", "collab")
CODES = ["background", "disc", "bar"]


# --- data (written once by the test, before the launch) -----------------------------------------------------
def _write_data(root: Path) -> None:
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(12):  # vision: red cats (capitalised names), blue dogs
        for label, color in (("Cat", (220, 40, 40)), ("dog", (40, 40, 220))):
            a = np.clip(np.array(color)[None, None] + rng.integers(-20, 21, (16, 16, 3)), 0, 255).astype(np.uint8)
            (root / "pets").mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(root / "pets" / f"{label}_{i}.png")
    for i in range(12):  # segmentation: a disc or a bar on a background, the mask painting them
        m = np.zeros((32, 32), np.uint8)
        y, x = np.mgrid[:32, :32]
        m[(y - 8 - i) ** 2 + (x - 16) ** 2 < 30] = 1
        m[20 + i % 8: 24 + i % 8, 4:28] = 2
        img = np.array([[30, 30, 30], [230, 200, 40], [40, 200, 230]], np.uint8)[m]
        for d in ("images", "labels"):
            (root / "seg" / d).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "seg" / "images" / f"f{i:02d}.png")
        Image.fromarray(m, mode="L").save(root / "seg" / "labels" / f"f{i:02d}_P.png")
    pos, neg = ["great fun film", "loved the music", "wonderful cast", "lovely story"], \
        ["awful mess", "boring and terrible", "hated the ending", "terrible acting"]
    rows = [(t, lab, i % 4 == 0) for lab, texts in (("positive", pos), ("negative", neg))
            for i, t in enumerate(texts * 5)]
    pd.DataFrame(rows, columns=["text", "label", "is_valid"]).to_csv(root / "texts.csv", index=False)
    n = 150
    df = pd.DataFrame({"color": rng.choice(["red", "green", "blue"], n), "x": rng.normal(size=n),
                       "z": rng.normal(size=n)})
    df["y"] = np.where(df["x"] + (df["color"] == "red") > 0.3, "yes", "no")
    df.to_csv(root / "table.csv", index=False)
    users, items = rng.integers(0, 12, 300), rng.integers(0, 15, 300)
    u, v = rng.normal(size=(12, 2)), rng.normal(size=(15, 2))
    r = np.clip(3 + (u[users] * v[items]).sum(1), 1, 5)
    pd.DataFrame({"user": users, "item": items, "rating": r.round(1)}).to_csv(root / "ratings.csv", index=False)


def _ddp_helpers():
    """tests/core/test_distributed.py, for its torchrun environment and its write audit (test files are not a
    package: loaded by path)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_lk_test_distributed", Path(__file__).with_name("test_distributed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- one rank ------------------------------------------------------------------------------------------------
def _learner(task: str, data: Path, path: Path):
    from learnkit import CSVLogger
    if task == "vision":
        from learnkit.vision import ImageDataLoaders, Resize, error_rate, vision_learner
        files = sorted((data / "pets").glob("*.png"))
        dls = ImageDataLoaders.from_name_func(data / "pets", files, lambda n: n[0].isupper(), item_tfms=Resize(16),
                                              bs=4)
        return vision_learner(dls, "mobilenetv3_small_050", pretrained=False, metrics=error_rate, path=path,
                              cbs=[CSVLogger()])
    if task == "segmentation":
        from learnkit.vision.io import get_image_files
        from learnkit.vision.segmentation import SegmentationDataLoaders, unet_learner
        files = get_image_files(data / "seg" / "images")
        dls = SegmentationDataLoaders.from_label_func(data / "seg", files,
                                                      lambda o: data / "seg" / "labels" / f"{Path(o).stem}_P.png",
                                                      codes=CODES, bs=5)
        return unet_learner(dls, "efficientnet_lite0", pretrained=False, decoder_channels=(16, 8, 8, 8), path=path,
                            cbs=[CSVLogger()])
    if task == "text":
        from learnkit.text import TextDataLoaders, text_classifier_learner
        dls = TextDataLoaders.from_df(pd.read_csv(data / "texts.csv"), valid_col="is_valid", tok="words",
                                      min_freq=1, bs=4)
        return text_classifier_learner(dls, "lstm", path=path, cbs=[CSVLogger()],
                                       config={"emb_dim": 8, "hidden": 8, "head_hidden": 8})
    if task == "tabular":
        from learnkit.tabular import TabularDataLoaders, tabular_learner
        dls = TabularDataLoaders.from_df(pd.read_csv(data / "table.csv"), cat_names=["color"], cont_names=["x", "z"],
                                         y_names="y", bs=16)
        return tabular_learner(dls, layers=[16], path=path, cbs=[CSVLogger()])
    from learnkit.collab import CollabDataLoaders, collab_learner
    dls = CollabDataLoaders.from_df(pd.read_csv(data / "ratings.csv"), bs=32)
    return collab_learner(dls, n_factors=4, path=path, cbs=[CSVLogger()])


class _LoaderKinds(Callback):
    """Records the inner loader of each phase's shard (a `CachedLoader` when the feature cache serves it)."""

    order = 0  # after the DistributedTrainer (-30) and the feature cache (-20) swapped the loaders

    def before_fit(self):
        self.kinds, self.cached_targets = [], None

    def before_train(self):
        inner = getattr(self.learn.dl, "dl", self.learn.dl)
        self.kinds.append(type(inner).__name__)
        store = getattr(inner, "store", None)
        if self.cached_targets is None and hasattr(store, "targets"):  # the training set's, as gathered
            self.cached_targets = store.targets[0]

    before_validate = before_train


def _dataset_targets(learn) -> torch.Tensor:
    """The training set's targets in dataset order, item by item (no loader involved)."""
    ds = learn.dls.train.dataset
    return torch.stack([torch.as_tensor(ds[i][learn.dls.n_inp]) for i in range(len(ds))])


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _worker(data: Path, out: Path) -> None:
    from learnkit import set_seed
    _record_writes = _ddp_helpers()._record_writes
    rank = int(os.environ["RANK"])
    writes = _record_writes(out / "run")
    res = {}
    for task in TASKS:
        set_seed(1000, by_rank=True)  # each rank its own initial weights: only DDP can make them agree
        learn = _learner(task, data, out / "run" / task)
        if task == "vision":  # the frozen epoch trains the head on cached features, each rank on its shard
            learn.freeze()
            learn.fit_one_cycle(1, 1e-2, cbs=[seen := _LoaderKinds()])
            learn.unfreeze()
            learn.fit_one_cycle(1, 1e-3)
        else:
            learn.fit_one_cycle(2, 1e-2)
        learn.save("final")
        targs = learn.get_preds(ds_idx=0)[1]
        res[task] = {"digest": _digest(learn.model), "values": learn.recorder.values,
                     "preds_equal_dataset": bool(torch.equal(targs.to(torch.float64),
                                                             _dataset_targets(learn).to(torch.float64))),
                     "n_preds": len(targs), "n_train": len(learn.dls.train.dataset)}
        if task == "vision":
            res[task]["cached_loaders"] = seen.kinds
            res[task]["cache_in_dataset_order"] = bool(torch.equal(seen.cached_targets, _dataset_targets(learn)))
    res["writes"] = sorted({str(Path(p).relative_to(out / "run")) for p in writes})
    (out / f"result{rank}.json").write_text(json.dumps(res))


def test_every_task_learner_trains_under_torchrun(tmp_path):
    _write_data(tmp_path / "data")
    env = _ddp_helpers()._torchrun_env()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), "--worker", str(tmp_path / "data"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1))
    for task in TASKS:
        a, b = r0[task], r1[task]
        assert a["digest"] == b["digest"], f"{task}: the ranks' weights differ"
        assert a["values"] == b["values"], task
        assert a["preds_equal_dataset"] and b["preds_equal_dataset"], task
        assert a["n_preds"] == a["n_train"], task
    # the frozen epoch read this rank's shard of the cached features, training and validation
    assert r0["vision"]["cached_loaders"] == r1["vision"]["cached_loaders"] == ["CachedLoader"] * 2
    assert r0["vision"]["cache_in_dataset_order"] and r1["vision"]["cache_in_dataset_order"]
    assert r1["writes"] == []  # only rank 0 writes
    for task in TASKS:
        assert {f"{task}/history.csv", f"{task}/models/final.pth"} <= set(r0["writes"]), (task, r0["writes"])


if __name__ == "__main__" and "--worker" in sys.argv:
    i = sys.argv.index("--worker")
    _worker(Path(sys.argv[i + 1]), Path(sys.argv[i + 2]))
