"""Class activation maps: where in an image a classifier found the evidence for a class (fastbook ch. 18).

`grad_cam` is Grad-CAM (Selvaraju et al. 2017) over the hook API (`learnkit.core.hooks`): the activations
of a layer (by default the body, ``model[0]``) and the gradient of the class score with respect to them,
read with two hooks during one forward and one backward pass. Each channel is weighted by its mean
gradient and the weighted sum, through a ReLU, is the map (``method="hirescam"``: activations times
gradients, element-wise, then summed: HiResCAM, faithful to what the model computes). It works for any
vision model with a convolutional layer, pretrained and frozen or not: the input is made to require a
gradient, so a frozen body still passes one, and no parameter's ``.grad`` is touched.

`VisionLearner.show_cam` overlays the map on an image; ``plot_top_losses(k, cam=True)`` on each tile.

These are our few lines rather than the ``grad-cam`` package: that package needs OpenCV (a 60 MB wheel)
for resizing and colouring, takes ``target_layers`` and wrapper objects where a learner already knows its
body, and moves maps to numpy; the computation itself is the dozen lines below, on the device.

>>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
...                       nn.Linear(8, 2))
>>> maps, targets = grad_cam(model, torch.rand(4, 3, 16, 16), layer=model[1])
>>> maps.shape, targets.shape, bool((maps >= 0).all() and (maps <= 1).all())
(torch.Size([4, 16, 16]), torch.Size([4]), True)
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..core.hooks import hook_output

__all__ = ["grad_cam", "cam_layer", "CAM_METHODS"]

#: The maps `grad_cam` computes.
CAM_METHODS = ("gradcam", "hirescam")


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer a class activation map reads by default: the body (``model[0]``) of a vision classifier or
    of a fastai-style ``Sequential(body, head)``; otherwise the last convolutional child of ``model``.

    >>> body = nn.Sequential(nn.Conv2d(3, 4, 3))
    >>> cam_layer(nn.Sequential(body, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))) is body
    True
    """
    model = getattr(model, "module", model)  # DDP
    body = getattr(model, "body", None)
    if isinstance(body, nn.Module):
        return body
    children = list(model.children())
    if len(children) == 2 and any(isinstance(m, nn.modules.conv._ConvNd) for m in children[0].modules()) \
            and not any(isinstance(m, nn.modules.conv._ConvNd) for m in children[1].modules()):
        return children[0]
    convs = [c for c in children if any(isinstance(m, nn.modules.conv._ConvNd) for m in c.modules())]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolutional child for a class activation map; "
                         "pass layer=")
    return convs[-1]


def grad_cam(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None,
             layer: nn.Module | None = None, method: str = "gradcam",
             size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class activation maps of a batch of (prepared) images ``x`` ``[B, C, H, W]``.

    Args:
        target: the class of each map: ``None`` (the predicted one), an index, or ``[B]`` indices.
        layer: the module whose output is mapped (default `cam_layer`: the body); it must output ``[B, C, h, w]``.
        method: ``"gradcam"`` or ``"hirescam"`` (see the module docstring).
        size: resize the maps (bilinear) to ``(H, W)``; default: the layer's grid ``(h, w)``.

    Returns ``(maps [B, h, w] in [0, 1], targets [B])``; the model is left in eval mode.

    >>> body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU())
    >>> model = VisionClassifier(body, create_head(8, 2))
    >>> maps, targets = grad_cam(model, torch.rand(2, 3, 32, 32), target=1)   # the body's 15x15 grid
    >>> maps.shape, targets.tolist()
    (torch.Size([2, 15, 15]), [1, 1])
    """
    if method not in CAM_METHODS:
        raise ValueError(f"method must be one of {CAM_METHODS}, got {method!r}")
    layer = cam_layer(model) if layer is None else layer
    model.eval()
    with torch.inference_mode(False), torch.enable_grad(), hook_output(layer) as act, \
            hook_output(layer, grad=True) as grad:
        x = x.detach().clone().requires_grad_(True)  # a frozen body still carries a gradient back to the layer
        out = model(x)
        if out.ndim != 2:
            raise ValueError(f"a class activation map needs [B, classes] outputs, the model gave {tuple(out.shape)}")
        if target is None:
            targets = out.detach().argmax(1)
        else:
            targets = torch.as_tensor(target, device=out.device).long().reshape(-1).expand(out.shape[0])
        score = out.gather(1, targets[:, None]).sum()
        torch.autograd.grad(score, [x])
    a, g = act.stored, grad.stored
    if not isinstance(a, torch.Tensor) or a.ndim != 4 or g is None:
        raise ValueError(f"the layer {type(layer).__name__} must output a [B, C, h, w] map that the score depends on"
                         f"; it gave {tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__}")
    a, g = a.float(), g.float()
    maps = (g.mean((2, 3), keepdim=True) * a).sum(1) if method == "gradcam" else (g * a).sum(1)
    maps = F.relu(maps)
    if size is not None:
        maps = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    top = maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return maps / top, targets


def overlay_cam(ax: Any, cam: torch.Tensor, size: tuple[int, int], alpha: float = 0.5, cmap: str = "magma") -> Any:
    """Draw ``cam`` (``[h, w]``) over the image already on ``ax`` (``size``: its ``(H, W)``), stretched to it."""
    h, w = size
    ax.imshow(cam.detach().cpu().numpy(), alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
              interpolation="bilinear", cmap=cmap)
    return ax
