"""The ``learnkit`` command: train → info → predict on tiny generated photos (in-process through
``main(argv)``, and as ``python -m learnkit`` in a subprocess), one-line errors, and ``predict`` on 20 real
pets photos (integration)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from learnkit.cli import main

REPO = Path(__file__).resolve().parents[2]


def _images(root: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    for i in range(6):
        for label, color in (("cat", (220, 40, 40)), ("dog", (40, 40, 220))):
            p = root / f"{label}_{i}.png" if layout == "name" else root / label / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            a = np.clip(np.array(color) + rng.integers(-20, 21, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(p)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEARNKIT_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "learnkit", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``learnkit train images`` with --label-re on red 'cat' / blue 'dog' file names."""
    root = tmp_path_factory.mktemp("cli")
    _images(root / "named", "name")
    _images(root / "classes", "classes")
    out = root / "model.safetensors"
    code = main(["train", "images", str(root / "named"), "--label-re", r"^(\w+)_\d+", "--arch", "resnet10t",
                 "--no-pretrained", "--size", "32", "--epochs", "4", "--lr", "1e-2", "--bs", "4",
                 "--out", str(out)])
    assert code == 0 and out.is_file()
    return root, out


def test_train_from_class_folders(tmp_path, capsys):
    _images(tmp_path / "classes", "classes")
    code = main(["train", "images", str(tmp_path / "classes"), "--arch", "resnet10t", "--no-pretrained",
                 "--size", "32", "--epochs", "1", "--bs", "4", "--out", str(tmp_path / "m.safetensors")])
    assert code == 0
    assert "saved" in capsys.readouterr().out
    from learnkit.cli import model_info
    assert model_info(tmp_path / "m.safetensors")["classes"] == ["cat", "dog"]


def test_info(trained, capsys):
    _, model = trained
    assert main(["info", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["task"] == "ImageDataLoaders" and info["classes"] == ["cat", "dog"]
    assert info["input_size"] == [32, 32] and info["arch"] == "resnet10t"
    assert info["training"]["epochs"] == 4 and set(info["training"]["final"]) == {"train_loss", "valid_loss",
                                                                                   "error_rate"}
    assert info["learnkit_version"] == "0.1.0" and info["parameters"] > 1_000_000
    assert main(["info", str(model)]) == 0
    text = capsys.readouterr().out
    assert "classes           2: cat, dog" in text and "input size        32x32" in text


def test_predict_table_and_json(trained, capsys):
    root, model = trained
    assert main(["predict", str(model), str(root / "classes" / "cat"), str(root / "named" / "dog_1.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["input", "prediction", "probability"] and len(lines) == 1 + 7
    assert main(["predict", str(model), str(root / "classes"), "--json", "--top-k", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 12
    correct = [r["prediction"] == Path(r["input"]).parent.name for r in rows]
    assert sum(correct) >= 10  # red vs blue after four epochs
    assert all(len(r["top"]) == 2 and abs(sum(p for _, p in r["top"]) - 1) < 1e-4 for r in rows)


def test_errors_are_one_line_and_nonzero(trained, tmp_path, capsys):
    root, model = trained
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = root / "named" / "cat_0.png"
    assert main(["predict", str(model), str(good), str(bad)]) == 1  # the good file is still predicted
    out, err = capsys.readouterr()
    assert "cat_0.png" in out and err.count("\n") == 1 and "broken.jpg" in err and err.startswith("learnkit: error:")
    for argv, message in [
        (["predict", str(tmp_path / "nope.safetensors"), str(good)], "no learnkit export at"),
        (["predict", str(good), str(good)], "not a learnkit export"),
        (["info", str(bad)], "not a learnkit export"),
        (["predict", str(model), str(tmp_path / "missing.png")], "no such file or folder"),
        (["train", "images", str(tmp_path / "none")], "no such folder"),
        (["train", "images", str(root / "named"), "--label-re", "(", "--no-pretrained"], "not a valid regular"),
        (["train", "images", str(root / "named"), "--no-pretrained"], "has no class folders"),
    ]:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("learnkit: error:") and message in err, (argv, err)


def test_python_m_learnkit_and_the_console_script(trained):
    root, model = trained
    res = _run("predict", str(model), str(root / "named" / "dog_2.png"), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["prediction"] == "dog"
    res = _run("info", str(root / "nope.safetensors"))
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0 and "no learnkit export" in res.stderr
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        main(["predict"])
    assert exit_info.value.code == 2
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"learnkit": "learnkit.cli:main"}


@pytest.mark.integration
def test_predict_on_20_pets_photos(data_path, tmp_path):
    """A cat-vs-dog head on frozen EfficientNet-Lite0 features (40 photos, 1 epoch), then ``learnkit predict``
    on a folder of 20 other photos (symlinks to $LEARNKIT_DATA/pets)."""
    from learnkit.vision import ImageDataLoaders, Resize, error_rate, get_image_files, vision_learner
    files = get_image_files(data_path / "pets" / "images")
    train, test = files[::20][:40], files[7::40][:20]
    dls = ImageDataLoaders.from_name_func(files[0].parent, train, lambda n: "cat" if n[0].isupper() else "dog",
                                          item_tfms=Resize(128), bs=16)
    learn = vision_learner(dls, "efficientnet_lite0", metrics=error_rate, progress=False)
    learn.fit_one_cycle(2, 1e-2)
    model = learn.export(tmp_path / "pets.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in test:
        (photos / f.name).symlink_to(f)
    res = _run("predict", str(model), str(photos), "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert len(rows) == 20
    truth = ["cat" if Path(r["input"]).name[0].isupper() else "dog" for r in rows]
    accuracy = np.mean([r["prediction"] == t for r, t in zip(rows, truth)])
    assert accuracy >= 0.75, accuracy


def test_predict_and_info_for_a_table_and_texts(tmp_path, capsys):
    import pandas as pd

    from learnkit.tabular import TabularDataLoaders, tabular_learner
    from learnkit.text import TextDataLoaders, text_classifier_learner
    df = pd.DataFrame({"job": ["a", "b"] * 20, "age": list(range(40)), "y": ["no", "yes"] * 20})
    dls = TabularDataLoaders.from_df(df, cat_names="job", cont_names="age", y_names="y", bs=8, device="cpu")
    learn = tabular_learner(dls, layers=[8], progress=False)
    learn.fit(1)
    model = learn.export(tmp_path / "table.safetensors")
    df.drop(columns="y").head(3).to_csv(tmp_path / "rows.csv", index=False)
    assert main(["predict", str(model), str(tmp_path / "rows.csv"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    expected = [learn.predict(r)[0]["y"] for _, r in df.drop(columns="y").head(3).iterrows()]
    assert [r["prediction"] for r in rows] == expected and rows[0]["input"].endswith("rows.csv:2")
    assert main(["info", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["task"] == "TabularDataLoaders" and info["classes"] == ["no", "yes"] and info["input_size"] is None

    texts = pd.DataFrame({"text": ["good great movie", "bad awful plot"] * 6, "label": ["pos", "neg"] * 6})
    tdls = TextDataLoaders.from_df(texts, tok="words", min_freq=1, bs=4, device="cpu")
    tlearn = text_classifier_learner(tdls, "lstm", config={"emb_dim": 8, "hidden": 8, "head_hidden": 8}, progress=False)
    tmodel = tlearn.export(tmp_path / "text.safetensors")
    (tmp_path / "review.txt").write_text("a good great movie")
    assert main(["predict", str(tmodel), str(tmp_path / "review.txt"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["prediction"] == tlearn.predict("a good great movie")[0]
