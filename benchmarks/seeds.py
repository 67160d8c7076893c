"""Seed spread of an example: run it once per seed and print each seed's metric, the mean and the range.

    python benchmarks/seeds.py examples/camvid_tiny.py                 # seeds 0 1 2
    python benchmarks/seeds.py examples/camvid_tiny.py --seeds 0 1 2 3
    python benchmarks/seeds.py examples/pets.py -- --epochs 2          # arguments after -- go to the example

Each run is a fresh process, ``python SCRIPT --seed S [extra arguments]``, one after another (never in
parallel, so the runs do not compete for the cores). The metric is read from the example's output with the
regular expression that ``tests/test_examples.py`` checks for it (``SCRIPTS``: e.g. ``pixel accuracy (void
excluded) 0.8123``; its first group is the value), or with ``--metric REGEX`` for another script. A run that
fails or prints no metric stops the whole benchmark with its output's tail, since a mean over the seeds that
did run would mislead. Wall time of each run (process start to exit) is printed too.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def known_metrics() -> dict[str, str]:
    """``{script file name: regex}`` from ``tests/test_examples.py`` (the one place the metric lines are named).

    >>> "camvid_tiny.py" in known_metrics()
    True
    """
    spec = importlib.util.spec_from_file_location("_example_metrics", REPO / "tests" / "test_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports pytest, which the test environment has
    return dict(module.SCRIPTS)


def parse_metric(output: str, pattern: str) -> float:
    """The value of the last line of ``output`` matching ``pattern`` (its first group, else the whole match).

    >>> parse_metric("epoch 1\\npixel accuracy (void excluded) 0.8123\\n", r"pixel accuracy \\(void excluded\\) ([\\d.]+)")
    0.8123
    """
    matches = list(re.finditer(pattern, output))
    if not matches:
        raise ValueError(f"no line matches /{pattern}/ in the output")
    m = matches[-1]
    return float(m.group(1) if m.groups() else m.group(0))


def summarize(values: dict[int, float]) -> str:
    """One line: mean, standard deviation (over 2+ seeds) and [min, max] of the per-seed values.

    >>> summarize({0: 0.80, 1: 0.82, 2: 0.81})
    'mean 0.8100 (std 0.0100) range [0.8000, 0.8200] over 3 seeds'
    """
    vals = list(values.values())
    std = f" (std {statistics.stdev(vals):.4f})" if len(vals) > 1 else ""
    return f"mean {statistics.fmean(vals):.4f}{std} range [{min(vals):.4f}, {max(vals):.4f}] over {len(vals)} seeds"


def run_seed(script: Path, seed: int, pattern: str, extra: Sequence[str], timeout: float) -> tuple[float, float]:
    """Run ``script --seed seed *extra`` and return ``(metric, wall seconds)``; exits with the tail on failure."""
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), "--seed", str(seed), *extra], env=env, check=False,
                          capture_output=True, text=True, timeout=timeout)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"seed {seed}: {script.name} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    try:
        return parse_metric(proc.stdout, pattern), took
    except ValueError as e:
        sys.exit(f"seed {seed}: {e} of {script.name}:\n{proc.stdout[-2000:]}")


def main(argv: Sequence[str] | None = None) -> dict[int, float]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("script", help="the example to run, e.g. examples/camvid_tiny.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run (default 0 1 2)")
    parser.add_argument("--metric", default=None,
                        help="regex of the metric line, value in group 1 (default: tests/test_examples.py's)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run")
    args = parser.parse_args(argv)
    script = Path(args.script)
    if not script.is_file():
        parser.error(f"no such script: {script}")
    pattern = args.metric
    if pattern is None:
        scripts = known_metrics()
        if script.name not in scripts:
            parser.error(f"{script.name} is not in tests/test_examples.py's SCRIPTS ({', '.join(sorted(scripts))}); "
                         "pass --metric REGEX")
        pattern = scripts[script.name]
    name = pattern.rsplit(" (", 1)[0].replace("\\", "").strip() if " (" in pattern else "metric"
    print(" ".join([script.name, *extra]) + f": seeds {args.seeds}, metric /{pattern}/", flush=True)
    values: dict[int, float] = {}
    for seed in args.seeds:
        values[seed], took = run_seed(script, seed, pattern, extra, args.timeout)
        print(f"seed {seed}: {name} {values[seed]:.4f}  ({took:.1f} s, load average {os.getloadavg()[0]:.1f})",
              flush=True)
    print(f"{name}: {summarize(values)}")
    return values


if __name__ == "__main__":
    main()
