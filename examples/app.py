"""A demo web app for a learnkit model: upload a photo (or type a text), see the top classes.

    learnkit train images PATH --out pets.safetensors     # or learn.export("pets.safetensors")
    python examples/app.py pets.safetensors                # then open http://127.0.0.1:8000

This is ``learnkit serve`` (FastAPI on uvicorn, the ``serve`` extra: ``pip install "learnkit[serve]"``) with
its defaults: the page at ``/`` and the JSON API behind it,

    POST /predict    the image as the request body (any image type), or a multipart form field
                     (``curl -F file=@cat.jpg http://127.0.0.1:8000/predict``)
                  -> {"prediction": "cat", "probability": 0.98, "top": [{"label": "cat", "probability": 0.98}, ...]}

A bad upload (empty, not an image, truncated) gets status 400 and {"error": "what is wrong"}; an upload over
``--max-mb`` gets 413, the wrong kind of body 415. Concurrent requests are batched onto the model. Every
``learnkit serve`` flag works here too (``--port 0`` picks a free port; ``--help`` lists them).
"""
from __future__ import annotations

import sys

from learnkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
