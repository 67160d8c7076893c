"""Core ClassificationInterpretation (fastai's plot arguments, classification report) and learn.summary()."""
from __future__ import annotations

import pytest
import torch

from learnkit import CrossEntropyLossFlat, Learner, accuracy
from learnkit.core import ClassificationInterpretation
from learnkit.core.summary import LearnerSummary

from .coretools import BodyHead, body_head_splitter, make_dls, two_class_data


def _interp() -> ClassificationInterpretation:
    probs = torch.tensor([[.9, .1, .0], [.2, .7, .1], [.6, .3, .1], [.1, .1, .8], [.1, .8, .1]])
    return ClassificationInterpretation(["a", "b", "c"], probs, torch.tensor([0, 1, 1, 2, 2]), torch.rand(5))


def test_plot_confusion_matrix_takes_fastai_arguments():
    interp = _interp()
    fig = interp.plot_confusion_matrix(normalize=True, title="CM", cmap="Greens", norm_dec=3, figsize=(5, 4), dpi=50)
    ax = fig.axes[0]
    assert ax.get_title() == "CM" and fig.get_dpi() == 50 and tuple(fig.get_size_inches()) == (5, 4)
    texts = [t.get_text() for t in ax.texts]
    assert "0.500" in texts and len(texts) == 9                      # row 'b': 1 of 2 right, 3 decimals
    assert not interp.plot_confusion_matrix(plot_txt=False).axes[0].texts


def test_print_classification_report_matches_sklearn(capsys):
    report = _interp().print_classification_report()
    assert capsys.readouterr().out.strip() == report.strip()
    line = next(ln.split() for ln in report.splitlines() if ln.strip().startswith("b"))
    assert line[:5] == ["b", "0.50", "0.50", "0.50", "2"]            # precision, recall, f1, support of 'b'


def test_vision_and_text_interpretations_share_the_core_one():
    from learnkit.text import TextClassificationInterpretation
    from learnkit.vision import ClassificationInterpretation as VisionInterp
    assert issubclass(VisionInterp, ClassificationInterpretation)
    assert issubclass(TextClassificationInterpretation, ClassificationInterpretation)


def test_summary_prints_and_returns_the_per_layer_table(capsys):
    x, y = two_class_data()
    learn = Learner(make_dls(x, y, bs=16), BodyHead(), loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                    splitter=body_head_splitter, progress=False)
    learn.freeze()
    s = learn.summary()
    out = capsys.readouterr().out
    assert isinstance(s, LearnerSummary) and out.strip() == str(s).strip()
    assert [(r.layer, r.output_shape, r.params, r.trainable) for r in s.rows] == [
        ("Linear", "32 x 16", 48, False), ("ReLU", "32 x 16", 0, False), ("Linear", "32 x 16", 272, False),
        ("ReLU", "32 x 16", 0, False), ("Linear", "32 x 2", 34, True)]
    assert s.input_shape == "32 x 2" and (s.total_params, s.trainable_params) == (354, 34)
    assert "Model frozen up to parameter group #1" in out and "Optimizer used: Adam" in out
    assert "Loss function:" in out and "  - Recorder" in out
    html = s._repr_html_()
    assert html.count("<tr>") == 6 and "Output Shape" in html
    assert learn.model.training                                        # the mode is restored
    assert "parameters" in learn._repr_html_()                         # the notebook overview is unchanged
