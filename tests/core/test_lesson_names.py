"""``tensor`` and ``first``, and fastbook ch. 13's first cells run after only the import change."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from learnkit.core.layers import Module
from learnkit.core.lesson_names import first, tensor


def test_tensor_from_python_values():
    assert tensor([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]).float().shape == (3, 3)
    assert tensor(1, 2, 3).tolist() == [1, 2, 3]
    assert tensor(2.5).dtype == torch.float32 and tensor([1, 2]).dtype == torch.int64
    assert tensor([1, 2], dtype=torch.float16).dtype == torch.float16


def test_tensor_from_numpy_pandas_and_pil_copies_and_keeps_the_source():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = tensor(a)
    assert t.dtype == torch.float32 and t.shape == (2, 3)
    t += 1
    assert a[0, 0] == 0, "tensor() must not write into the user's array"
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert tensor(df).tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert tensor(df["b"]).tolist() == [3.0, 4.0]
    img = Image.fromarray(np.full((4, 5), 200, dtype=np.uint8))
    px = tensor(img)
    assert px.dtype == torch.uint8 and px.shape == (4, 5) and int(px[0, 0]) == 200
    assert tensor(Image.new("RGB", (5, 4))).shape == (4, 5, 3)


def test_tensor_names_what_it_cannot_convert():
    with pytest.raises(TypeError, match="cannot make a tensor from dict"):
        tensor({"a": 1})


def test_first():
    assert first(iter([5, 6])) == 5
    assert first([1, 3, 4, 6], lambda x: x % 2 == 0) == 4
    assert first([]) is None and first([1, 3], lambda x: x > 5) is None


def _mnist_tiny() -> Path:
    root = Path(os.environ.get("LEARNKIT_DATA", Path(__file__).parents[3] / "shared" / "data")) / "mnist_tiny"
    if not root.is_dir():
        pytest.skip(f"mnist_tiny not found at {root}")
    return root


def test_fastbook_ch13_cells_run_on_the_star_import_alone():
    """fastbook ch. 13's first cells, with only ``from learnkit.vision import *``: no other import."""
    path = _mnist_tiny()
    cells = '''
from learnkit.vision import *
top_edge = tensor([[-1,-1,-1], [ 0, 0, 0], [ 1, 1, 1]]).float()
im3 = Image.open(sorted((path/'train'/'3').iterdir())[0])
im3_t = tensor(im3)
part = im3_t[0:3, 0:3] * top_edge
edge = F.conv2d(im3_t[None, None].float(), top_edge[None, None])
show_image(im3); show_image(top_edge, cmap='Greys'); ax = show_image(edge[0, 0])
mnist = DataBlock((ImageBlock(cls=PILImageBW), CategoryBlock), get_items=get_image_files,
                  splitter=GrandparentSplitter(), get_y=parent_label)
dls = mnist.dataloaders(path, bs=64)
xb, yb = first(dls.valid)
xb, yb = to_cpu(xb), to_cpu(yb)
conv = nn.Conv2d(1, 4, 3, padding=1)
out = conv(xb)
df = pd.DataFrame({"mean": out.mean((0, 2, 3)).tolist()})
'''
    ns: dict = {"path": path}
    exec(cells, ns)
    assert ns["im3_t"].shape == (28, 28) and ns["edge"].shape == (1, 1, 26, 26)
    lo, hi = ns["ax"].get_images()[0].get_clim()  # a convolution's output is shown over its own range
    assert (lo, hi) == (float(ns["edge"].min()), float(ns["edge"].max())) and hi > 1
    assert ns["xb"].shape[1:] == (1, 28, 28) and ns["out"].shape[1] == 4 and len(ns["df"]) == 4


def test_module_needs_no_super_init_and_copies_like_any_module():
    import copy
    import io

    class LMModel1(Module):  # fastbook ch. 12, as written
        def __init__(self, vocab_sz, n_hidden):
            self.i_h = torch.nn.Embedding(vocab_sz, n_hidden)
            self.h_o = torch.nn.Linear(n_hidden, vocab_sz)

        def forward(self, x):
            return self.h_o(self.i_h(x).relu()).mean(1)

    class WithSuper(Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

    m = LMModel1(30, 8)
    assert [n for n, _ in m.named_parameters()] == ["i_h.weight", "h_o.weight", "h_o.bias"]
    assert m(torch.zeros(4, 3, dtype=torch.long)).shape == (4, 30)
    twin = copy.deepcopy(m)
    assert torch.equal(twin.h_o.weight, m.h_o.weight) and twin.h_o.weight is not m.h_o.weight
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = LMModel1(30, 8)
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh.i_h.weight, m.i_h.weight)
    assert len(list(WithSuper().parameters())) == 2


def test_fastbook_ch4_sgd_learner_runs_on_the_star_import_alone():
    """fastbook ch. 4's hand-made MNIST 3-vs-7 learner (torch's DataLoader, fastai's SGD, a plain Linear), with
    only ``from learnkit.vision import *``."""
    path = _mnist_tiny()
    cells = '''
from learnkit.vision import *
def stack(split, digit):
    return torch.stack([tensor(Image.open(o)) for o in sorted((path/split/digit).iterdir())]).float()/255
def dataset(split):
    threes, sevens = stack(split, '3'), stack(split, '7')
    x = torch.cat([threes, sevens]).view(-1, 28*28)
    y = tensor([1]*len(threes) + [0]*len(sevens)).unsqueeze(1)
    return list(zip(x, y))
def mnist_loss(predictions, targets):
    predictions = predictions.sigmoid()
    return torch.where(targets==1, 1-predictions, predictions).mean()
def batch_accuracy(xb, yb):
    preds = xb.sigmoid()
    correct = (preds>0.5) == yb
    return correct.float().mean()
torch.manual_seed(0)
dl = DataLoader(dataset('train'), batch_size=256, shuffle=True)
valid_dl = DataLoader(dataset('valid'), batch_size=256)
xb, yb = first(dl)
dls = DataLoaders(dl, valid_dl)
learn = Learner(dls, nn.Linear(28*28,1), opt_func=SGD, loss_func=mnist_loss, metrics=batch_accuracy)
learn.fit(10, lr=1.)
'''
    ns: dict = {"path": path}
    exec(cells, ns)
    assert ns["xb"].shape == (256, 784) and type(ns["learn"].opt).__name__ == "SGD"
    acc = ns["learn"].recorder.values[-1][-1]
    assert acc > 0.9, f"ch. 4's linear model on mnist_tiny 3s/7s: accuracy {acc:.3f}"


def test_fastbook_ch14_resblock_runs_on_the_star_import_alone():
    """fastbook ch. 14's hand-written ``ResBlock`` (fastai's ``Module``, ``noop``, ``ConvLayer(act_cls=None,
    norm_type=NormType.BatchZero)``) and its ``ResNet(nn.Sequential)``, as written."""
    cells = '''
from learnkit.vision import *
def _conv_block(ni,nf,stride):
    return nn.Sequential(
        ConvLayer(ni, nf, stride=stride),
        ConvLayer(nf, nf, act_cls=None, norm_type=NormType.BatchZero))
class ResBlock(Module):
    def __init__(self, ni, nf, stride=1):
        self.convs = _conv_block(ni,nf,stride)
        self.idconv = noop if ni==nf else ConvLayer(ni, nf, 1, act_cls=None)
        self.pool = noop if stride==1 else nn.AvgPool2d(2, ceil_mode=True)
    def forward(self, x):
        return F.relu(self.convs(x) + self.idconv(self.pool(x)))
def _resnet_stem(*sizes):
    return [ConvLayer(sizes[i], sizes[i+1], 3, stride = 2 if i==0 else 1) for i in range(len(sizes)-1)
           ] + [nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
class ResNet(nn.Sequential):
    def __init__(self, n_out, layers, expansion=1):
        stem = _resnet_stem(3,32,32,64)
        self.block_szs = [64, 64, 128, 256, 512]
        for i in range(1,5): self.block_szs[i] *= expansion
        blocks = [self._make_layer(*o) for o in enumerate(layers)]
        super().__init__(*stem, *blocks, nn.AdaptiveAvgPool2d(1), Flatten(), nn.Linear(self.block_szs[-1], n_out))
    def _make_layer(self, idx, n_layers):
        stride = 1 if idx==0 else 2
        ch_in,ch_out = self.block_szs[idx:idx+2]
        return nn.Sequential(*[ResBlock(ch_in if i==0 else ch_out, ch_out, stride if i==0 else 1) for i in range(n_layers)])
rn = ResNet(10, [1, 1, 1, 1])
out = rn(torch.randn(2, 3, 32, 32))
same = ResBlock(8, 8)
'''
    ns: dict = {}
    exec(cells, ns)
    assert ns["out"].shape == (2, 10) and ns["same"].idconv is ns["noop"]
    rn = ns["rn"]  # 4 stem layers, then the stages: 64 -> 64 at stride 1 adds x itself, 64 -> 128 convolves it
    assert rn[4][0].idconv is ns["noop"] and isinstance(rn[5][0].idconv, torch.nn.Module)


def test_torch_losses_give_probabilities_and_classes():
    """fastbook passes torch's own losses (``loss_func=F.cross_entropy``, ``nn.CrossEntropyLoss()``): get_preds
    still returns probabilities and decoded classes, as with learnkit's losses."""
    from learnkit import DataLoaders, Learner, TensorLoader
    x = torch.randn(32, 4)
    y = (x[:, 0] > 0).long()
    dls = DataLoaders(TensorLoader(x, y, bs=8), TensorLoader(x, y, bs=8), device="cpu")
    for loss in (torch.nn.functional.cross_entropy, torch.nn.CrossEntropyLoss()):
        learn = Learner(dls, torch.nn.Linear(4, 3), loss_func=loss, progress=False)
        probs, targs, dec = learn.get_preds(with_decoded=True)
        assert torch.allclose(probs.sum(1), torch.ones(32)) and (probs >= 0).all()
        assert torch.equal(dec, probs.argmax(1)) and torch.equal(targs, y)
    learn = Learner(dls, torch.nn.Linear(4, 1), loss_func=torch.nn.BCEWithLogitsLoss(), progress=False)
    probs, _ = learn.get_preds(dl=[(x, y[:, None].float())])
    assert ((probs > 0) & (probs < 1)).all()
    learn = Learner(dls, torch.nn.Linear(4, 1), loss_func=torch.nn.functional.mse_loss, progress=False)
    with torch.no_grad():
        assert torch.allclose(learn.get_preds(dl=[(x, y)])[0], learn.model(x))  # a regression loss: the output itself
