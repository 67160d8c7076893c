"""The documentation is tested like code.

- ``mkdocs build --strict`` passes (skipped when the ``docs`` extra is not installed);
- the docstring examples of learnkit's modules run as doctests (the cheap ones: all but `SLOW_DOCTESTS`);
- the code blocks of the guides (``docs/guides/*.md``) run, in order, as one script per page;
- the example gallery lists every example script and notebook there is, and the built site renders every
  notebook as a page with its stored outputs (tables and plots), linked from the gallery's card grid.
"""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import learnkit

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

#: Modules whose docstring examples are not run here, and why. Keep this short: an example that is too slow
#: to run is usually too slow to read, too.
SLOW_DOCTESTS: dict[str, str] = {}

#: Modules that need an optional extra: their doctests are skipped when it is not installed.
OPTIONAL_DEPS = {"learnkit.text": ("transformers", "tokenizers"), "learnkit.serve": ("fastapi", "uvicorn", "multipart")}

#: Guide pages whose ```python blocks are executed (task pages need the real data: the notebooks cover them).
GUIDES = ["guides/callbacks.md", "guides/training.md", "guides/export.md"]


def _module_names() -> list[str]:
    names = ["learnkit"]
    for info in pkgutil.walk_packages(learnkit.__path__, prefix="learnkit."):
        names.append(info.name)
    return sorted(names)


MODULES = _module_names()


# --- mkdocs --------------------------------------------------------------------------------------------
def test_mkdocs_build_strict(tmp_path: Path):
    for mod in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", "mkdocs.yml",
                           "-d", str(site)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "vision_learner" in index
    learner = (site / "api" / "learner" / "index.html").read_text(encoding="utf-8")
    assert "fit_one_cycle" in learner and "lr_find" in learner, "the API reference lost the Learner's methods"
    callbacks = (site / "guides" / "callbacks" / "index.html").read_text(encoding="utf-8")
    assert "after_cancel_fit" in callbacks
    # doctest blocks render as code, not as nested block quotes
    data = (site / "api" / "data" / "index.html").read_text(encoding="utf-8")
    assert "<blockquote>" not in data and "DataLoaders.from_dsets" in data
    _check_gallery(site)


def _check_gallery(site: Path) -> None:
    """Every notebook is a page with its outputs; the gallery page shows a thumbnail card linking to each."""
    gallery = (site / "gallery" / "index.html").read_text(encoding="utf-8")
    notebooks = sorted((REPO / "examples" / "notebooks").glob("*.ipynb"))
    for nb in notebooks:
        page = site / "notebooks" / nb.stem / "index.html"
        assert page.is_file(), f"no page for {nb.name} in the site"
        assert f'href="../notebooks/{nb.stem}/"' in gallery, f"the gallery page does not link to {nb.stem}"
        assert f'src="../img/gallery/{nb.stem}.png"' in gallery, f"the gallery page shows no thumbnail of {nb.stem}"
        assert (site / "img" / "gallery" / f"{nb.stem}.png").is_file()
        assert (site / "notebooks" / nb.stem / nb.name).is_file(), f"{nb.name} is not downloadable from its page"
        html = page.read_text(encoding="utf-8")
        assert "jp-OutputArea" in html and "train_loss" in html, f"{nb.stem}: no outputs (per-epoch table) on its page"
    pets = (site / "notebooks" / "pets" / "index.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', pets)) >= 4, "the pets page lost its plots"
    assert "<table" in pets and "error_rate" in pets


# --- doctests ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    if name in SLOW_DOCTESTS:
        pytest.skip(f"slow doctest: {SLOW_DOCTESTS[name]}")
    for prefix, deps in OPTIONAL_DEPS.items():
        if name == prefix or name.startswith(prefix + "."):
            for dep in deps:
                pytest.importorskip(dep)
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    module = importlib.import_module(name)
    # Examples are written as a user reads them, after `from <its task package> import *`.
    package = importlib.import_module(_task_package(name))
    extra = {k: getattr(package, k) for k in getattr(package, "__all__", []) if k not in vars(module)}
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name, extraglobs=extra)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = _Collect()
    for test in tests:
        runner.run(test, out=report)
    assert runner.failures == 0, f"{runner.failures} doctest failure(s) in {name}:\n{report.text[-4000:]}"


def _task_package(name: str) -> str:
    """The package whose ``import *`` a module's examples assume: its task package, or learnkit.core."""
    for pkg in ("learnkit.vision.segmentation", "learnkit.vision", "learnkit.text", "learnkit.tabular",
                "learnkit.collab", "learnkit.core"):
        if name == pkg or name.startswith(pkg + "."):
            return pkg
    return "learnkit"


class _Collect:
    def __init__(self):
        self.parts: list[str] = []

    def __call__(self, s: str) -> None:
        self.parts.append(s)

    @property
    def text(self) -> str:
        return "".join(self.parts)


#: The namespaces whose public names (``__all__``) each show a runnable example.
EXAMPLE_PACKAGES = ["learnkit.core", "learnkit.vision", "learnkit.vision.segmentation", "learnkit.text",
                    "learnkit.tabular", "learnkit.collab", "learnkit.datasets"]

#: Public classes and functions without a ``>>>`` example (``module.QualName``: why). Keep it short: a name whose
#: example cannot run offline and cheaply (a service, real data) can usually still show its construction.
NO_EXAMPLE: dict[str, str] = {}


def _skip_missing_optional_deps(name: str) -> None:
    for prefix, deps in OPTIONAL_DEPS.items():
        if name == prefix or name.startswith(prefix + "."):
            for dep in deps:
                pytest.importorskip(dep)


def _has_example(obj: object) -> bool:
    """A ``>>>`` example in the object's own docstring (a class: its own, or its own ``__init__``'s)."""
    docs = [obj.__doc__]
    if inspect.isclass(obj):
        docs.append(getattr(vars(obj).get("__init__"), "__doc__", None))
    return any(">>>" in (d or "") for d in docs)


def _public_objects(package: str) -> dict[str, object]:
    """``module.QualName`` → object for the classes and functions in ``package.__all__`` that learnkit defines."""
    module = importlib.import_module(package)
    out = {}
    for name in module.__all__:
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and str(getattr(obj, "__module__", "")).startswith("learnkit"):
            out[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return out


@pytest.mark.parametrize("package", EXAMPLE_PACKAGES)
def test_public_names_have_examples(package: str):
    """Every public class and function of a namespace has a runnable ``>>>`` example in its docstring (run by
    `test_doctests`), but exceptions and warnings (their docstring says when they are raised) and `NO_EXAMPLE`."""
    _skip_missing_optional_deps(package)
    missing = sorted(qual for qual, obj in _public_objects(package).items()
                     if not (inspect.isclass(obj) and issubclass(obj, BaseException))
                     and qual not in NO_EXAMPLE and not _has_example(obj))
    assert not missing, (f"{len(missing)} public name(s) of {package} have no >>> example in their docstring "
                         "(add one, or a reason to NO_EXAMPLE):\n  " + "\n  ".join(missing))


def test_no_example_entries_are_needed():
    """Every `NO_EXAMPLE` entry is a public name that still has no example (stale entries go)."""
    public: dict[str, object] = {}
    for package in EXAMPLE_PACKAGES:
        try:
            public.update(_public_objects(package))
        except ImportError:  # a package whose optional extra is not installed
            continue
    for qual in NO_EXAMPLE:
        if qual in public:
            assert not _has_example(public[qual]), f"{qual} has an example now: remove it from NO_EXAMPLE"


def test_docs_helpers_doctests():
    """The MkDocs helpers under docs/ (the griffe extension) have doctests of their own."""
    spec = importlib.util.spec_from_file_location("griffe_doctest", DOCS / "griffe_doctest.py")
    if importlib.util.find_spec("griffe") is None:
        pytest.skip("griffe is not installed (pip install -e '.[docs]')")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = doctest.testmod(mod)
    assert result.attempted and not result.failed
    fenced = mod.fence_doctests("Args:\n    x: a value.\n\n>>> f(1)  # doctest: +SKIP\n[2, 6]\n\nText.")
    assert "```pycon\n>>> f(1)\n[2, 6]\n```" in fenced
    assert mod.fence_doctests("Examples:\n    >>> 1\n    1") == "Examples:\n    >>> 1\n    1"  # griffe's own


def test_docs_hook_prunes_only_optional_missing_pages(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    nav = [{"Home": "index.md"}, {"Bad inputs": "bad-inputs.md"}, {"Guides": [{"A": "a.md"}]}]
    assert mod._prune(nav, tmp_path) == [{"Home": "index.md"}, {"Guides": [{"A": "a.md"}]}]
    (tmp_path / "bad-inputs.md").write_text("# Bad inputs\n")
    assert mod._prune(nav, tmp_path) == nav


def test_docs_hook_adds_the_notebooks_as_pages(tmp_path: Path):
    """docs/hooks.py puts each examples/notebooks/*.ipynb on the site as notebooks/<name>.ipynb, read in place."""
    pytest.importorskip("mkdocs")
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = SimpleNamespace(site_dir=str(tmp_path), use_directory_urls=True)
    files = mod.notebook_files(config)
    notebooks = sorted((REPO / "examples" / "notebooks").glob("*.ipynb"))
    assert [f.src_uri for f in files] == [f"notebooks/{p.name}" for p in notebooks]
    assert [Path(f.abs_src_path) for f in files] == notebooks
    assert not any(f.is_documentation_page() for f in files)  # mkdocs-jupyter's on_files makes them pages


# --- guide pages -----------------------------------------------------------------------------------------
def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.mark.parametrize("page", GUIDES)
def test_guide_code_runs(page: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    path = DOCS / page
    blocks = _python_blocks(path)
    assert blocks, f"{page} has no ```python blocks"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page}[block {i + 1}]", "exec"), namespace)  # noqa: S102 - our own docs


def test_gallery_lists_every_example():
    gallery = (DOCS / "guides" / "gallery.md").read_text(encoding="utf-8")
    for script in sorted((REPO / "examples").glob("*.py")):
        assert f"examples/{script.name}" in gallery, f"docs/guides/gallery.md does not list examples/{script.name}"
    for nb in sorted((REPO / "examples" / "notebooks").glob("*.ipynb")):
        assert f"examples/notebooks/{nb.name}" in gallery, f"docs/guides/gallery.md does not list {nb.name}"
