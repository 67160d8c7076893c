"""Exports of the user's own models and of task learners: ``load_learner(path, model=MyNet())`` for an
unregistered architecture, ``@register_model`` classes rebuilt from their ``export_config()``, and a loaded
learner that is the task's class (``show_results``, ``tta`` survive)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from learnkit import ExportError, Learner, Registry, load_learner, register_model
from learnkit.vision import (CrossEntropyLossFlat, ImageDataLoaders, Resize, VisionLearner, get_image_files,
                             vision_learner)


def _images(folder: Path, n: int = 12) -> list[Path]:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        base = 60 if i % 2 else 190
        img = (base + torch.randint(-30, 30, (3, 16, 16), generator=g)).clamp(0, 255).to(torch.uint8)
        Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy()).save(folder / f"{'ab'[i % 2]}_{i}.png")
    return get_image_files(folder)


class MyNet(nn.Module):  # deliberately not registered
    def __init__(self, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, 2)

    def forward(self, x):
        return self.head(self.body(x))


@register_model
class MyRegisteredNet(MyNet):
    def __init__(self, width: int = 8):
        super().__init__(width)
        self.width = width

    def export_config(self) -> dict:
        return {"width": self.width}


@pytest.fixture
def dls(tmp_path):
    files = _images(tmp_path / "data")
    return ImageDataLoaders.from_name_func(tmp_path / "data", files, lambda n: n[0], item_tfms=Resize(16), bs=4,
                                          device="cpu")


def _trained(dls, model: nn.Module) -> Learner:
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), progress=False)
    learn.fit(1, lr=1e-2)
    return learn


def test_unregistered_model_loads_with_model_argument(dls, tmp_path):
    learn = _trained(dls, MyNet(width=6))
    path = learn.export(tmp_path / "custom.safetensors")
    with pytest.raises(ExportError, match=r"custom model \(.*MyNet\).*model=MyNet\(\.\.\.\).*@register_model"):
        load_learner(path)
    new = load_learner(path, model=MyNet(width=6), device="cpu")
    items = [str(p) for p in get_image_files(tmp_path / "data")[:3]]
    p1 = learn.get_preds(dl=learn.dls.test_dl(items))[0]
    p2 = new.get_preds(dl=new.dls.test_dl(items))[0]
    assert torch.allclose(p1, p2, atol=1e-6)
    with pytest.raises(ExportError, match="do not fit the architecture MyNet"):
        load_learner(path, model=MyNet(width=4))
    with pytest.raises(TypeError, match="nn.Module instance"):
        load_learner(path, model=MyNet)


def test_registered_class_rebuilds_from_its_config(dls, tmp_path):
    learn = _trained(dls, MyRegisteredNet(width=5))
    new = load_learner(learn.export(tmp_path / "registered.safetensors"), device="cpu")
    assert isinstance(new.model, MyRegisteredNet) and new.model.width == 5
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, new.model.state_dict()[k])


def test_a_loaded_task_learner_keeps_its_class(dls, tmp_path):
    learn = vision_learner(dls, "resnet18", pretrained=False, progress=False)
    new = load_learner(learn.export(tmp_path / "vision.safetensors"), device="cpu")
    assert type(new) is VisionLearner
    assert callable(new.show_results) and callable(new.tta)


def test_registry_class():
    reg = Registry("widget")
    reg.register(int)

    @reg.register(name="text")
    class Text:
        pass

    assert reg.list() == ["int", "text"] and reg.lookup("text") is Text and reg.name_of(int) == "int"
    with pytest.raises(KeyError, match="unknown widget 'nope'; known: \\['int', 'text'\\]"):
        reg.lookup("nope")
