"""What a ported fastai lesson imports with one star import: each task namespace gives the data API, the recipes
and `untar_data`/`URLs` (fastai's ``*.all`` modules do)."""
from __future__ import annotations

import pytest

COMMON = ["DataBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "RandomSplitter", "GrandparentSplitter",
          "ColSplitter", "FuncSplitter", "IndexSplitter", "TrainTestSplitter", "EndSplitter", "get_files", "ColReader",
          "using_attr", "RegexLabeller", "parent_label", "MixUp", "CutMix", "LabelSmoothingCrossEntropy", "minimum",
          "steep", "valley", "slide", "rmse", "top_k_accuracy", "R2Score", "Perplexity", "F1ScoreMulti", "set_seed",
          "ReduceLROnPlateau", "ShowGraphCallback", "TensorBoardCallback", "ClassificationInterpretation",
          "load_learner", "register_model", "URLs", "untar_data", "get_emb_sz", "CategoryMap"]
TASK = {
    "learnkit.vision": ["ImageBlock", "PointBlock", "MaskBlock", "aug_transforms", "Resize", "RandomResizedCrop",
                        "get_image_files", "verify_images", "SegmentationDataLoaders", "SegmentationInterpretation",
                        "unet_learner", "vision_learner"],
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
