"""benchmarks/probes.py: the metrics and baselines on hand-checkable cases, and one tiny task end to end on a
generated coco_tiny-shaped folder (no real data needed)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import probes  # noqa: E402


def test_baselines_by_hand():
    # majority class of the training set (1) is wrong on 2 of the 4 validation items
    assert probes.baseline("breeds", np.array([1, 1, 0, 2]), np.array([1, 0, 2, 1])) == 0.5
    # "absent" for every label: 5 of the 6 (item, label) pairs are 0
    assert probes.baseline("multilabel", np.zeros((3, 2)), np.array([[0, 1], [0, 0], [0, 0]])) == pytest.approx(5 / 6)
    # the training mean (2.0) on [1, 3]: R² = 1 - 2 / 2 = 0
    assert probes.baseline("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0])) == pytest.approx(0.0)
    # majority pixel class (0) over all pixels, void included
    assert probes.baseline("segmentation", np.array([[[0, 0], [0, 5]]]), np.array([[[0, 5], [5, 5]]])) == 0.25
    assert probes.baseline("text", np.array([0, 1, 1]), np.array([1, 1, 0, 1])) == 0.75


def test_metrics_and_bar():
    assert probes.error_rate(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0])) == 0.5
    assert probes.accuracy_multi(np.array([[0.6, 0.4]]), np.array([[1, 1]])) == 0.5
    assert probes.r2(np.array([1.0, 3.0]), np.array([1.0, 3.0])) == 1.0
    assert probes.pixel_accuracy(np.array([[[[0.9]], [[0.1]]]]), np.array([[[1]]])) == 0.0
    assert probes.beats("breeds", 0.10, 0.10, 0.9) and not probes.beats("breeds", 0.11, 0.10, 0.9)
    assert probes.beats("multilabel", 0.795, 0.80, 0.78) and not probes.beats("multilabel", 0.785, 0.80, 0.70)
    assert probes.beats("regression", 0.56, 0.65, 0.0) and not probes.beats("regression", 0.45, 0.50, 0.0)
    assert not probes.beats("multilabel", 0.70, 0.70, 0.70)  # must beat the baseline too


def _fake_coco(root: Path, n: int = 80) -> list[list[str]]:
    """A coco_tiny-shaped folder: n 128x128 photos with boxes of classes 'a' and 'b' (each on some of every 4th
    photo, which ``--fast`` keeps)."""
    from PIL import Image
    folder = root / "coco_tiny" / "train"
    folder.mkdir(parents=True)
    images, anns, labels = [], [], []
    for i in range(n):
        name = f"{i:04d}.jpg"
        a, b = i % 8 < 4, (i // 4) % 3 == 0
        Image.new("RGB", (128, 128), (200 if a else 30, 200 if b else 30, 60)).save(folder / name)
        images.append({"id": i, "file_name": name})
        cats = [1] * a + [2] * b
        anns += [{"image_id": i, "bbox": [0, 0, 10, 10], "category_id": c} for c in cats]
        labels.append(sorted({1: "a", 2: "b"}[c] for c in cats))
    meta = {"categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "images": images, "annotations": anns}
    (root / "coco_tiny" / "train.json").write_text(json.dumps(meta))
    return labels


@pytest.mark.timeout(120)
def test_multilabel_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEARNKIT_SMALL_DATA_WARNINGS", "0")  # --fast: one step per phase, on purpose
    labels = _fake_coco(tmp_path)
    out = probes.main(["--tasks", "multilabel", "--fast", "--seeds", "0", "1", "--fastai-python", "none",
                       "--data", str(tmp_path), "--json", str(tmp_path / "r.json"), "--threads", "1"])
    saved = json.loads((tmp_path / "r.json").read_text())
    res = saved["tasks"]["multilabel"]
    assert saved["seeds"] == [0, 1] and out["tasks"]["multilabel"]["baseline"] == res["baseline"]
    # --fast keeps every 4th photo; the fixed split is _valid_mask's; "all absent" by hand over 2 labels
    kept = labels[::4]
    valid = [lab for lab, v in zip(kept, probes._valid_mask(len(kept))) if v]
    assert res["n_valid"] == len(valid) and res["n_train"] == len(kept) - len(valid)
    assert {x for lab, v in zip(kept, probes._valid_mask(len(kept))) if not v for x in lab} == {"a", "b"}
    assert res["baseline"] == pytest.approx(1 - sum(len(lab) for lab in valid) / (2 * len(valid)))
    assert 0 < res["baseline"] < 1
    assert len(res["learnkit"]) == 2 and all(0 <= v <= 1 for v in res["learnkit"]) and res["fastai"] == []
    assert 0 <= res["probe"] <= 1 and isinstance(res["fine_tune_ge_probe"], bool)
    table = capsys.readouterr().out.split("\n\n")[-1].splitlines()
    assert table[0].split()[:3] == ["task", "metric", "n"] and "fine_tune >= probe?" in table[0]
    assert table[1].startswith("multilabel") and f"{res['baseline']:.4f}" in table[1]
