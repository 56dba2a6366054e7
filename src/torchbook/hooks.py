"""Look inside a trained model with hooks (chapter 6): activations, and Grad-CAM.

- `named_layer(model, name)`: the sub-module called `name`, or a clear error listing valid names.
- `capture_activations(model, layer_names)`: a context manager yielding a dict that fills, during
  forward passes inside the block, with detached clones of the named layers' outputs; its hooks
  are removed when the block ends, even when it raises.
- `grad_cam(model, image, layer_name, target=None)`: the Grad-CAM map of one uint8 image (3, H, W),
  an (H, W) tensor in [0, 1]; the pieces: `class_score`, `activation_and_gradient`, `scale_to_unit`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from torchbook.recipe import prepare_batch, uses_channels_last


def named_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the sub-module of `model` called `name` (a name from `model.named_modules()`)."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        valid = ", ".join(n for n in modules if n)
        raise ValueError(f"{name!r} is not a layer of {type(model).__name__}; valid names: {valid}")
    return modules[name]


@contextmanager
def capture_activations(model: nn.Module,
                        layer_names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict name -> output (a detached clone) of each named layer's latest call."""
    if isinstance(layer_names, str):
        raise TypeError(f"pass a list of layer names, e.g. [{layer_names!r}], not a string")
    layers = {name: named_layer(model, name) for name in layer_names}
    activations = {}

    def keeper(name: str):
        """A forward hook that keeps a copy of its layer's output under `name`."""
        def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            activations[name] = output.detach().clone()  # a copy: later in-place ops can't alter it
        return keep

    handles = [layer.register_forward_hook(keeper(name)) for name, layer in layers.items()]
    try:
        yield activations
    finally:
        for handle in handles:
            handle.remove()


def class_score(logits: torch.Tensor, target: Optional[int] = None) -> torch.Tensor:
    """The score to explain for one image: one logit z gives z (class 1) or -z (class 0)."""
    logits = logits.reshape(-1)
    if len(logits) > 1:  # one logit per class
        return logits[int(logits.argmax()) if target is None else target]
    target = int(logits[0] > 0) if target is None else target
    if target not in (0, 1):
        raise ValueError(f"a one-logit model has classes 0 and 1, not {target!r}")
    return logits[0] if target == 1 else -logits[0]


def activation_and_gradient(model: nn.Module, x: torch.Tensor, layer: nn.Module,
                            target: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's output for the batch x of one image, and the gradient of the score with it."""
    saved = {}

    def keep_output(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        saved["activation"] = output.detach().clone()

    def keep_gradient(module: nn.Module, grad_inputs: tuple, grad_outputs: tuple) -> None:
        saved["gradient"] = grad_outputs[0].detach()

    handles = [layer.register_forward_hook(keep_output),
               layer.register_full_backward_hook(keep_gradient)]
    x = x.detach().requires_grad_(True)  # a gradient path to the input; parameters untouched
    try:
        with torch.enable_grad():
            torch.autograd.grad(class_score(model(x), target), x)
    finally:
        for handle in handles:
            handle.remove()
    return saved["activation"], saved["gradient"]


def scale_to_unit(cam: torch.Tensor) -> torch.Tensor:
    """Divide a map of non-negative values by its maximum (all zeros stay zeros)."""
    top = cam.max()
    return cam / top if top > 0 else torch.zeros_like(cam)


def grad_cam(model: nn.Module, image: torch.Tensor, layer_name: str,
             target: Optional[int] = None) -> torch.Tensor:
    """Grad-CAM of one uint8 image (3, H, W) at a layer: an (H, W) map in [0, 1] on the CPU."""
    if model.training:
        raise ValueError("call model.eval() first: Grad-CAM explains the model as it predicts")
    if image.dtype != torch.uint8 or image.ndim != 3:
        raise ValueError(f"pass one uint8 image (3, H, W), not {image.dtype} {tuple(image.shape)}; "
                         "grad_cam normalises it with torchbook.recipe.prepare_batch")
    device = next(model.parameters()).device
    x = prepare_batch(image.unsqueeze(0), device, uses_channels_last(model))
    activation, gradient = activation_and_gradient(model, x, named_layer(model, layer_name), target)
    if activation.ndim != 4:
        raise ValueError(f"Grad-CAM needs maps (N, C, H, W); {layer_name!r} gives "
                         f"{tuple(activation.shape)}: pick a convolutional block")
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # one weight per channel
    cam = torch.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(image.shape[1:]), mode="bilinear", align_corners=False)
    return scale_to_unit(cam[0, 0].float().cpu())
