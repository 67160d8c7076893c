"""examples/gradio_app.py: launched on 127.0.0.1 and called through ``gradio_client`` like a remote user would, it
gives `learn.predict`'s top class, for a photo (a pets photo when LEARNKIT_DATA has them) and for a text.
Skipped without the ``gradio`` extra."""
from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _app():
    spec = importlib.util.spec_from_file_location("gradio_app", REPO / "examples" / "gradio_app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _roundtrip(demo, payload) -> dict:
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        return client.predict(payload, api_name="/predict")
    finally:
        demo.close()


def _photo(module_image_learner) -> Path:
    """A pets photo when the data is there, else one of the generated images."""
    root = os.environ.get("LEARNKIT_DATA") or str(REPO.parent / "shared" / "data")
    photos = sorted((Path(root) / "pets" / "images").glob("*.jpg"))[:1] if Path(root).is_dir() else []
    return photos[0] if photos else module_image_learner.path / "imgs" / "cat_0.png"


def test_gradio_image_demo_answers_like_predict(module_image_learner):
    learn = module_image_learner
    model = learn.export(learn.path / "gradio.safetensors")
    photo = _photo(learn)
    examples = [str(p) for p in sorted((learn.path / "imgs").glob("*.png"))[:2]]
    demo = _app().build_demo(model, examples)
    answer = _roundtrip(demo, gradio_client.handle_file(str(photo)))
    label, idx, probs = learn.predict(photo)
    assert answer["label"] == label, (answer, label)
    confidences = {c["label"]: c["confidence"] for c in answer["confidences"]}
    assert confidences[label] == pytest.approx(float(probs[idx]), abs=1e-4)


def test_gradio_text_demo_answers_like_predict(tmp_path):
    import pandas as pd

    from learnkit.text import TextDataLoaders, text_classifier_learner
    texts = pd.DataFrame({"text": ["good great movie", "bad awful plot"] * 6, "label": ["pos", "neg"] * 6})
    dls = TextDataLoaders.from_df(texts, tok="words", min_freq=1, bs=4, device="cpu")
    learn = text_classifier_learner(dls, "lstm", config={"emb_dim": 8, "hidden": 8, "head_hidden": 8},
                                    progress=False, path=tmp_path)
    model = learn.export(tmp_path / "text.safetensors")
    answer = _roundtrip(_app().build_demo(model), "a good great movie")
    assert answer["label"] == learn.predict("a good great movie")[0]
