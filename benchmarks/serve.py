"""``learnkit serve`` under load, with and without dynamic batching: requests/s and p50/p95 latency.

N concurrent clients (one keep-alive connection each) post pets photos (JPEG bytes, cycling through the
folder) to a ``learnkit serve`` process for T seconds; the server runs once with ``--max-batch 1`` (no
batching: one forward per request) and once with ``--max-batch B --max-wait-ms W``. The model is the pets
cat-vs-dog EfficientNet-Lite0 at 224 px that `vision_learner` builds (ImageNet body, untrained head:
throughput does not depend on the head's weights), or ``--model FILE``.

    python benchmarks/serve.py [--data DIR] [--clients 64] [--seconds 30] [--max-batch 32] [--max-wait-ms 5]
    python benchmarks/serve.py --rounds 3 ...      # the two servers in turn, 3 times: medians and each round's ratio
    python benchmarks/serve.py --task adult ...    # JSON rows of the Adult census table to a tabular model
    python benchmarks/serve.py --costs             # where a photo's time goes, in-process (no server, no clients)

On a machine shared with other work the load swings within minutes, and with it the numbers; ``--rounds N``
alternates the two servers N times so that both see the same load, and reports each round's ratio besides
the medians.

The clients run in this process (threads blocked on sockets), the server in its own; on a small machine they
share the cores, so the numbers are a lower bound for a server on its own machine. The server inherits this
environment: ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning) changes the
result a lot on a machine shared with other work, so the table says which policy ran.
"""
from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._harness import data_root, machine  # noqa: E402


def build_model(data: Path, out: Path, size: int) -> tuple[Path, list[Path]]:
    from learnkit.vision import ImageDataLoaders, Resize, get_image_files, vision_learner
    files = get_image_files(data / "pets" / "images")
    dls = ImageDataLoaders.from_name_func(files[0].parent, files[::10], lambda n: "cat" if n[0].isupper() else "dog",
                                          item_tfms=Resize(size), bs=16, device="cpu")
    learn = vision_learner(dls, "efficientnet_lite0", progress=False)
    return learn.export(out), files


def build_adult(data: Path, out: Path) -> tuple[Path, list[bytes]]:
    """A tabular classifier on the Adult census (one short epoch), and one JSON ``{"row": ...}`` body per row."""
    import json

    import pandas as pd

    from learnkit.tabular import TabularDataLoaders, tabular_learner
    df = pd.read_csv(data / "adult" / "adult.csv", skipinitialspace=True, na_values=["?"])
    cats = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex"]
    conts = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    dls = TabularDataLoaders.from_df(df.sample(4000, random_state=0), cat_names=cats, cont_names=conts,
                                     y_names="salary", bs=256, device="cpu")
    learn = tabular_learner(dls, layers=[200, 100], progress=False)
    learn.fit(1, 1e-2)
    rows = df[cats + conts].head(500).astype(object).where(df[cats + conts].head(500).notna(), None)
    bodies = [json.dumps({"row": r}).encode() for r in rows.to_dict("records")]
    return learn.export(out), bodies


def start(model: Path, flags: list[str]) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEARNKIT_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "learnkit", "serve", str(model), "--port", "0", *flags],
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("serving"):
        proc.kill()
        sys.exit(f"the server did not start: {line!r}")
    host, port = line.split()[-1].removeprefix("http://").rsplit(":", 1)
    return proc, host, int(port)


def load(host: str, port: int, photos: list[bytes], clients: int, seconds: float,
         ctype: str = "image/jpeg") -> dict:
    """``clients`` threads posting photos for ``seconds``; latencies of the requests that finished in time."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    t_end = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        i = k
        while time.monotonic() < t_end:
            body = photos[i % len(photos)]
            i += clients
            t0 = time.monotonic()
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
                res = conn.getresponse()
                res.read()
                ok = res.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
            t1 = time.monotonic()
            with lock:
                if ok and t1 <= t_end + 5:
                    latencies.append(t1 - t0)
                elif not ok:
                    errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    lat = sorted(latencies)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return {"requests": len(lat), "errors": errors[0], "wall_s": wall, "rps": len(lat) / wall,
            "p50_ms": 1000 * q[49], "p95_ms": 1000 * q[94]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--model", default=None, help="an export to serve (default: the pets model, built here)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=3, help="seconds of load before each measured run")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5)
    ap.add_argument("--forward-batch", type=int, default=None,
                    help="the batched server's images per forward (default: the server's, 8 on a CPU)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--photos", type=int, default=200, help="distinct photos the clients cycle through")
    ap.add_argument("--task", choices=["pets", "adult"], default="pets")
    ap.add_argument("--rounds", type=int, default=1, help="times the two servers run in turn (medians reported)")
    ap.add_argument("--costs", action="store_true", help="time decode, resize and the forward in-process instead")
    args = ap.parse_args()
    data = data_root(args.data)
    if args.costs:
        costs(data, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ctype = "image/jpeg"
        if args.task == "adult":
            model, photos = build_adult(data, Path(tmp) / "adult.safetensors")
            ctype = "application/json"
        else:
            if args.model:
                from learnkit.vision import get_image_files
                model, files = Path(args.model), get_image_files(data / "pets" / "images")
            else:
                model, files = build_model(data, Path(tmp) / "pets.safetensors", args.size)
            photos = [f.read_bytes() for f in files[3::3][: args.photos]]
        modes = (("unbatched (--max-batch 1)", ["--max-batch", "1"]),
                 (f"batched (--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g})",
                  ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
                   *(["--forward-batch", str(args.forward_batch)] if args.forward_batch else [])]))
        rounds: list[list[dict]] = []
        for k in range(args.rounds):
            rounds.append([])
            for name, flags in modes:
                r = run_server(model, flags, args, photos, ctype)
                r["load"] = os.getloadavg()[0]
                rounds[-1].append(r)
                print(f"round {k + 1}, {name}: {r['rps']:.1f} req/s, p50 {r['p50_ms']:.0f} ms, "
                      f"p95 {r['p95_ms']:.0f} ms, {r['requests']} requests, {r['errors']} errors, mean batch {r['mean_batch']}, "
                      f"load average {r['load']:.1f}", flush=True)
    what = f"{len(photos)} pets photos, {args.size} px" if args.task == "pets" else f"{len(photos)} Adult rows (JSON)"
    print(f"\n{args.clients} clients, {args.seconds:g} s each, {what}, {args.rounds} round(s); "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}; {machine()}\n")
    print("| server | requests/s | p50 latency | p95 latency | mean batch | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    med = []
    for j, (name, _) in enumerate(modes):
        rs = [rnd[j] for rnd in rounds]
        m = {key: statistics.median(r[key] for r in rs) for key in ("rps", "p50_ms", "p95_ms", "mean_batch")}
        med.append(m)
        print(f"| {name} | {m['rps']:.1f} | {m['p50_ms']:.0f} ms | {m['p95_ms']:.0f} ms | {m['mean_batch']:g} | "
              f"{sum(r['errors'] for r in rs)} |")
    a, b = med
    print(f"\nbatching (medians): {b['rps'] / a['rps']:.2f}x the requests/s, p95 {b['p95_ms'] / a['p95_ms']:.2f}x")
    if args.rounds > 1:
        print("each round: " + ", ".join(f"{v['rps'] / u['rps']:.2f}x req/s (p95 {v['p95_ms'] / u['p95_ms']:.2f}x)"
                                         for u, v in rounds))


def costs(data: Path, args: argparse.Namespace) -> None:
    """Milliseconds per photo of each step the server takes, measured in this process: decoding, preprocessing
    (``item_from_image``: decode + resize), and ``predict_batch`` at batch 1, 8 and 32 (stack, normalise,
    forward, answers; one forward per batch, and a batch of 32 run 8 images a forward, the server's CPU default), on one worker thread as the batcher runs it, with torch's default intra-op threads and
    with one; medians of ``args.rounds`` (at least 3) interleaved rounds over the same 32 photos."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from learnkit.serve.predictor import Predictor
    from learnkit.vision.io import decode_image_bytes
    with tempfile.TemporaryDirectory() as tmp:
        model, files = build_model(data, Path(tmp) / "pets.safetensors", args.size)
        p = Predictor(model)
    photos = [f.read_bytes() for f in files[3::3][:32]]
    samples = [p.item_from_image(b) for b in photos]
    pool, default_threads = ThreadPoolExecutor(1), torch.get_num_threads()

    def per_photo(fn, threads: int | None = None) -> float:
        def timed() -> float:
            if threads is not None:
                torch.set_num_threads(threads)  # the worker thread's intra-op threads (this benchmark only)
            fn()  # warm (a new batch shape builds its kernels)
            t0 = time.perf_counter()
            fn()
            return 1000 * (time.perf_counter() - t0) / len(photos)
        return pool.submit(timed).result()

    steps = {"decode (decode_image_bytes)": (lambda: [decode_image_bytes(b) for b in photos], None),
             "decode + resize (item_from_image)": (lambda: [p.item_from_image(b) for b in photos], None)}
    decoded = [decode_image_bytes(b) for b in photos]

    def resize_in_batch() -> None:  # the path before issue 29's round 2: the batch thread resized every photo
        with torch.inference_mode():
            p.learn.get_preds(dl=p.learn.dls.test_dl(decoded, bs=len(decoded)), with_decoded=True)
    steps["resize + predict at batch 32 in the batch thread (the old path)"] = (resize_in_batch, None)
    def run(bs: int, forward: int) -> None:  # batches of bs photos, each through the model `forward` at a time
        p.forward_batch = forward
        for i in range(0, len(samples), bs):
            p.predict_batch(samples[i: i + bs])

    for threads in (default_threads, 1):
        for bs in (1, 8, 32):
            steps[f"predict_batch at batch {bs}, {threads} intra-op thread(s)"] = (lambda bs=bs: run(bs, bs), threads)
        steps[f"predict_batch at batch 32, 8 per forward (the CPU default), {threads} intra-op thread(s)"] = (
            lambda: run(32, 8), threads)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(max(3, args.rounds)):
        for name, (fn, threads) in steps.items():
            times[name].append(per_photo(fn, threads if threads is not None else default_threads))
    print(f"\n{len(photos)} pets photos, {args.size} px; {machine()}\n")
    print("| step | ms per photo (median) | min |")
    print("| --- | ---: | ---: |")
    for name, v in times.items():
        print(f"| {name} | {statistics.median(v):.1f} | {min(v):.1f} |")


def run_server(model: Path, flags: list[str], args: argparse.Namespace, photos: list[bytes], ctype: str) -> dict:
    """Start a server with ``flags``, warm it up, load it for ``args.seconds``; its results and mean batch."""
    import json
    proc, host, port = start(model, flags + ["--max-inflight", str(max(64, args.clients))])
    try:
        load(host, port, photos, args.clients, args.warmup, ctype)
        r = load(host, port, photos, args.clients, args.seconds, ctype)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("GET", "/health")
        r["mean_batch"] = json.loads(conn.getresponse().read())["batching"]["mean_batch"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return r


if __name__ == "__main__":
    main()
