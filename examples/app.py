"""A demo web app for an image classifier: upload a photo, see the top classes with their probabilities.

    learnkit train images PATH --out pets.safetensors     # or learn.export("pets.safetensors")
    python examples/app.py pets.safetensors                # then open http://127.0.0.1:8000

It needs nothing beyond learnkit: Python's own ``http.server`` serves one HTML page (an upload form that
calls the API with ``fetch``) and a JSON API,

    POST /predict    the image as the request body (any Content-Type), or a multipart form field
                     (``curl -F file=@cat.jpg http://127.0.0.1:8000/predict``)
                  -> {"prediction": "cat", "probability": 0.98, "top": [{"label": "cat", "probability": 0.98}, ...]}

A bad upload (empty, not an image, truncated) gets status 400 and {"error": "what is wrong"}; an upload
over ``--max-mb`` gets 413. The model runs on the CPU unless ``--device`` says otherwise.
"""
from __future__ import annotations

import argparse
import email.parser
import email.policy
import html
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from learnkit import load_learner
from learnkit.vision import ImageLoadError, decode_image_bytes

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem; }}
 #preview {{ max-width: 100%; max-height: 18rem; display: block; margin: 1rem 0; }}
 table {{ border-collapse: collapse; }} td {{ padding: .2rem .8rem .2rem 0; }}
 .bar {{ background: #3f51b5; height: .8rem; }} #error {{ color: #b00020; }}
</style></head>
<body>
<h1>{title}</h1>
<p>Classes: {classes}</p>
<form id="form"><input type="file" id="file" name="file" accept="image/*"> <button>Predict</button></form>
<img id="preview" alt="">
<h2 id="label"></h2>
<table id="top"></table>
<p id="error"></p>
<script>
const form = document.getElementById("form"), file = document.getElementById("file");
form.addEventListener("submit", async (event) => {{
  event.preventDefault();
  const f = file.files[0];
  if (!f) return;
  document.getElementById("preview").src = URL.createObjectURL(f);
  const res = await fetch("predict", {{method: "POST", body: f}});
  const out = await res.json();
  document.getElementById("error").textContent = out.error || "";
  document.getElementById("label").textContent = out.prediction === undefined ? "" : String(out.prediction);
  document.getElementById("top").innerHTML = (out.top || []).map(t =>
    `<tr><td>${{t.label}}</td><td>${{t.probability.toFixed(3)}}</td>` +
    `<td><div class="bar" style="width:${{Math.round(200 * t.probability)}}px"></div></td></tr>`).join("");
}});
</script>
</body></html>
"""


class Classifier:
    """An export loaded once; ``predict(image_bytes)`` → the JSON answer (thread-safe)."""

    def __init__(self, model: str | Path, device: str = "cpu", top_k: int = 5):
        self.learn = load_learner(model, device=device)
        if getattr(self.learn.dls, "vocab", None) is None or not hasattr(self.learn.dls, "decode_images"):
            raise SystemExit(f"{model} is not an image classifier export")
        self.top_k, self.lock = top_k, threading.Lock()

    def predict(self, data: bytes) -> dict[str, Any]:
        image = decode_image_bytes(data)  # raises ImageLoadError with a clear message
        with self.lock:
            label, _, probs = self.learn.predict(image)
        vocab = self.learn.dls.vocab
        top = probs.float().topk(min(self.top_k, len(vocab)))
        out = {"prediction": label if isinstance(label, (str, int, float, bool)) else str(label),
               "top": [{"label": str(vocab[int(i)]), "probability": round(float(p), 6)}
                       for p, i in zip(top.values, top.indices)]}
        out["probability"] = out["top"][0]["probability"]
        return out


def _upload(body: bytes, content_type: str) -> bytes:
    """The image bytes of a request: the body itself, or the first file part of a multipart form."""
    if not content_type.startswith("multipart/form-data"):
        return body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in msg.iter_parts():
        if part.get_filename() is not None or part.get_content_maintype() == "image":
            return part.get_payload(decode=True) or b""
    raise ValueError("the form has no file field; send the image as a file (curl -F file=@photo.jpg)")


def make_server(classifier: Classifier, host: str = "127.0.0.1", port: int = 8000,
                max_mb: float = 20.0) -> ThreadingHTTPServer:
    """The HTTP server (not started: call ``serve_forever()``); ``port=0`` picks a free port."""
    page = PAGE.format(title="What is in the photo?",
                       classes=html.escape(", ".join(map(str, classifier.learn.dls.vocab))))

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: dict) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}; the app is at /"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != "/predict":
                return self._json(HTTPStatus.NOT_FOUND, {"error": "POST the image to /predict"})
            size = int(self.headers.get("Content-Length") or 0)
            if size > max_mb * 2**20:
                return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                  {"error": f"the upload is {size / 2**20:.1f} MB; the limit is {max_mb:g} MB"})
            body = self.rfile.read(size)
            try:
                answer = classifier.predict(_upload(body, self.headers.get("Content-Type", "")))
            except (ImageLoadError, ValueError) as e:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            self._json(HTTPStatus.OK, answer)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet unless asked
            if self.server.verbose:
                super().log_message(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.verbose = False
    return server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a learnkit export of an image classifier (.safetensors)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--max-mb", type=float, default=20.0, help="largest upload accepted")
    ap.add_argument("--verbose", action="store_true", help="log each request")
    args = ap.parse_args()
    server = make_server(Classifier(args.model, args.device, args.top_k), args.host, args.port, args.max_mb)
    server.verbose = args.verbose
    print(f"serving {args.model} on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
