"""benchmarks/seeds.py: one run per seed, the metric parsed from each run's output, mean and range."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "benchmarks" / "seeds.py"

#: a stand-in example: its "metric" is a known function of --seed, and seed 13 fails
FAKE = '''
import argparse, sys
p = argparse.ArgumentParser(); p.add_argument("--seed", type=int); p.add_argument("--scale", type=float, default=1)
a = p.parse_args()
if a.seed == 13:
    sys.exit("boom")
print("epoch 0 pixel accuracy (void excluded) 0.1")
print(f"pixel accuracy (void excluded) {a.scale * (0.8 + a.seed / 100):.4f}")
'''


def _load():
    spec = importlib.util.spec_from_file_location("seeds_benchmark", SEEDS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_seeds_runs_each_seed_and_summarizes(tmp_path: Path, capsys):
    script = tmp_path / "camvid_tiny.py"       # a known name: the regex of tests/test_examples.py applies
    script.write_text(FAKE)
    values = _load().main([str(script), "--seeds", "0", "2", "4", "--", "--scale", "0.5"])
    assert values == {0: pytest.approx(0.4), 2: pytest.approx(0.41), 4: pytest.approx(0.42)}  # the last line
    out = capsys.readouterr().out
    assert "seed 2: pixel accuracy (void excluded) 0.4100" in out
    assert "mean 0.4100 (std 0.0100) range [0.4000, 0.4200] over 3 seeds" in out


def test_seeds_stops_on_a_failed_run_or_a_missing_metric(tmp_path: Path):
    script = tmp_path / "camvid_tiny.py"
    script.write_text(FAKE)
    proc = subprocess.run([sys.executable, str(SEEDS), str(script), "--seeds", "1", "13"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "seed 13" in proc.stderr and "boom" in proc.stderr
    with pytest.raises(SystemExit, match="no line matches"):
        _load().main([str(script), "--seeds", "1", "--metric", r"error_rate ([\d.]+)"])
    other = tmp_path / "mine.py"
    other.write_text(FAKE)
    with pytest.raises(SystemExit):              # unknown script and no --metric: argparse error
        _load().main([str(other)])
