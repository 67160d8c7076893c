"""The runnable examples in the vision modules' docstrings."""
from __future__ import annotations

import doctest
import importlib

import pytest

import learnkit.vision as vision

MODULES = ["io", "models", "transforms", "augment", "labels", "data", "blocks", "classifier", "learner", "interpret", "show", "points"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    mod = importlib.import_module(f"learnkit.vision.{name}")
    extra = {k: getattr(vision, k) for k in vision.__all__}
    res = doctest.testmod(mod, extraglobs=extra, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0, f"{name} has no runnable example"
    assert res.failed == 0
