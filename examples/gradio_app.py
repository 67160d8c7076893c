"""A Gradio demo of a learnkit export, as fastbook ch. 2 deploys its bear classifier: upload a photo (or type a
text), see the top classes. Needs the ``gradio`` extra: ``pip install "learnkit[gradio]"``.

    python examples/gradio_app.py pets.safetensors --examples photos/    # then open http://127.0.0.1:7860

An image model gets an image upload (with the photos of ``--examples`` to click on), a text model a text box.
The same file is the ``app.py`` of a Hugging Face Space (see docs/guides/deploy.md): with no arguments it
serves ``model.safetensors`` beside it, with the images in ``examples/`` beside it as examples.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import gradio as gr

from learnkit import load_learner

HERE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def classifier(model: str | Path, top_k: int = 5) -> tuple[Any, bool]:
    """``(fn, takes_images)``: ``fn(image_or_text) -> {class: probability}`` over the export's classes."""
    learn = load_learner(model, device="cpu")
    vocab = getattr(learn.dls, "vocab", None)
    images = hasattr(learn.dls, "decode_images")
    if vocab is None or type(learn.dls).__name__ not in ("ImageDataLoaders", "TextDataLoaders"):
        raise SystemExit(f"{model} is not an image or text classifier export")

    def predict(x: Any) -> dict[str, float]:
        if x is None or (isinstance(x, str) and not x.strip()):
            raise gr.Error("give the model a photo or a text first")
        _, _, probs = learn.predict(x)
        top = probs.float().topk(min(top_k, len(vocab)))
        return {str(vocab[int(i)]): float(p) for p, i in zip(top.values, top.indices)}

    return predict, images


def build_demo(model: str | Path, examples: list[str] | None = None, top_k: int = 5) -> gr.Interface:
    """The Gradio interface for an export: an image upload or a text box in, the top classes out."""
    predict, images = classifier(model, top_k)
    inputs = gr.Image(type="pil", label="Photo") if images else gr.Textbox(lines=4, label="Text")
    return gr.Interface(fn=predict, inputs=inputs, outputs=gr.Label(num_top_classes=top_k, label="Top classes"),
                        examples=examples or None, cache_examples=False, flagging_mode="never",
                        title="What is in the photo?" if images else "What is this text?",
                        description=f"A learnkit model ({Path(model).name}).")


def example_files(folder: Path, n: int = 6) -> list[str]:
    """Up to ``n`` images of ``folder`` (sorted), as Gradio examples."""
    return [str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES][:n] \
        if folder.is_dir() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=str(HERE / "model.safetensors"), help="a learnkit export")
    ap.add_argument("--examples", default=str(HERE / "examples"), help="a folder of example images")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                    help="0.0.0.0 to be reachable from other machines (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--top-k", type=int, default=5)
    args = ap.parse_args()
    demo = build_demo(args.model, example_files(Path(args.examples)), args.top_k)
    demo.launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
