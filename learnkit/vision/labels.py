"""Labelling helpers; they live in `learnkit.core.items` (task-agnostic) and are re-exported here.

>>> parent_label("train/cat/1.jpg")
'cat'
"""
from ..core.items import RegexLabeller, make_labels, make_vocab, parent_label, py_value

__all__ = ["parent_label", "RegexLabeller", "make_labels", "make_vocab", "py_value"]
