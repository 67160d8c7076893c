"""Every lesson notebook in examples/notebooks executes top to bottom, in fast mode, on the real data.

The kernel runs with ``LEARNKIT_FAST=1`` (each notebook's first cell turns that into a tiny run),
``LEARNKIT_DATA`` pointing at the datasets, progress bars on (what a notebook user sees) and matplotlib's
inline backend, in a temporary working directory (exports go there, never into the data folder). It gets
one intra-op thread (``OMP_NUM_THREADS=1``) unless the environment sets another number: on a machine
whose cores other jobs share, two threads waiting on each other made these runs up to ten times slower.

Besides "no cell raised", each executed notebook must show what a lesson promises: the DataLoaders and
Learner summaries as HTML tables, at least one inline plot (``lr_find``), the per-epoch metrics table, and
nothing on stderr — no warnings, no tracebacks, no text progress bars leaking into the page.

The committed notebooks carry the outputs of their last full run (the gallery: ``docs/build_gallery.py``,
checked by tests/test_gallery.py). Here each one runs from an in-memory copy whose outputs are cleared
first, so a stored output can never pass for a fresh one, and the file on disk is never written.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "examples" / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds for one cell: a guard against hangs, not a speed test


def _outputs(nb) -> list[tuple[int, dict]]:
    return [(i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _html(out: dict) -> str:
    return out.get("data", {}).get("text/html", "") if out.get("output_type") in ("display_data", "execute_result",
                                                                                    "update_display_data") else ""


def run_notebook(path: Path, data_root: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch):
    """Execute ``path`` in a fresh kernel (fast mode) and return the executed notebook."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # the stored outputs of the full run must not count as this run's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    monkeypatch.setenv("LEARNKIT_FAST", "1")
    monkeypatch.setenv("LEARNKIT_SMALL_DATA_WARNINGS", "0")  # the tiny runs make a few steps by design
    monkeypatch.setenv("LEARNKIT_DATA", str(data_root))
    monkeypatch.setenv("LEARNKIT_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as in Jupyter
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, startup_timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks in examples/notebooks"


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, data_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stored = path.read_bytes()
    nb = run_notebook(path, data_path, tmp_path, monkeypatch)
    assert path.read_bytes() == stored, f"{path.name}: the test run wrote into the committed notebook"
    outs = _outputs(nb)
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "a code cell did not run"

    stderr = [(i, out.get("text", "")) for i, out in outs if out.get("output_type") == "stream"
              and out.get("name") == "stderr"]
    assert not stderr, f"{path.name}: output on stderr (warnings or text progress bars): {stderr[:3]}"

    types = {out.get("output_type") for _, out in outs}
    assert "error" not in types
    assert any("image/png" in out.get("data", {}) for _, out in outs), f"{path.name}: no inline plot"
    html = [_html(out) for _, out in outs]
    assert any("<table" in h and "train_loss" in h for h in html), f"{path.name}: no per-epoch metrics table"
    assert any("<table" in h and "parameters" in h for h in html), f"{path.name}: no Learner summary"
    assert any("<table" in h and "train items" in h for h in html), f"{path.name}: no DataLoaders summary"
    exported = list(tmp_path.glob("*.safetensors"))
    assert exported, f"{path.name}: the export cell wrote no .safetensors file in the working directory"


def test_notebook_sources():
    """Valid notebooks whose first code cell reads LEARNKIT_FAST (the switch this test's runs rely on)."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert "LEARNKIT_FAST" in first.source, f"{path.name}: the first code cell must read LEARNKIT_FAST"
