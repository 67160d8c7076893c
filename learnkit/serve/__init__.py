"""Serving an export over HTTP: ``learnkit serve model.safetensors`` (install the ``serve`` extra).

A JSON API on FastAPI and uvicorn with concurrent requests batched onto the model (`DynamicBatcher`), an upload
page, and limits on what a client may send (`RequestLimits`, `slow_client_protocol`).
"""
from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the extras installed
    raise ImportError(f"learnkit.serve needs the serve extra ({e.name} is missing): "
                      'pip install "learnkit[serve]"') from e

from .app import ServeConfig, create_app, serve
from .batching import BatchStats, DynamicBatcher
from .limits import LimitStats, RequestLimits, slow_client_protocol
from .page import render_page
from .predictor import Predictor, RequestError

__all__ = ["ServeConfig", "create_app", "serve", "DynamicBatcher", "BatchStats", "RequestLimits", "LimitStats",
           "slow_client_protocol", "Predictor", "RequestError", "render_page"]
