"""Side-by-side benchmark plumbing: one long-lived worker process per side, runs interleaved.

Each side (learnkit, fastai, plain torchvision...) runs in its own process started with its own venv's
python, so the frameworks never share an interpreter; a worker imports its framework once, then runs the
jobs the driver sends it one at a time (a JSON line on stdin -> a JSON line on stdout, marked with
``@@RESULT``), so the sides can be interleaved job by job (A, B, B, A, ...) and machine noise hits both alike.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MARK = "@@RESULT "


def data_root(arg: str | None) -> Path:
    """``--data``, else ``$LEARNKIT_DATA``, else ``../shared/data`` beside the repository."""
    for cand in (arg, os.environ.get("LEARNKIT_DATA"), str(REPO.parent / "shared" / "data")):
        if cand and Path(cand).is_dir():
            return Path(cand).resolve()
    sys.exit("data not found: pass --data DIR or set LEARNKIT_DATA (the folder with pets/, adult/, ml-100k/)")


def machine() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {dev}; python {platform.python_version()}, torch {torch.__version__}; "
            f"load average {os.getloadavg()[0]:.1f} at start")


class Worker:
    """A side's process: ``python script --worker NAME`` with that side's interpreter."""

    def __init__(self, name: str, python: str, script: Path, threads: int | None = None):
        self.name = name
        full_env = {**os.environ, "LEARNKIT_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
        if threads:  # torch's intra-op threads (read at import): the same for every side
            full_env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([python, str(script), "--worker", name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=full_env, cwd=str(REPO))
        self.started = self.call({"job": "ready"})
        self.start_s = time.perf_counter() - t0

    def call(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(MARK):
                res = json.loads(line[len(MARK):])
                if "error" in res:
                    raise RuntimeError(f"{self.name} worker failed on job {job['job']!r}:\n{res['error']}")
                return res
        raise RuntimeError(f"{self.name} worker exited (code {self.proc.wait()}) while running job {job['job']!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def serve(jobs: dict[str, Callable[..., dict[str, Any]]], ready: Callable[[], dict[str, Any]]) -> None:
    """The worker side: answer each JSON job line with ``MARK + json`` (errors come back as text)."""
    out = sys.stdout
    sys.stdout = sys.stderr  # anything the frameworks print goes to stderr, never into the protocol
    for line in sys.stdin:
        job = json.loads(line)
        try:
            res = ready() if job["job"] == "ready" else jobs[job["job"]](**job.get("args", {}))
        except Exception:  # noqa: BLE001 - reported to the driver, which stops
            res = {"error": traceback.format_exc()}
        out.write(MARK + json.dumps(res) + "\n")
        out.flush()


def interleaved(workers: list[Worker], job: dict[str, Any], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Run ``job`` ``rounds`` times on every worker, rotating who goes first each round."""
    results: dict[str, list[dict[str, Any]]] = {w.name: [] for w in workers}
    for r in range(rounds):
        order = workers[r % len(workers):] + workers[: r % len(workers)]
        for w in order:
            results[w.name].append(w.call(job))
    return results


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
