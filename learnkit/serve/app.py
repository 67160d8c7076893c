"""The serving app: FastAPI on uvicorn, with concurrent requests batched onto the model.

    learnkit serve pets.safetensors --port 8000 --max-batch 32 --max-wait-ms 5 --max-mb 20

- ``POST /predict``: an image model takes the image as the body (any image type) or as a multipart file field
  (``curl -F file=@cat.jpg``); a text model takes ``{"text": ...}`` or ``{"texts": [...]}`` (or a
  ``text/plain`` body); tabular and collaborative-filtering models take ``{"row": {...}}`` or ``{"rows": [...]}``.
  It answers ``{"prediction", "probability", "top": [{"label", "probability"}]}`` (a list under
  ``"predictions"`` for ``texts``/``rows``). A bad request gets 400, a body over ``--max-mb`` 413, the wrong
  kind of body 415, each with ``{"error": "what is wrong"}``.
- ``GET /health``: liveness, with the batching and limit counters; ``GET /info``: the model and the settings;
  ``GET /``: an upload page; ``GET /docs``: the OpenAPI page.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .batching import DynamicBatcher
from .limits import LimitStats, RequestLimits, slow_client_protocol
from .page import render_page
from .predictor import Predictor, RequestError

__all__ = ["ServeConfig", "create_app", "serve"]


@dataclass
class ServeConfig:
    """The server's settings (``learnkit serve`` flags).

    >>> ServeConfig(max_batch=1).max_body
    20971520
    """
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_mb: float = 20.0
    max_inflight: int = 64
    max_connections: int = 1000
    max_header_kb: int = 16
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    top_k: int = 5
    forward_batch: int | None = None  # images per forward (None: 8 on a CPU, the whole batch on a GPU)

    @property
    def max_body(self) -> int:
        """``max_mb`` in bytes."""
        return int(self.max_mb * 2**20)

    def check(self) -> None:
        """Refuse settings that cannot work, naming the flag.

        >>> ServeConfig(max_mb=0).check()
        Traceback (most recent call last):
        ...
        ValueError: --max-mb must be positive, got 0
        """
        for flag, v in (("max-batch", self.max_batch), ("max-mb", self.max_mb), ("max-inflight", self.max_inflight),
                        ("max-connections", self.max_connections), ("max-header-kb", self.max_header_kb),
                        ("header-timeout", self.header_timeout), ("body-timeout", self.body_timeout),
                        ("top-k", self.top_k),
                        ("forward-batch", 1 if self.forward_batch is None else self.forward_batch)):
            if not v > 0:
                raise ValueError(f"--{flag} must be positive, got {v}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"--max-wait-ms must be 0 or more, got {self.max_wait_ms}")


def create_app(predictor: Predictor, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``predictor`` (batching starts with the app's lifespan).

    >>> import pandas as pd
    >>> from learnkit.tabular import TabularDataLoaders, tabular_learner
    >>> df = pd.DataFrame({"x": range(20), "y": ["a", "b"] * 10})
    >>> dls = TabularDataLoaders.from_df(df, cont_names="x", y_names="y", bs=4, device="cpu")
    >>> app = create_app(Predictor(tabular_learner(dls, layers=[4], progress=False)))
    >>> sorted(r.path for r in app.routes if r.path in ("/", "/predict", "/health", "/info"))
    ['/', '/health', '/info', '/predict']
    """
    cfg = config or ServeConfig()
    cfg.check()
    batcher = DynamicBatcher(predictor.predict_batch, cfg.max_batch, cfg.max_wait_ms)
    limit_stats = LimitStats()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="learnkit serve", lifespan=lifespan,
                  description=f"Predictions from a learnkit {predictor.task} model.")
    app.add_middleware(RequestLimits, max_body=cfg.max_body, body_timeout=cfg.body_timeout,
                       max_inflight=cfg.max_inflight, stats=limit_stats)
    app.state.batcher, app.state.limits, app.state.predictor = batcher, limit_stats, predictor
    app.state.max_body = cfg.max_body
    page = render_page(predictor.vocab, images=predictor.takes_images) \
        if predictor.takes_images or predictor.task == "text" else None

    @app.get("/", response_class=HTMLResponse)
    async def index() -> Any:
        if page is None:
            return HTMLResponse(f'<p>A {predictor.task} model: POST JSON to <a href="docs">/predict</a>.</p>')
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "queue": batcher.pending, "batching": batcher.stats.as_dict(),
                "limits": limit_stats.as_dict()}

    @app.get("/info")
    async def info() -> dict:
        return {**predictor.info(), "server": {k: v for k, v in asdict(cfg).items() if k not in ("host", "port")}}

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        try:
            items, single = await _read_items(request, predictor)
            answers = await batcher.submit(items)
        except RequestError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except ClientDisconnect:  # the client went away mid-upload: nobody to answer
            return JSONResponse({"error": "the client disconnected"}, status_code=400)
        except asyncio.QueueFull:
            return JSONResponse({"error": "the server is busy; retry shortly"}, status_code=503)
        except (OSError, ValueError, KeyError, TypeError) as e:  # ImageLoadError is an OSError
            msg = str(e).strip("'\"") if isinstance(e, KeyError) else str(e)
            return JSONResponse({"error": msg or type(e).__name__}, status_code=400)
        return answers[0] if single else {"predictions": answers}

    return app


async def _read_items(request: Request, predictor: Predictor) -> tuple[list, bool]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if predictor.takes_images:
        if ctype == "multipart/form-data":
            # the body itself is capped by RequestLimits; a part may be as large as the whole body
            form = await request.form(max_files=4, max_fields=16, max_part_size=request.app.state.max_body)
            upload = next((v for v in form.values() if hasattr(v, "read")), None)
            if upload is None:
                raise RequestError(400, "the form has no file field; send the image as a file "
                                        "(curl -F file=@photo.jpg)")
            data = await upload.read()
        elif ctype in ("application/json", "application/x-www-form-urlencoded") or ctype.startswith("text/"):
            raise RequestError(415, f"this model takes an image, not {ctype}: send the image bytes as the body "
                                    "(any image type) or as a multipart file field (curl -F file=@photo.jpg)")
        else:
            data = await request.body()
        return [await run_in_threadpool(predictor.item_from_image, data)], True
    body = await request.body()
    if ctype == "text/plain" and predictor.task == "text":
        return predictor.items_from_json({"text": body.decode("utf-8", errors="replace")})
    if ctype not in ("application/json", ""):
        raise RequestError(415, f"this model takes JSON (Content-Type: application/json), not {ctype}")
    if not body:
        raise RequestError(400, "the request body is empty; send JSON")
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None
    return predictor.items_from_json(obj)


def serve(model: str | Path | Predictor, config: ServeConfig | None = None, device: str | None = "cpu",
          verbose: bool = False) -> None:
    """Load ``model`` and serve it until interrupted; prints ``serving MODEL on http://HOST:PORT`` when ready
    (``port=0`` picks a free port).

    >>> callable(serve)  # blocks until Ctrl-C: run it from `learnkit serve`
    True
    """
    import uvicorn
    cfg = config or ServeConfig()
    cfg.check()
    predictor = model if isinstance(model, Predictor) else Predictor(model, device=device, top_k=cfg.top_k,
                                                                            forward_batch=cfg.forward_batch)
    app = create_app(predictor, cfg)
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cfg.host, cfg.port))
    sock.listen(2048)
    uv = uvicorn.Config(app, http=slow_client_protocol(cfg.header_timeout), ws="none", lifespan="on",
                        limit_concurrency=cfg.max_connections, h11_max_incomplete_event_size=cfg.max_header_kb * 1024,
                        timeout_keep_alive=5, timeout_graceful_shutdown=3, log_level="info" if verbose else "warning",
                        access_log=verbose)
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"serving {model if not isinstance(model, Predictor) else predictor.task} on http://{host}:{port}",
          flush=True)
    try:
        uvicorn.Server(uv).run(sockets=[sock])
    except KeyboardInterrupt:
        print("learnkit serve: stopped", file=sys.stderr)
    finally:
        sock.close()
