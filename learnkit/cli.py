"""The ``learnkit`` command (also ``python -m learnkit``): predict with an export, inspect one, train one.

    learnkit predict pets.safetensors photo.jpg more_photos/ [--json] [--top-k 3]
    learnkit info pets.safetensors [--json]
    learnkit train images PATH --arch efficientnet_lite0 --epochs 1 --size 224 --out pets.safetensors
    learnkit train images PATH --label-re '^(.+)_\\d+\\.jpg$' ...     # labels from the file names
    learnkit train images PATH --on-error skip ...                    # leave unreadable photos out
    learnkit serve pets.safetensors --port 8000 [--max-batch 32] [--max-wait-ms 5] [--max-mb 20]

``predict`` takes image files or folders for image models, ``.txt`` files for text classifiers and CSV files
(one prediction per row) for tabular and collaborative-filtering models. ``train images`` reads a folder of
class folders (``PATH/<label>/*.jpg``, or ``PATH/train`` and ``PATH/valid`` holding them), or with
``--label-re`` a folder of photos labelled by the first group of the regular expression on the file name.
Errors print one line, ``learnkit: error: ...``, and exit with status 1 (2 for a wrong command line).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]


_CHUNK = 64  # images decoded and predicted together by `learnkit predict`


class CLIError(Exception):
    """An error the command reports in one line."""


# --- info ------------------------------------------------------------------------------------------------
def _image_size(cfg: dict) -> list[int] | None:
    for t in reversed(cfg.get("item_tfms") or []):
        if isinstance(t, dict) and t.get("size"):
            return list(t["size"])
    return None


def model_info(path: str | Path) -> dict[str, Any]:
    """What ``learnkit info`` shows, read from the export's JSON header and tensor shapes (no model is built)."""
    from safetensors import safe_open

    import learnkit
    from learnkit.core.export import read_export_config
    cfg = read_export_config(path)
    dls = cfg["dls"].get("config", {})
    with safe_open(str(path), framework="pt") as f:
        n_params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    classes = dls.get("vocab") or dls.get("codes") or (dls.get("processor") or {}).get("vocab")
    kwargs = cfg["model"].get("kwargs", {})
    info = {"file": str(path), "task": cfg["dls"]["type"], "model": cfg["model"]["builder"],
            "arch": kwargs.get("arch") or kwargs.get("source"), "parameters": n_params,
            "classes": classes, "input_size": _image_size(dls), "precision": cfg.get("precision"),
            "training": cfg.get("training"), "exported_with": f"learnkit {cfg.get('learnkit_version')}, "
                                                              f"torch {cfg.get('torch_version')}",
            "learnkit_version": learnkit.__version__}
    return info


def _print_info(info: dict[str, Any]) -> None:
    rows = []
    for k, v in info.items():
        if v is None:
            continue
        if k == "classes":
            v = f"{len(v)}: " + ", ".join(map(str, v[:20])) + (" ..." if len(v) > 20 else "")
        elif k == "input_size":
            v = "x".join(map(str, v))
        elif k == "parameters":
            v = f"{v:,}"
        elif k == "training":
            v = f"{v['epochs']} epochs; last: " + ", ".join(f"{m} {x:.4g}" for m, x in v["final"].items())
        rows.append((k.replace("_", " "), str(v)))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


# --- predict ---------------------------------------------------------------------------------------------
def _image_files(paths: list[str]) -> list[Path]:
    from learnkit.vision.io import get_image_files
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = get_image_files(p)
            if not found:
                raise CLIError(f"no image files in folder {p}")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise CLIError(f"no such file or folder: {p}")
    return files


def _predict_rows(learn: Any, items: list, names: list[str], top_k: int) -> list[dict[str, Any]]:
    dl = learn.dls.test_dl(items)
    probs, _, dec = learn.get_preds(dl=dl, with_decoded=True)
    rows = []
    vocab = getattr(learn.dls, "vocab", None)
    for name, d, p in zip(names, dec, probs):
        label, idx, p = learn.dls.decode_pred(d, p)
        row: dict[str, Any] = {"input": name}
        if vocab is not None and p.ndim == 1 and len(p) == len(vocab) and not isinstance(label, list):
            top = p.float().topk(min(top_k, len(p)))
            row["prediction"] = _plain(label)
            row["probability"] = round(float(p[int(idx)]), 6)
            row["top"] = [[_plain(vocab[int(i)]), round(float(v), 6)] for v, i in zip(top.values, top.indices)]
        elif isinstance(label, list):  # multi-label
            row["prediction"] = [_plain(v) for v in label]
        elif hasattr(label, "ndim") and label.ndim == 2:  # a segmentation mask: the share of each class
            counts = label.reshape(-1).bincount(minlength=len(vocab or [])).float()
            shares = {str(vocab[i] if vocab else i): round(float(c / counts.sum()), 4) for i, c in enumerate(counts) if c}
            row["prediction"] = max(shares, key=shares.get)
            row["pixel_shares"] = shares
        else:
            row["prediction"] = _plain(label)
        rows.append(row)
    return rows


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def predict(model: str, inputs: list[str], top_k: int = 1, device: str | None = "cpu") -> list[dict[str, Any]]:
    """The rows ``learnkit predict`` prints: one dict per input (file, or CSV row)."""
    from learnkit.core.export import load_learner
    learn = load_learner(model, device=device)
    task = type(learn.dls).__name__
    if task in ("ImageDataLoaders", "SegmentationDataLoaders"):
        from learnkit.vision.io import ImageLoadError, load_image
        files, rows, errors = _image_files(inputs), [], []
        for start in range(0, len(files), _CHUNK):  # decoded once, a chunk at a time: memory stays bounded
            images, names = [], []
            for f in files[start: start + _CHUNK]:
                try:
                    images.append(load_image(f))
                    names.append(str(f))
                except ImageLoadError as e:  # one broken photo is reported, not fatal
                    errors.append({"input": str(f), "error": str(e)})
            if images:
                rows += _predict_rows(learn, images, names, top_k)
        return rows + errors
    if task == "TextDataLoaders":
        files = [Path(p) for p in inputs]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise CLIError(f"no such text file: {missing[0]}")
        return _predict_rows(learn, files, [str(p) for p in files], top_k)
    if task in ("TabularDataLoaders", "CollabDataLoaders"):
        import pandas as pd
        rows = []
        for p in map(Path, inputs):
            if not p.is_file():
                raise CLIError(f"no such CSV file: {p}")
            df = pd.read_csv(p)
            rows += _predict_rows(learn, df, [f"{p}:{i + 2}" for i in range(len(df))], top_k)
        return rows
    raise CLIError(f"learnkit predict does not know how to read inputs for a {task} model")


def _print_table(rows: list[dict[str, Any]], top_k: int) -> None:
    with_p = top_k <= 1 and any("probability" in r for r in rows)
    table = [("input", f"top {top_k}" if top_k > 1 else "prediction", "probability" if with_p else "")]
    for r in rows:
        if "error" in r:
            continue
        pred = r["prediction"]
        if top_k > 1 and "top" in r:
            pred = ", ".join(f"{c} {p:.3f}" for c, p in r["top"])
        prob = f"{r['probability']:.4f}" if "probability" in r and top_k <= 1 else ""
        table.append((r["input"], str(pred), prob))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


# --- train -----------------------------------------------------------------------------------------------
def train_images(path: str, arch: str, epochs: int, size: int, out: str, label_re: str | None, bs: int,
                 valid_pct: float, pretrained: bool, lr: float | None, on_error: str = "raise") -> Any:
    """``learnkit train images``: build the data, fine-tune, export. Returns the learner. ``--out`` is checked
    before anything is trained (a folder, an unwritable place); an export that still fails at the end is
    written to a rescue file, and the error says where."""
    from learnkit.core.paths import check_output_file, expand_path
    from learnkit.vision import ImageDataLoaders, Resize, error_rate, get_image_files, vision_learner
    try:
        out_path = check_output_file(out, "--out")
    except OSError as e:
        raise CLIError(f"{e}; nothing was trained") from None
    root = expand_path(path)
    if not root.is_dir():
        raise CLIError(f"no such folder: {root}")
    if label_re is not None:
        import re
        try:
            re.compile(label_re)
        except re.error as e:
            raise CLIError(f"--label-re {label_re!r} is not a valid regular expression: {e}") from None
        dls = ImageDataLoaders.from_name_re(root, get_image_files(root), label_re, valid_pct=valid_pct,
                                            item_tfms=Resize(size), bs=bs, on_error=on_error)
    else:
        if not any(p.is_dir() for p in root.iterdir()):
            raise CLIError(f"{root} has no class folders (PATH/<label>/image.jpg); for photos labelled by their "
                           "file names pass --label-re, e.g. --label-re '^(.+)_\\d+\\.\\w+$'")
        dls = ImageDataLoaders.from_folder(root, valid_pct=None if (root / "train").is_dir() else valid_pct,
                                           item_tfms=Resize(size), bs=bs, on_error=on_error)
    print(f"{len(dls.train.dataset)} training and {len(dls.valid.dataset) if dls.valid else 0} validation "
          f"images; classes: {', '.join(map(str, dls.vocab))}", file=sys.stderr)
    learn = vision_learner(dls, arch, pretrained=pretrained, metrics=error_rate)
    if pretrained:
        learn.fine_tune(epochs, base_lr=lr or 2e-3)
    else:
        learn.fit_one_cycle(epochs, lr or 1e-3)
    fname = learn.export(out_path.resolve())
    final = learn.recorder.final_record()
    print(f"saved {fname}; " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    return learn


# --- the command line ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``learnkit`` command line: ``predict``, ``info`` and ``train images``, with their options.

    >>> args = build_parser().parse_args(["predict", "pets.safetensors", "photo.jpg", "--top-k", "3"])
    >>> args.command, args.model, args.inputs, args.top_k, args.device
    ('predict', 'pets.safetensors', ['photo.jpg'], 3, 'cpu')
    """
    ap = argparse.ArgumentParser(prog="learnkit", description="Predict with, inspect and train learnkit models.")
    ap.add_argument("--version", action="version", version=f"learnkit {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="{predict,info,train,serve,shards}")
    p = sub.add_parser("predict", help="predict with an export: images, .txt files or CSV rows")
    p.add_argument("model", help="a learnkit export (.safetensors)")
    p.add_argument("inputs", nargs="+", metavar="FILES", help="image files or folders, .txt files, or CSV files")
    p.add_argument("--json", action="store_true", help="print JSON (one object per input) instead of a table")
    p.add_argument("--top-k", type=int, default=1, help="show the k most likely classes")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    i = sub.add_parser("info", help="show what an export holds: task, classes, input size, metrics")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")
    t = sub.add_parser("train", help="train a model and export it")
    tsub = t.add_subparsers(dest="task", required=True, metavar="{images}")
    ti = tsub.add_parser("images", help="an image classifier from class folders or file names")
    ti.add_argument("path", help="the image folder")
    ti.add_argument("--arch", default="efficientnet_lite0", help="timm model name (default efficientnet_lite0)")
    ti.add_argument("--epochs", type=int, default=1)
    ti.add_argument("--size", type=int, default=224, help="image size in pixels")
    ti.add_argument("--out", default="model.safetensors", help="where to write the export")
    ti.add_argument("--label-re", default=None, help="label = first group of this regex on the file name")
    ti.add_argument("--bs", type=int, default=32)
    ti.add_argument("--valid-pct", type=float, default=0.2)
    ti.add_argument("--lr", type=float, default=None)
    ti.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random init (offline)")
    ti.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                    help="a photo that cannot be read or labelled: stop (raise, default) or leave it out (skip)")
    _add_serve_parser(sub)
    sh = sub.add_parser("shards", help="write an image folder as WebDataset tar shards")
    shsub = sh.add_subparsers(dest="shards_command", required=True, metavar="{make}")
    sm = shsub.add_parser("make", help="class folders of images -> OUT/shard-000000.tar ... and OUT/vocab.json")
    sm.add_argument("folder", help="the image folder (labelled by each image's parent folder)")
    sm.add_argument("out", help="the folder to write the shards into")
    sm.add_argument("--per-shard", type=int, default=1000, help="samples per shard (default 1000)")
    sm.add_argument("--prefix", default="shard", help="shard file name prefix (default 'shard')")
    return ap


def _add_serve_parser(sub: Any) -> None:
    s = sub.add_parser("serve", help="serve an export as a JSON API with an upload page (the serve extra)")
    s.add_argument("model", help="a learnkit export (.safetensors)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    s.add_argument("--max-batch", type=int, default=32, help="most items in one batched forward (1: no batching)")
    s.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait to fill a batch")
    s.add_argument("--forward-batch", type=int, default=None,
                   help="images per forward pass within a batch (default: 8 on a CPU, where it is cheaper per image "
                        "than 32; the whole batch on a GPU)")
    s.add_argument("--max-mb", type=float, default=20.0, help="largest request body accepted (413 past it)")
    s.add_argument("--max-inflight", type=int, default=64, help="requests with a body at once (503 past it)")
    s.add_argument("--max-connections", type=int, default=1000, help="open connections (503 past it)")
    s.add_argument("--max-header-kb", type=int, default=16, help="largest request head (400 past it)")
    s.add_argument("--header-timeout", type=float, default=10.0, help="seconds for a request's headers to arrive")
    s.add_argument("--body-timeout", type=float, default=30.0, help="seconds for a request's body to arrive")
    s.add_argument("--top-k", type=int, default=5, help="classes in each answer")
    s.add_argument("--verbose", action="store_true", help="log each request")


def _serve(args: argparse.Namespace) -> None:
    try:
        from learnkit.serve import ServeConfig, serve
    except ImportError as e:
        raise CLIError(str(e)) from None
    cfg = ServeConfig(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                      max_mb=args.max_mb, max_inflight=args.max_inflight, max_connections=args.max_connections,
                      max_header_kb=args.max_header_kb, header_timeout=args.header_timeout,
                      body_timeout=args.body_timeout, top_k=args.top_k, forward_batch=args.forward_batch)
    cfg.check()
    serve(args.model, cfg, device=None if args.device == "auto" else args.device, verbose=args.verbose)


def _version() -> str:
    from learnkit import __version__
    return __version__


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 error).

    >>> main(["info", "no-such-model.safetensors"])  # an error: one line on stderr, exit status 1
    1
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            info = model_info(args.model)
            print(json.dumps(info, indent=1)) if args.json else _print_info(info)
        elif args.command == "predict":
            if args.top_k < 1:
                raise CLIError(f"--top-k must be at least 1, got {args.top_k}")
            rows = predict(args.model, args.inputs, args.top_k, None if args.device == "auto" else args.device)
            print(json.dumps(rows, indent=1)) if args.json else _print_table(rows, args.top_k)
            errors = [r for r in rows if "error" in r]
            for r in errors:
                print(f"learnkit: error: {_one_line(r['error'])}", file=sys.stderr)
            return 1 if errors else 0
        elif args.command == "train":
            if args.epochs < 1 or args.size < 8:
                raise CLIError("--epochs must be >= 1 and --size >= 8")
            train_images(args.path, args.arch, args.epochs, args.size, args.out, args.label_re, args.bs,
                         args.valid_pct, args.pretrained, args.lr, args.on_error)
        elif args.command == "serve":
            _serve(args)
        elif args.command == "shards":
            if args.per_shard < 1:
                raise CLIError(f"--per-shard must be at least 1, got {args.per_shard}")
            from .vision.shards import write_image_shards
            shards = write_image_shards(args.folder, args.out, args.per_shard, prefix=args.prefix)
            print(f"wrote {len(shards)} shards to {args.out} ({shards[0].name} ... {shards[-1].name}) and vocab.json")
    except KeyboardInterrupt:
        print("learnkit: interrupted", file=sys.stderr)
        return 130
    except (CLIError, OSError, ValueError, TypeError, KeyError, ImportError, RuntimeError) as e:
        msg = _one_line(str(e).strip("'\"") if isinstance(e, KeyError) else str(e))
        if args.command == "train":  # the Python option's name is not the command line's
            msg = re.sub(r"(pass )?on_error='skip'", lambda m: f"{m.group(1) or ''}--on-error skip", msg)
        print(f"learnkit: error: {msg or type(e).__name__}", file=sys.stderr)
        return 1
    return 0


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
