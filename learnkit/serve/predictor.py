"""What the server does with an export: turn a request into items, predict a batch of items, answer in JSON.

Images come as bytes (decoded with `decode_image_bytes`, the decoder `learn.predict(bytes)` uses); texts as
JSON strings; table rows and (user, item) queries as JSON objects. The path is the one `learn.predict` takes
for one item (``dls.test_dl``, then ``get_preds``), so the server gives the same answer as `learn.predict`.
An image is decoded and resized by ``item_from_image`` on the request's own thread, so that a batch's
preprocessing runs in parallel and overlaps the forward of the batch before it; ``predict_batch`` then stacks
the prepared images and runs them through the model ``forward_batch`` at a time. Texts and rows go through
``test_dl`` in the batch.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

__all__ = ["Predictor", "RequestError"]

_IMAGE_TASKS = {"ImageDataLoaders": "image", "SegmentationDataLoaders": "segmentation"}
_JSON_TASKS = {"TextDataLoaders": "text", "TabularDataLoaders": "tabular", "CollabDataLoaders": "collab"}


class RequestError(ValueError):
    """A request the server refuses, with the HTTP status to answer (400, 413, 415...)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Predictor:
    """An export loaded once, predicting batches of items (thread-safe: one batch at a time).

    >>> import pandas as pd
    >>> from learnkit.tabular import TabularDataLoaders, tabular_learner
    >>> df = pd.DataFrame({"job": ["a", "b"] * 20, "age": range(40), "y": ["no", "yes"] * 20})
    >>> dls = TabularDataLoaders.from_df(df, cat_names="job", cont_names="age", y_names="y", bs=8, device="cpu")
    >>> p = Predictor(tabular_learner(dls, layers=[8], progress=False))
    >>> p.task
    'tabular'
    >>> items, single = p.items_from_json({"rows": [{"job": "a", "age": 3}, {"job": "b", "age": 4}]})
    >>> [sorted(a) for a in p.predict_batch(items)]
    [['prediction', 'probability', 'top'], ['prediction', 'probability', 'top']]
    """

    def __init__(self, model: Any, device: str | None = "cpu", top_k: int = 5, max_items: int = 1024,
                 forward_batch: int | None = None):
        if forward_batch is not None and (isinstance(forward_batch, bool) or not isinstance(forward_batch, int)
                                          or forward_batch < 1):
            raise ValueError(f"forward_batch must be a positive number of images, or None; got {forward_batch!r}")
        if isinstance(model, (str, Path)):
            from learnkit.core.export import load_learner
            self.source = str(model)
            model = load_learner(model, device=device)
        else:
            self.source = None
        self.learn, self.top_k, self.max_items = model, top_k, max_items
        if forward_batch is None and self.learn.device.type == "cpu":  # a CPU: 8 images a forward
            forward_batch = 8
        self.forward_batch = forward_batch  # None: the whole batch in one forward (a GPU)
        name = type(self.learn.dls).__name__
        self.task = _IMAGE_TASKS.get(name) or _JSON_TASKS.get(name)
        if self.task is None:
            raise ValueError(f"learnkit serve does not know how to read requests for a {name} model")
        self.vocab = getattr(self.learn.dls, "vocab", None)
        self._lock = threading.Lock()

    @property
    def takes_images(self) -> bool:
        """Whether requests carry image bytes (else JSON)."""
        return self.task in ("image", "segmentation")

    # --- requests -> items -------------------------------------------------------------------------
    def item_from_image(self, data: bytes) -> tuple:
        """One upload decoded and preprocessed as ``dls.test_dl`` does it (the validation item transforms, e.g.
        the resize): the sample ``predict_batch`` stacks. A bad image raises `ImageLoadError`."""
        from learnkit.vision.io import decode_image_bytes
        return self.learn.dls.test_dl([decode_image_bytes(data)]).dataset[0]

    def items_from_json(self, obj: Any) -> tuple[list, bool]:
        """``(items, single)`` from a JSON body: ``{"text": ...}``/``{"texts": [...]}`` for text models,
        ``{"row": {...}}``/``{"rows": [...]}`` for tabular and collaborative-filtering models."""
        if self.takes_images:
            raise RequestError(415, "this model takes an image: send the image bytes as the body, or as a "
                                    "multipart file field (curl -F file=@photo.jpg)")
        one, many = ("text", "texts") if self.task == "text" else ("row", "rows")
        kind = str if self.task == "text" else dict
        if not isinstance(obj, dict) or (one in obj) == (many in obj):
            raise RequestError(400, f'send a JSON object with "{one}" (one) or "{many}" (a list); '
                                    f"got {_describe(obj)}")
        items, single = ([obj[one]], True) if one in obj else (obj[many], False)
        if not isinstance(items, list) or not items:
            raise RequestError(400, f'"{many}" must be a non-empty list')
        if len(items) > self.max_items:
            raise RequestError(413, f'{len(items)} {many} in one request; the limit is {self.max_items}')
        bad = next((i for i, x in enumerate(items) if not isinstance(x, kind)), None)
        if bad is not None:
            raise RequestError(400, f"{one} {bad} is a {type(items[bad]).__name__}, expected a "
                                    f"{'string' if kind is str else 'JSON object'}")
        return items, single

    # --- items -> answers --------------------------------------------------------------------------
    def predict_batch(self, items: list) -> list[dict[str, Any]]:
        """One answer per item: ``{"prediction", "probability", "top": [{"label", "probability"}]}`` for a
        classifier, ``{"prediction": value}`` for a regression, ``{"prediction", "pixel_shares"}`` for a mask.
        Image items are the samples of ``item_from_image``, run ``forward_batch`` at a time (on a CPU 8: a
        forward of eight 224-px images keeps its activations in the cache and costs about 0.7x per image what
        one of 32 does, ``benchmarks/serve.py --costs``); JSON items the texts or rows of ``items_from_json``."""
        import torch

        from learnkit.core.blockloader import collate_skipping
        with self._lock, torch.inference_mode():
            step = self.forward_batch or max(1, len(items))
            dl = ([collate_skipping(items[i:i + step]) for i in range(0, len(items), step)] if self.takes_images
                  else self.learn.dls.test_dl(items))
            probs, _, dec = self.learn.get_preds(dl=dl, with_decoded=True)
            return [self._answer(d, p) for d, p in zip(dec, probs)]

    def _answer(self, decoded: Any, probs: Any) -> dict[str, Any]:
        label, idx, p = self.learn.dls.decode_pred(decoded, probs)
        vocab = self.vocab
        if vocab is not None and p.ndim == 1 and len(p) == len(vocab) and not isinstance(label, list):
            top = p.float().topk(min(self.top_k, len(p)))
            return {"prediction": _plain(label), "probability": round(float(p[int(idx)]), 6),
                    "top": [{"label": _plain(vocab[int(i)]), "probability": round(float(v), 6)}
                            for v, i in zip(top.values, top.indices)]}
        if isinstance(label, list):  # multi-label
            return {"prediction": [_plain(v) for v in label]}
        if hasattr(label, "ndim") and label.ndim == 2:  # a segmentation mask: the share of each class
            counts = label.reshape(-1).bincount(minlength=len(vocab or [])).float()
            shares = {str(vocab[i] if vocab else i): round(float(c / counts.sum()), 4)
                      for i, c in enumerate(counts) if c}
            return {"prediction": max(shares, key=shares.get), "pixel_shares": shares}
        return {"prediction": _plain(label)}

    def info(self) -> dict[str, Any]:
        """What ``/info`` shows about the model.

        >>> import pandas as pd
        >>> from learnkit.tabular import TabularDataLoaders, tabular_learner
        >>> df = pd.DataFrame({"x": range(20), "y": ["a", "b"] * 10})
        >>> dls = TabularDataLoaders.from_df(df, cont_names="x", y_names="y", bs=4, device="cpu")
        >>> Predictor(tabular_learner(dls, layers=[4], progress=False)).info()["classes"]
        ['a', 'b']
        """
        out: dict[str, Any] = {}
        if self.source is not None:
            from learnkit.cli import model_info
            out.update(model_info(self.source))
        out.update({"task": self.task, "classes": [_plain(v) for v in self.vocab] if self.vocab is not None else None,
                    "input": "image bytes or a multipart file field" if self.takes_images else
                    ('JSON {"text": ...} or {"texts": [...]}' if self.task == "text" else
                     'JSON {"row": {...}} or {"rows": [...]}'),
                    "device": str(self.learn.device)})
        return out


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        return "an object with keys " + (", ".join(map(repr, list(obj)[:5])) or "none")
    return f"a JSON {type(obj).__name__}"
