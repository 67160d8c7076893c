"""onnxruntime vs eager PyTorch on the CPU: latency of the pets classifier (EfficientNet-Lite0, 224 px) at
batch 1 and 32, from ``uint8`` images to probabilities (scaling and normalisation included on both sides).

The model is the one `vision_learner` builds (ImageNet weights when the offline package is installed,
random init otherwise: latency does not depend on the weights); ``learn.export_onnx`` writes the graph.
Eager runs the same module as learnkit's ``get_preds`` does (``inference_mode``, channels-last on the
CPU). Runs are interleaved (torch, ort, torch, ort...) and the median per batch is printed.

    python benchmarks/onnx_latency.py [--data DIR] [--threads 2] [--runs 20] [--size 224] [--write]

``--write`` also saves the table to ``benchmarks/ONNX_RESULTS.md`` (shown in the docs' deploy guide).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._harness import data_root, machine  # noqa: E402
from learnkit.vision import ImageDataLoaders, Resize, get_image_files, vision_learner  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root with pets/images (default $LEARNKIT_DATA)")
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for both runtimes")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per batch size and runtime")
    ap.add_argument("--write", action="store_true", help="save the table to benchmarks/ONNX_RESULTS.md")
    args = ap.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    images = data_root(args.data) / "pets" / "images"
    files = get_image_files(images)[::15]  # 63 photos of both kinds: only the pipeline is needed
    dls = ImageDataLoaders.from_name_func(images, files, lambda n: n[0].isupper(), item_tfms=Resize(args.size),
                                          bs=32, device="cpu")
    try:
        learn = vision_learner(dls, args.arch, pretrained=True, progress=False)
        weights = "ImageNet"
    except Exception as e:  # noqa: BLE001 - weights absent: latency is the same with random ones
        print(f"(no pretrained weights: {e}; random init)")
        learn = vision_learner(dls, args.arch, pretrained=False, progress=False)
        weights = "random"
    learn.model.eval()
    onnx_path = learn.export_onnx(Path(tempfile.mkdtemp()) / "pets.onnx")
    exporter = __import__("json").loads(onnx_path.with_suffix(".json").read_text())["exporter"]
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    batch = torch.cat([b[0] for b in dls.test_dl(files[:32], bs=32).raw])  # uint8 [32, 3, H, W]

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return learn.loss_func.activation(learn.model(dls.prepare_images(x, training=False)).float())

    def onnx(x: torch.Tensor):
        return sess.run(None, {"image": x.numpy()})[0]

    lines = ["| batch | PyTorch eager (ms) | onnxruntime (ms) | speed-up | max abs. probability difference |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for bs in (1, 32):
        x = batch[:bs]
        diff = float(abs(torch.from_numpy(onnx(x)) - eager(x)).max())
        times: dict[str, list[float]] = {"torch": [], "ort": []}
        for _ in range(2):  # warm-up
            eager(x), onnx(x)
        runs = args.runs if bs == 1 else max(3, args.runs // 4)
        for _ in range(runs):
            for name, f in (("torch", eager), ("ort", onnx)):
                t = time.perf_counter()
                f(x)
                times[name].append(1000 * (time.perf_counter() - t))
        pt, ot = statistics.median(times["torch"]), statistics.median(times["ort"])
        lines.append(f"| {bs} | {pt:.1f} | {ot:.1f} | {pt / ot:.2f}x | {diff:.1e} |")
    lines += ["", f"Median of interleaved runs ({args.runs} at batch 1, {max(3, args.runs // 4)} at batch 32); "
              f"{machine()}; {args.arch} ({weights} weights) at {args.size} px; {args.threads} threads each; "
              f"onnxruntime {ort.__version__} ({exporter} export); `python benchmarks/onnx_latency.py --write`, "
              f"{time.strftime('%Y-%m-%d')}."]
    print("\n".join(lines))
    if args.write:
        (Path(__file__).parent / "ONNX_RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
