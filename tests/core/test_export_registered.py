"""A user's own transform or tokenizer, decorated with ``@register_transform`` / ``@register_tokenizer``, survives
``export`` → ``load_learner``, in the same process and in a fresh one that imports the user's module; an
unregistered one fails at export (not at load), and a load without the module names the decorator."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from coretools import write_two_class_images

from learnkit import ExportError, load_learner
from learnkit.core.registry import TRANSFORM_REGISTRY, register_transform
from learnkit.vision import ImageDataLoaders, ItemTransform, Resize, get_image_files, vision_learner

REPO = Path(__file__).resolve().parents[2]

#: the user's module: an item transform and a tokenizer, each with a JSON-able config
USER_MODULE = '''
import torch
from learnkit.core.registry import register_tokenizer, register_transform
from learnkit.vision.transforms import ItemTransform


@register_transform
class Posterize(ItemTransform):
    """Keep the top ``bits`` bits of each pixel (deterministic: it also runs at inference)."""

    def __init__(self, bits: int = 4):
        self.bits = bits

    def __call__(self, image, mask=None, training=True, *, points=None):
        shift = 8 - self.bits
        out = (image >> shift) << shift
        return out if mask is None else (out, mask)

    def export_config(self):
        return {"bits": self.bits}


@register_tokenizer("user.chars")
class CharTokenizer:
    """One id per character of ``alphabet`` (0 pads, 1 for any other character)."""

    def __init__(self, alphabet: str, max_len: int = 64):
        self.alphabet, self.max_len = alphabet, max_len
        self.stoi = {c: i + 2 for i, c in enumerate(alphabet)}

    pad_id = 0

    @property
    def vocab_size(self):
        return len(self.alphabet) + 2

    def encode_batch(self, texts):
        return [[self.stoi.get(c, 1) for c in t.lower()][: self.max_len] or [1] for t in texts]

    def decode(self, ids):
        return "".join(self.alphabet[i - 2] if i >= 2 else "?" for i in ids)

    def export_config(self):
        return {"alphabet": self.alphabet, "max_len": self.max_len}
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``user_tfms.py`` in a folder on sys.path (as the user's own package would be), imported."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "user_tfms.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("user_tfms", None)
    import user_tfms
    yield user_tfms, folder
    sys.modules.pop("user_tfms", None)


def _images(folder: Path, n: int = 12) -> list[Path]:
    return write_two_class_images(folder, n, size=20, spread=50)


def _in_fresh_process(script: str, folder: Path, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(folder)]), "LEARNKIT_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_a_registered_item_transform_survives_export_and_a_fresh_process(user_module, tmp_path):
    mod, folder = user_module
    files = _images(tmp_path / "data")
    dls = ImageDataLoaders.from_name_func(tmp_path / "data", files, lambda n: n[0],
                                          item_tfms=[mod.Posterize(3), Resize(16)], bs=4, device="cpu")
    learn = vision_learner(dls, "resnet18", pretrained=False, progress=False)
    learn.fit(1, lr=1e-3)
    path = learn.export(tmp_path / "posterize.safetensors")
    items = [str(p) for p in files[:4]]
    expected = learn.get_preds(dl=learn.dls.test_dl(items))[0]

    new = load_learner(path, device="cpu")
    tfm = new.dls.item_tfms[0]
    assert type(tfm) is mod.Posterize and tfm.bits == 3
    assert torch.allclose(new.get_preds(dl=new.dls.test_dl(items))[0], expected, atol=1e-6)

    torch.save(expected, tmp_path / "expected.pt")
    out = _in_fresh_process(f"""
        import torch, user_tfms
        from learnkit import load_learner
        learn = load_learner({str(path)!r}, device="cpu")
        assert type(learn.dls.item_tfms[0]).__name__ == "Posterize", learn.dls.item_tfms
        got = learn.get_preds(dl=learn.dls.test_dl({items!r}))[0]
        assert torch.allclose(got, torch.load({str(tmp_path / 'expected.pt')!r}), atol=1e-6), got
        print("OK", learn.predict({items[0]!r})[0])
    """, folder, tmp_path)
    assert out.startswith("OK")

    # without the user's module the error says what to do
    msg = _in_fresh_process(f"""
        from learnkit import ExportError, load_learner
        try:
            load_learner({str(path)!r}, device="cpu")
        except ExportError as e:
            print(e)
    """, folder, tmp_path)
    assert "unknown transform 'Posterize'" in msg and "@register_transform" in msg


def test_a_registered_tokenizer_survives_export_and_a_fresh_process(user_module, tmp_path):
    mod, folder = user_module
    from learnkit.text import TextDataLoaders, text_classifier_learner
    rows = [(t, lab, i % 4 == 0) for i, (t, lab) in enumerate([("great fun", "pos"), ("awful mess", "neg")] * 8)]
    df = pd.DataFrame(rows, columns=["text", "label", "is_valid"])
    dls = TextDataLoaders.from_df(df, valid_col="is_valid", tok=mod.CharTokenizer("abcdefghijklmnopqrstuvwxyz "),
                                  bs=4, device="cpu")
    learn = text_classifier_learner(dls, "lstm", config={"emb_dim": 8, "hidden": 8, "n_layers": 1}, progress=False)
    learn.fit(1, lr=1e-2)
    path = learn.export(tmp_path / "chars.safetensors")
    expected = learn.predict("great mess")[2]

    new = load_learner(path, device="cpu")
    assert type(new.dls.tokenizer) is mod.CharTokenizer and new.dls.tokenizer.max_len == 64
    assert torch.allclose(new.predict("great mess")[2], expected, atol=1e-6)
    out = _in_fresh_process(f"""
        import user_tfms
        from learnkit import load_learner
        learn = load_learner({str(path)!r}, device="cpu")
        print("OK", learn.predict("great mess")[2].tolist())
    """, folder, tmp_path)
    assert out.startswith("OK")
    got = torch.tensor(eval(out.split(" ", 1)[1]))
    assert torch.allclose(got, expected, atol=1e-6)


class Unregistered(ItemTransform):
    def __call__(self, image, mask=None, training=True, *, points=None):
        return image if mask is None else (image, mask)

    def export_config(self):
        return {}


def test_an_unregistered_transform_fails_at_export_naming_the_decorator(tmp_path):
    files = _images(tmp_path / "data", 8)
    dls = ImageDataLoaders.from_name_func(tmp_path / "data", files, lambda n: n[0],
                                          item_tfms=[Unregistered(), Resize(16)], bs=4, device="cpu")
    learn = vision_learner(dls, "resnet18", pretrained=False, progress=False)
    with pytest.raises(TypeError, match=r"Unregistered.*not registered.*@register_transform"):
        learn.export(tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_a_builtin_name_cannot_be_taken_by_a_user_class():
    with pytest.raises(ValueError, match=r"'Resize' is learnkit's .*Resize.*@register_transform\(name=\.\.\.\)"):
        @register_transform
        class Resize(ItemTransform):  # noqa: F811 - the point of the test
            pass
    assert TRANSFORM_REGISTRY.lookup("Resize").__module__ == "learnkit.vision.transforms"

    @register_transform(name="user.Resize")
    class Resize2(ItemTransform):
        pass
    assert TRANSFORM_REGISTRY.lookup("user.Resize") is Resize2
    del TRANSFORM_REGISTRY["user.Resize"]


def test_a_load_without_the_users_module_is_an_export_error(user_module, tmp_path):
    mod, _ = user_module
    files = _images(tmp_path / "data", 8)
    dls = ImageDataLoaders.from_name_func(tmp_path / "data", files, lambda n: n[0],
                                          item_tfms=[mod.Posterize(3), Resize(16)], bs=4, device="cpu")
    learn = vision_learner(dls, "resnet18", pretrained=False, progress=False)
    path = learn.export(tmp_path / "p.safetensors")
    saved = TRANSFORM_REGISTRY.pop("Posterize")
    try:
        with pytest.raises(ExportError, match=r"p.safetensors: unknown transform 'Posterize'.*@register_transform"):
            load_learner(path, device="cpu")
    finally:
        TRANSFORM_REGISTRY["Posterize"] = saved
