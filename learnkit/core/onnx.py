"""`export_onnx`: a trained learner as an ONNX graph plus a JSON sidecar, for onnxruntime and friends.

The graph holds everything that is a tensor operation: the task's preprocessing that runs on the device
(for images: ``uint8`` → ``[0, 1]`` → the fixed batch transforms → the model's normalisation), the model,
and the loss' activation (softmax/sigmoid: the outputs are probabilities, per pixel for segmentation;
regression values pass unchanged). The batch dimension is dynamic. Everything else that inference needs
— the class names, the tabular procs' tables, the collab id maps, the tokenizer — is in the sidecar
``path.with_suffix('.json')``, together with the graph's input and output names, dtypes and shapes.

Each task's DataLoaders says what the graph takes, with ``dls.onnx_spec()`` returning an `OnnxSpec`:

- images and masks: ``image`` ``uint8 [B, 3, H, W]`` RGB at the training size;
- tables: ``cats`` ``int64 [B, n_cat]`` (codes from the sidecar's procs) and ``conts`` ``float32 [B, n_cont]``
  (already filled and normalised by the procs);
- ratings: ``users`` and ``items`` ``int64 [B]`` (indices from the sidecar's id maps);
- texts: ``input_ids`` and ``attention_mask`` ``int64 [B, L]``.

The graph is exported with ``torch.onnx.export(..., dynamo=True)``; if that fails for a model, with the
TorchScript exporter (``dynamo=False``), with a warning; the sidecar's ``"exporter"`` says which.

>>> # learn.export_onnx("pets.onnx")           # writes pets.onnx and pets.json
>>> # import onnxruntime as ort; sess = ort.InferenceSession("pets.onnx")
>>> # probs = sess.run(None, {"image": uint8_batch.numpy()})[0]
"""
from __future__ import annotations

import importlib.util
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from .paths import expand_path
from .losses import loss_activation

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["OnnxSpec", "OnnxModel", "export_onnx", "check_onnx", "ONNX_FORMAT"]

ONNX_FORMAT = "learnkit-onnx"


@dataclass
class OnnxSpec:
    """What a task's ONNX graph takes, and how it becomes the model's input.

    Attributes:
        input_names: the graph's inputs, in order.
        example: one example tensor per input (batch of 2 or more; it fixes dtypes and the non-batch sizes).
        prepare: ``prepare(*inputs) -> tuple of model inputs`` (tensor operations only: they are traced).
        dynamic: for each input, its dynamic axes ``{axis: name}`` (``{0: "batch"}`` by default).
        sidecar: extra JSON for the sidecar (what inference needs outside the graph).
    """

    input_names: list[str]
    example: tuple[torch.Tensor, ...]
    prepare: Callable[..., tuple]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    sidecar: dict[str, Any] = field(default_factory=dict)


class OnnxModel(nn.Module):
    """``activation(model(*prepare(*inputs)))``: the module that is exported."""

    def __init__(self, model: nn.Module, prepare: Callable[..., tuple], activation: Callable | None):
        super().__init__()
        self.model, self.prepare, self.activation = model, prepare, activation

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.model(*self.prepare(*inputs)).float()
        return self.activation(out) if self.activation is not None else out


def _dynamic_shapes(spec: OnnxSpec) -> tuple:
    dims: dict[str, Any] = {}
    shapes = []
    for name in spec.input_names:
        axes = spec.dynamic.get(name, {0: "batch"})
        shapes.append({ax: dims.setdefault(dim, torch.export.Dim(dim)) for ax, dim in axes.items()})
    return tuple(shapes)


def _grown(spec: OnnxSpec) -> tuple[torch.Tensor, ...]:
    """The example inputs made one longer along every dynamic axis (to check the graph is really dynamic)."""
    out = []
    for name, t in zip(spec.input_names, spec.example):
        for ax in spec.dynamic.get(name, {0: "batch"}):
            t = torch.cat([t, t.narrow(ax, 0, 1)], dim=ax)
        out.append(t)
    return tuple(out)


def check_onnx(path: str | Path, module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str]) -> float:
    """Run the graph at ``path`` with onnxruntime on ``inputs``; the largest difference from ``module(*inputs)``,
    relative to ``max(1, largest output)`` (raises when onnxruntime cannot run it or the shapes differ)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
    with torch.no_grad():
        want = module(*inputs).numpy()
    if got.shape != want.shape:
        raise ValueError(f"onnxruntime returned shape {got.shape}, PyTorch {want.shape}")
    return float(abs(got - want).max() / max(1.0, abs(want).max())) if want.size else 0.0


def _export(module: nn.Module, spec: OnnxSpec, path: Path, opset: int | None) -> str:
    """Write the graph; returns the exporter used (``"dynamo"`` or ``"torchscript"``). A dynamo graph is
    checked with onnxruntime on inputs one longer along each dynamic axis (some decompositions, such as an
    unrolled LSTM, silently fix a size); if that fails, the TorchScript exporter writes the file instead."""
    kw = {"input_names": spec.input_names, "output_names": ["output"], "external_data": False}
    if opset is not None:
        kw["opset_version"] = opset
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, spec.example, str(path), dynamo=True, verbose=False,
                              dynamic_shapes=(_dynamic_shapes(spec),), **kw)  # forward(*inputs): one varargs entry
        try:
            import onnxruntime  # noqa: F401 - only to know whether the graph can be checked
        except ImportError:
            warnings.warn("onnxruntime is not installed, so the exported graph's dynamic sizes were not checked; "
                          'pip install "learnkit[onnx]"', stacklevel=3)
            return "dynamo"
        diff = check_onnx(path, module, _grown(spec), spec.input_names)
        if not diff <= 1e-4:
            raise ValueError(f"onnxruntime differs from PyTorch by {diff:.3g} on inputs of another size")
        return "dynamo"
    except Exception as e:  # noqa: BLE001 - any failure of the new exporter: fall back to the TorchScript one
        root = e.__cause__ or e  # torch.export's own error, not the exporter's wrapper
        msg = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
        first = f"{type(root).__name__}: {msg.splitlines()[0] if msg else ''}"
    kw.pop("external_data")
    axes = {name: spec.dynamic.get(name, {0: "batch"}) for name in spec.input_names}
    axes["output"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, spec.example, str(path), dynamo=False, dynamic_axes=axes, **kw)
    warnings.warn(f"torch.onnx.export(dynamo=True) failed for {type(module.model).__name__} ({first[:300]}); "
                  f"{path.name} was written by the TorchScript exporter (dynamo=False) instead", stacklevel=3)
    return "torchscript"


def _io_spec(values: Any) -> list[dict]:
    """Names, numpy dtypes and shapes (a name for a dynamic axis) of a graph's inputs or outputs."""
    import onnx
    out = []
    for v in values:
        t = v.type.tensor_type
        out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                    "shape": [d.dim_param or d.dim_value for d in t.shape.dim]})
    return out


def export_onnx(learn: "Learner", path: str | Path, opset: int | None = None) -> Path:
    """Write ``learn``'s model for inference to ``path`` (ONNX) and ``path.with_suffix('.json')`` (the
    sidecar); see the module docstring. A relative ``path`` is relative to ``learn.path``. Returns ``path``."""
    import learnkit

    if not hasattr(learn.dls, "onnx_spec"):
        raise TypeError(f"{type(learn.dls).__name__} cannot describe an ONNX input: export_onnx needs a task "
                        "DataLoaders (ImageDataLoaders, SegmentationDataLoaders, TabularDataLoaders, "
                        "CollabDataLoaders, TextDataLoaders) or one with an onnx_spec() method")
    for mod in ("onnx", "onnxscript"):
        if importlib.util.find_spec(mod) is None:
            raise ImportError(f'export_onnx needs the {mod} package: pip install "learnkit[onnx]"')
    path = expand_path(path)
    if not path.is_absolute():
        path = learn.path / path
    if path.suffix != ".onnx":
        raise ValueError(f"the ONNX file name should end in .onnx, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    spec: OnnxSpec = learn.dls.onnx_spec()
    model = getattr(learn.model, "_orig_mod", learn.model)
    was_training, device = model.training, next(model.parameters()).device
    convs = [p for p in model.parameters() if p.ndim == 4]
    channels_last = bool(convs) and convs[0].is_contiguous(memory_format=torch.channels_last)
    act = loss_activation(learn.loss_func, default=None)
    module = OnnxModel(model, spec.prepare, act).cpu().eval()
    module.model.to(memory_format=torch.contiguous_format)
    try:
        exporter = _export(module, spec, path, opset)
    finally:
        model.to(device).train(was_training)
    if channels_last:  # the layout the learner kept its conv weights in (vision_learner on CPU/CUDA)
        model.to(memory_format=torch.channels_last)
    import onnx
    graph = onnx.load(str(path), load_external_data=False)
    dls = learn.dls
    sidecar = {
        "format": ONNX_FORMAT, "format_version": 1, "learnkit_version": learnkit.__version__,
        "torch_version": torch.__version__, "exporter": exporter,
        "opset": max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "task": type(dls).__name__, "model": (getattr(learn, "model_spec", None) or {}).get("builder"),
        "inputs": _io_spec(graph.graph.input), "outputs": _io_spec(graph.graph.output),
        "output_activation": type(learn.loss_func).__name__ + (".activation" if act is not None else " (none)"),
        "classes": list(dls.vocab) if getattr(dls, "vocab", None) is not None else None,
        **spec.sidecar,
        "dls_config": dls.export_config() if hasattr(dls, "export_config") else None,
    }
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1))
    return path
