"""The gallery notebooks carry true, fresh outputs, and the gallery page and the README quote them.

``docs/build_gallery.py`` runs every notebook of ``examples/notebooks`` on the real data and stores the
outputs, with the SHA-256 of the code cells, the run time and the metrics the last cell printed in the
notebook's ``learnkit`` metadata. These tests read the committed files (nothing is executed, except the
integration test of the script itself, which writes elsewhere):

- the code cells still hash to the stored hash (a code edit without a rerun fails here);
- every code cell ran, in order, in one full (not fast) run, without errors or stderr, and every cell that
  plots shows an image;
- each notebook is under 1 MB;
- the gallery page has a card per notebook, with a thumbnail that exists and the stored metric;
- the stored metric is what the last cell prints, and the README rows naming a notebook quote it;
- the README picture and the screenshots of the gallery exist.

Each check is a function returning its problems, also run on a spoiled copy to show that it can fail.
"""
from __future__ import annotations

import copy
import importlib.util
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "examples" / "notebooks").glob("*.ipynb"))
INDEX = REPO / "docs" / "gallery" / "index.md"
MAX_BYTES = 1_000_000
#: A code cell matching this draws a figure; vision notebooks draw their batches and results too.
PLOTS = re.compile(r"\blr_find\(|\.plot_\w+\(|\bshow_images\(")
VISION_PLOTS = re.compile(r"\.show_(batch|results)\(")


def _load_build():
    spec = importlib.util.spec_from_file_location("build_gallery", REPO / "docs" / "build_gallery.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks its module up while the module runs
    spec.loader.exec_module(mod)
    return mod


build = _load_build()


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


# --- the checks ---------------------------------------------------------------------------------------
def hash_problems(nb) -> list[str]:
    stored = nb.metadata.get("learnkit", {}).get("code_sha256")
    if stored != build.code_sha256(nb):
        return [f"code cells hash to {build.code_sha256(nb)[:12]}, the outputs are from {str(stored)[:12]}: "
                f"the code changed without a rerun (python docs/build_gallery.py NAME)"]
    return []


def output_problems(nb) -> list[str]:
    problems = []
    info = nb.metadata.get("learnkit", {})
    if info.get("fast", True):
        problems.append("no record of a full run (metadata learnkit.fast is not false)")
    counts = [c.get("execution_count") for c in _code(nb)]
    if counts != list(range(1, len(counts) + 1)):
        problems.append(f"the code cells did not run once each, top to bottom: execution counts {counts}")
    if not any(c.get("outputs") for c in _code(nb)):
        problems.append("no outputs at all")
    vision = any("learnkit.vision" in c.source for c in _code(nb))
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        kinds = [(o.get("output_type"), o.get("name")) for o in cell.outputs]
        if ("error", None) in kinds or ("stream", "stderr") in kinds:
            problems.append(f"cell {i}: an error or stderr output")
        plots = PLOTS.search(cell.source) or (vision and VISION_PLOTS.search(cell.source))
        if plots and not build.images(cell):
            problems.append(f"cell {i} plots ({cell.source.splitlines()[0][:50]}) but has no image output")
    return problems


def metric_problems(nb) -> list[str]:
    stored = nb.metadata.get("learnkit", {}).get("metrics")
    printed = build.last_cell_metrics(nb)
    if not printed:
        return ["the last code cell prints no `name value` metric line"]
    if stored != printed:
        return [f"metadata metrics {stored} differ from what the last cell prints, {printed}"]
    return []


# --- the committed notebooks -------------------------------------------------------------------------
def test_there_are_gallery_notebooks():
    names = [p.stem for p in NOTEBOOKS]
    assert "pet_breeds" in names and len(names) >= 7, names
    assert sorted(names) == sorted(build.EXAMPLES), "docs/build_gallery.py EXAMPLES must list every notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_are_fresh_and_complete(path: Path):
    nb = _read(path)
    problems = hash_problems(nb) + output_problems(nb) + metric_problems(nb)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes (limit {MAX_BYTES})"
    assert nb.metadata.learnkit["seconds"] > 0


def test_the_checks_can_fail():
    nb = _read(REPO / "examples" / "notebooks" / "pets.ipynb")
    edited = copy.deepcopy(nb)
    _code(edited)[2].source += "\n# an edit"
    assert hash_problems(edited) and not hash_problems(nb)
    # markdown and outputs are not code: editing them keeps the hash
    prose = copy.deepcopy(nb)
    prose.cells[0].source += " More prose."
    assert not hash_problems(prose)

    no_plots = copy.deepcopy(nb)
    for cell in _code(no_plots):
        cell.outputs = [o for o in cell.outputs if "image/png" not in o.get("data", {})]
    assert any("no image output" in p for p in output_problems(no_plots))
    rerun_part = copy.deepcopy(nb)
    _code(rerun_part)[3].execution_count = 99
    assert any("top to bottom" in p for p in output_problems(rerun_part))
    fast = copy.deepcopy(nb)
    fast.metadata.learnkit["fast"] = True
    assert output_problems(fast)

    other_metric = copy.deepcopy(nb)
    name = next(iter(other_metric.metadata.learnkit["metrics"]))
    other_metric.metadata.learnkit["metrics"][name] += 0.01
    assert metric_problems(other_metric) and not metric_problems(nb)


def test_metric_lines_parse():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(...)")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                  text="error_rate 0.0053 (1/188 wrong)\nmean_iou 0.61\nwall 3 s\n")]
    assert build.last_cell_metrics(nb) == {"error_rate": 0.0053, "mean_iou": 0.61, "wall": 3.0}
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="Error rate: 0.1\n")]
    assert build.last_cell_metrics(nb) == {}
    assert build.format_seconds(42.4) == "42 s" and build.format_seconds(110.0) == "1 min 50 s"


# --- the gallery page and the README -----------------------------------------------------------------
def test_gallery_index_cards_and_thumbnails():
    from PIL import Image

    index = INDEX.read_text(encoding="utf-8")
    thumbs = re.findall(r"\]\((\.\./img/gallery/[\w-]+\.png)\)", index)
    assert len(thumbs) == len(NOTEBOOKS), f"{len(thumbs)} thumbnails for {len(NOTEBOOKS)} notebooks"
    for ref in thumbs:
        png = (INDEX.parent / ref).resolve()
        assert png.is_file(), f"docs/gallery/index.md shows {ref}, which does not exist"
        with Image.open(png) as img:
            assert img.format == "PNG" and img.size == build.THUMB_SIZE
        assert png.stat().st_size < 250_000, f"{png.name}: a thumbnail of {png.stat().st_size} bytes"
    for path in NOTEBOOKS:
        info = _read(path).metadata.learnkit
        assert f"](../notebooks/{path.name})" in index, f"no card links to {path.name}"
        assert f"../img/gallery/{path.stem}.png" in index
        assert f"Metric: {build.format_metrics(info['metrics'])}<br>" in index, \
            f"the card of {path.stem} does not quote its stored metric: rerun python docs/build_gallery.py --no-run"


def test_readme_quotes_the_notebook_metrics():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/img/gallery-strip.png" in readme and (REPO / "docs" / "img" / "gallery-strip.png").is_file()
    rows = [line for line in readme.splitlines() if line.startswith("|") and "examples/notebooks/" in line]
    quoted = {re.search(r"examples/notebooks/(\w+)\.ipynb", row).group(1): row for row in rows}
    assert {"mnist_tiny", "camvid_tiny", "imdb_sample"} <= set(quoted), f"README rows for notebooks: {sorted(quoted)}"
    for name, row in quoted.items():
        info = _read(REPO / "examples" / "notebooks" / f"{name}.ipynb").metadata.learnkit
        assert build.format_metrics(info["metrics"]) in row, f"README's {name} row does not quote {info['metrics']}"


def test_gallery_screenshots_are_kept():
    """docs/gallery_screenshots.py's two pictures of the built site: the card grid and a notebook page."""
    from PIL import Image

    for name in ("docs-gallery-page.png", "docs-gallery-notebook.png"):
        path = REPO / "docs" / "img" / name
        assert path.is_file(), f"docs/img/{name} is missing: python docs/gallery_screenshots.py --build"
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width >= 1000, (name, img.format, img.size)
        assert path.stat().st_size < 400_000, f"{name}: {path.stat().st_size} bytes"


# --- the script itself -------------------------------------------------------------------------------
@pytest.mark.integration
def test_build_script_runs_a_copy(data_path: Path, tmp_path: Path):
    """A fast run of one notebook, written elsewhere: the same code hash as the committed notebook, a parsed
    metric, images, and the committed file untouched."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = REPO / "examples" / "notebooks" / "adult.ipynb"
    before = path.read_bytes()
    assert build.main(["adult", "--fast", "--out", str(tmp_path), "--data", str(data_path), "--threads", "1"]) == 0
    assert path.read_bytes() == before, "the build script wrote into the committed notebook in --out mode"
    out = _read(tmp_path / "adult.ipynb")
    assert out.metadata.learnkit["fast"] is True
    assert out.metadata.learnkit["code_sha256"] == _read(path).metadata.learnkit["code_sha256"] == build.code_sha256(out)
    assert set(out.metadata.learnkit["metrics"]) == {"accuracy"} and not metric_problems(out)
    assert any(build.images(c) for c in _code(out))
    assert output_problems(out) == ["no record of a full run (metadata learnkit.fast is not false)"]
