"""What a ported fastai lesson imports with one star import: each task namespace gives the data API, the recipes
and `untar_data`/`URLs` (fastai's ``*.all`` modules do)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import learnkit

COMMON = ["DataBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "RandomSplitter", "GrandparentSplitter",
          "ColSplitter", "FuncSplitter", "IndexSplitter", "TrainTestSplitter", "EndSplitter", "get_files", "ColReader",
          "using_attr", "RegexLabeller", "parent_label", "MixUp", "CutMix", "LabelSmoothingCrossEntropy", "minimum",
          "steep", "valley", "slide", "rmse", "top_k_accuracy", "R2Score", "Perplexity", "F1ScoreMulti", "set_seed",
          "ReduceLROnPlateau", "ShowGraphCallback", "TensorBoardCallback", "ClassificationInterpretation",
          "load_learner", "register_model", "URLs", "untar_data", "find_data", "register_transform", "TorchMetric", "get_emb_sz", "CategoryMap", "DeviceLoader"]
TASK = {
    "learnkit.vision": ["ImageBlock", "PointBlock", "MaskBlock", "aug_transforms", "Resize", "RandomResizedCrop",
                        "get_image_files", "verify_images", "SegmentationDataLoaders", "SegmentationInterpretation",
                        "unet_learner", "vision_learner", "TensorImage", "show_image"],
    "learnkit.vision.segmentation": ["MaskBlock", "SegmentationInterpretation", "unet_learner"],
    "learnkit.text": ["TextBlock", "get_text_files", "TextDataLoaders", "text_classifier_learner"],
    "learnkit.tabular": ["TabularPandas", "cont_cat_split", "add_datepart", "tabular_config", "range_of",
                         "tabular_learner"],
    "learnkit.collab": ["CollabDataLoaders", "collab_learner"],
}


@pytest.mark.parametrize("namespace", sorted(TASK))
def test_star_import_gives_what_a_lesson_uses(namespace):
    names: dict = {}
    exec(f"from {namespace} import *", names)
    missing = [n for n in COMMON + TASK[namespace] if n not in names]
    assert not missing, f"from {namespace} import * lacks {missing}"


PACKAGES = ["learnkit", "learnkit.core", "learnkit.core.callbacks", *sorted(TASK)]


@pytest.mark.parametrize("namespace", PACKAGES)
def test_every_name_in_all_is_bound(namespace):
    """``__all__`` is a list of names the package imports by name: one it lacks would break ``import *``."""
    mod = importlib.import_module(namespace)
    lazy = set(importlib.import_module("learnkit.core.lesson_names").LAZY_NAMES)  # plt: served on first use
    missing = [n for n in mod.__all__ if n not in vars(mod) and not (n in lazy and hasattr(mod, n))]
    assert not missing, f"{namespace}.__all__ names {missing}, which {namespace} does not import"


@pytest.mark.parametrize("namespace", ["learnkit", *sorted(TASK)])
def test_task_namespaces_give_every_core_name(namespace):
    core, mod = importlib.import_module("learnkit.core"), importlib.import_module(namespace)
    assert not set(core.__all__) - set(mod.__all__)


def test_the_core_gives_every_callback_and_metric():
    from learnkit.core import callbacks, metrics
    core = importlib.import_module("learnkit.core")
    assert not (set(callbacks.__all__) | set(metrics.__all__)) - set(core.__all__)


def test_package_inits_import_names_not_stars():
    root = Path(learnkit.__file__).parent
    stars = [f"{p.relative_to(root.parent)}:{node.lineno}" for p in sorted(root.rglob("__init__.py"))
             for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)]
    assert not stars, f"star imports in {stars}: import the names (the package's __all__ lists them)"


LESSON_NAMES = ["torch", "nn", "F", "Tensor", "np", "pd", "plt", "Path", "partial", "Image", "math", "os", "random",
                "re", "array", "DataLoader", "tensor", "first", "noop", "Module", "SGD"]


@pytest.mark.parametrize("namespace", ["learnkit", "learnkit.core", *sorted(TASK)])
def test_star_import_gives_the_names_a_lesson_uses_unimported(namespace):
    names: dict = {}
    exec(f"from {namespace} import *", names)
    missing = [n for n in LESSON_NAMES if n not in names]
    assert not missing, f"from {namespace} import * lacks {missing} (fastai's *.all gives them)"
    import matplotlib.pyplot
    import torch.nn.functional
    assert names["plt"] is matplotlib.pyplot and names["F"] is torch.nn.functional


def test_plt_is_loaded_on_first_use_only():
    """Importing learnkit must not load matplotlib (a backend choice and ~0.3 s); the star import may."""
    import subprocess
    import sys
    code = ("import sys, learnkit.vision, learnkit.text, learnkit.tabular, learnkit.collab; "
            "assert 'matplotlib.pyplot' not in sys.modules; ns = {}; exec('from learnkit.vision import *', ns); "
            "assert 'matplotlib.pyplot' in sys.modules; import learnkit.vision.models; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ,
                                                                                           "MPLBACKEND": "Agg"})
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_unknown_attribute_still_raises():
    import learnkit.vision
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        learnkit.vision.nosuch  # noqa: B018
