"""Every example script runs in ``--fast`` mode on the real data and prints its metric.

Each script takes ``--data PATH`` (default ``$LEARNKIT_DATA``), ``--epochs`` and ``--fast``. The runs are
integration tests: they skip when the data is absent, and a script that does not exist yet is skipped with
its name. The wall time of each run is printed (``-s`` shows it), never asserted. Runs get one intra-op
thread (``OMP_NUM_THREADS=1``) unless the environment sets another number: on a machine whose cores other
jobs share, two threads waiting on each other made these runs up to ten times slower.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
RUN_TIMEOUT = 600  # seconds: a guard against hangs; a --fast run should take well under a minute

#: script -> a regular expression its output must match: the metric's name, then its value.
METRIC = r"[-+]?\d*\.\d+|[-+]?\d+"
SCRIPTS: dict[str, str] = {
    "pets.py": rf"error_rate ({METRIC})",
    "pets_shards.py": rf"error_rate ({METRIC})",
    "pet_breeds.py": rf"error_rate ({METRIC})",
    "mnist_tiny.py": rf"error_rate ({METRIC})",
    "camvid.py": rf"pixel accuracy \(void excluded\) ({METRIC})",
    "camvid_tiny.py": rf"pixel accuracy \(void excluded\) ({METRIC})",
    "imdb.py": rf"validation accuracy ({METRIC})",
    "imdb_sample.py": rf"validation accuracy ({METRIC})",
    "imdb_lm.py": rf"with the LM encoder: validation accuracy ({METRIC})",
    "adult.py": rf"validation accuracy ({METRIC})",
    "movielens.py": rf"validation MSE ({METRIC})",
}

#: extra arguments of a script's fast run: imdb_sample.py trains the from-scratch LSTM here (imdb.py and the
#: imdb_sample notebook cover MiniLM), so that each text model trains once in CI.
ARGS: dict[str, list[str]] = {"imdb_sample.py": ["--arch", "lstm"]}

#: script -> more lines its output must contain (each real-data run happens once, here, and is checked here).
MUST_PRINT: dict[str, list[str]] = {
    "pets_shards.py": ["first validation batch bit-identical to the folder path: True",
                       "output layer solved on cached body features: True"],
    "imdb.py": ["predict('This movie was wonderful'):"],
    "imdb_sample.py": ["arch=lstm", "predict('This movie was wonderful'):"],
    "imdb_lm.py": ["validation perplexity", "sample 1: I liked this movie because", "sample 2:",
                   "without the LM encoder: validation accuracy"],
    "movielens.py": ["highest bias:", "lowest bias:", "10 recommendations for user 1"],
}


def _script(name: str) -> Path:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"examples/{name} does not exist yet")
    return path


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_example_takes_the_common_options(name: str):
    """The command-line contract, checked without running anything: ``--data``, ``--epochs``, ``--fast``
    and a docstring that says what the script does."""
    source = _script(name).read_text(encoding="utf-8")
    for flag in ("--data", "--epochs", "--fast"):
        assert f'"{flag}"' in source or f"'{flag}'" in source, f"examples/{name} has no {flag} option"
    assert "LEARNKIT_DATA" in source, f"examples/{name} does not default --data to $LEARNKIT_DATA"
    assert source.lstrip().startswith(('"""', "'''", "#!")), f"examples/{name} has no module docstring"


#: scripts that are not training runs, and the test that runs them.
APPS: dict[str, str] = {"app.py": "tests/deploy/test_app.py", "gradio_app.py": "tests/deploy/test_gradio_app.py"}


def test_every_script_is_known():
    """A new example script must be added to SCRIPTS (with the metric it prints), so that CI runs it."""
    for name, test in APPS.items():
        assert (REPO / test).is_file(), f"examples/{name} is tested by {test}, which does not exist"
    unknown = sorted(p.name for p in EXAMPLES.glob("*.py")
                     if p.name not in SCRIPTS and p.name not in APPS and not p.name.startswith("_"))
    assert not unknown, f"add {unknown} to SCRIPTS in tests/test_examples.py"


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_example_runs_fast(name: str, data_path: Path, tmp_path: Path):
    script = _script(name)
    env = {**os.environ, "LEARNKIT_DATA": str(data_path), "LEARNKIT_PROGRESS": "0", "MPLBACKEND": "Agg",
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    before = _listing(data_path)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), "--fast", "--data", str(data_path), *ARGS.get(name, [])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    took = time.perf_counter() - start
    print(f"examples/{name} --fast: {took:.1f} s")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"examples/{name} --fast failed (exit {proc.returncode}):\n{out[-4000:]}"
    match = re.search(SCRIPTS[name], proc.stdout)
    assert match, f"examples/{name} did not print its metric (/{SCRIPTS[name]}/):\n{proc.stdout[-2000:]}"
    value = float(match.group(1))
    low, high = (0.0, 25.0) if name == "movielens.py" else (0.0, 1.0)  # MSE of 1-5 stars; else a rate
    assert low <= value <= high, f"examples/{name} printed {match.group(0)!r}: outside [{low}, {high}]"
    assert "Traceback" not in proc.stderr, f"examples/{name} printed a traceback:\n{proc.stderr[-3000:]}"
    for line in MUST_PRINT.get(name, []):
        assert line in proc.stdout, f"examples/{name} did not print {line!r}:\n{proc.stdout[-2000:]}"
    if name == "movielens.py":  # ten recommended titles, each with its year
        recs = proc.stdout.split("10 recommendations for user 1")[1].strip().splitlines()[1:11]
        assert len(recs) == 10 and all("(" in line for line in recs), recs
    assert _listing(data_path) == before, f"examples/{name} wrote into the data folder {data_path}"


def _listing(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}
