"""Issue 29: a DeprecationWarning raised from learnkit's code, or by a deprecated API that learnkit calls
directly, fails the tests (pyproject.toml's filterwarnings and tests/conftest.py); third-party internals do not."""
from __future__ import annotations

import functools
import types
import warnings

import pytest


def _module(name: str, source: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(source, mod.__dict__)
    return mod


# a library whose deprecated function blames itself (stacklevel=1), as torchvision 0.29's decoders do, and one
# that blames its caller (stacklevel=2)
LIB = _module("fakelib.io", "import warnings\n"
                            "def _warn():\n    warnings.warn('old API', DeprecationWarning)\n"
                            "def old():\n    _warn()\n    return 1\n"
                            "def old_blaming_caller():\n    warnings.warn('old API', DeprecationWarning, stacklevel=2)\n")
OTHER = _module("otherlib.core", "def uses_old(f):\n    return f()\n")


def _called_from(module_name: str, fn):
    return _module(module_name, "def call(fn):\n    return fn()\n").call(fn)


def test_learnkit_code_calling_a_deprecated_api_fails():
    with pytest.raises(DeprecationWarning, match="old API"):
        _called_from("learnkit.fake", LIB.old)  # the library blames itself: re-attributed to learnkit
    with pytest.raises(DeprecationWarning, match="old API"):
        _called_from("learnkit.fake", LIB.old_blaming_caller)
    with pytest.raises(DeprecationWarning, match="mine"):
        _called_from("learnkit.fake", functools.partial(warnings.warn, "mine", DeprecationWarning))


def test_third_party_internals_only_warn():
    with pytest.warns(DeprecationWarning, match="old API"):  # another library calls it: not learnkit's business
        _called_from("learnkit.fake", functools.partial(OTHER.uses_old, LIB.old))
    with pytest.warns(DeprecationWarning, match="old API") as rec:
        assert _called_from("thirdparty.mod", LIB.old) == 1
    assert rec[0].filename == "<string>"  # where fakelib warned: the location is left alone outside learnkit
