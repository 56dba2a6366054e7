"""Tests for torchbook.hooks: capture_activations, and grad_cam against Captum's LayerGradCam."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from taught_code import assert_taught_as_shipped
from torchbook import hooks
from torchbook.hooks import capture_activations, grad_cam, named_layer
from torchbook.recipe import build_model, prepare_batch

CHAPTER = "06_feature_maps"
BLOCKS = ["features.0", "features.2", "features.4", "features.6"]
CPU = torch.device("cpu")


def recipe_model(seed: int = 0) -> nn.Module:
    """A freshly initialised recipe model, channels-last and in eval mode, as the book loads it."""
    torch.manual_seed(seed)
    model = build_model().to(memory_format=torch.channels_last).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that eval mode matters
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    """n random uint8 images (n, 3, 32, 32)."""
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def hook_count(model: nn.Module) -> int:
    """How many forward, forward pre- and backward hooks are registered on the model's modules."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


class TwoLogits(nn.Module):
    """The one-logit model as two logits (-z, z): class 0's score is -z (one forward pass)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        return torch.cat([-z, z], dim=1)


def captum_grad_cam(model: nn.Module, image: torch.Tensor, layer_name: str,
                    target: int) -> torch.Tensor:
    """Grad-CAM by Captum: LayerGradCam (ReLU on the layer map), bilinear upsampling, scaling."""
    from captum.attr import LayerAttribution, LayerGradCam

    x = prepare_batch(image.unsqueeze(0), CPU)
    cam = LayerGradCam(TwoLogits(model), named_layer(model, layer_name)).attribute(
        x, target=target, relu_attributions=True)
    cam = torch.relu(LayerAttribution.interpolate(cam, (32, 32), "bilinear"))[0, 0].detach()
    return cam / cam.max() if cam.max() > 0 else cam


# --- capture_activations ----------------------------------------------------------------------

def test_capture_activations_records_each_named_layer() -> None:
    """The dict holds each layer's output for the batch, with the shapes of the recipe's blocks."""
    model, x = recipe_model(), prepare_batch(images(), CPU)
    with capture_activations(model, BLOCKS) as activations:
        assert activations == {}
        with torch.no_grad():
            model(x)
    assert list(activations) == BLOCKS
    shapes = [tuple(a.shape) for a in activations.values()]
    assert shapes == [(4, 16, 32, 32), (4, 32, 16, 16), (4, 64, 8, 8), (4, 64, 4, 4)]
    with torch.no_grad():
        assert torch.equal(activations["features.0"], model.features[0](x))


def test_capture_activations_keeps_copies_that_in_place_ops_cannot_change() -> None:
    """A BatchNorm output keeps its negative values although the next ReLU works in place."""
    model, x = recipe_model(), prepare_batch(images(), CPU)
    with capture_activations(model, ["features.0.1"]) as activations:
        model(x)
    assert not activations["features.0.1"].requires_grad
    with torch.no_grad():
        expected = model.features[0][1](model.features[0][0](x))
    assert expected.min() < 0
    assert torch.allclose(activations["features.0.1"], expected)


def test_hooks_are_removed_after_the_block_and_after_an_exception() -> None:
    """No hook survives the with block, whether it ends normally or raises."""
    model = recipe_model()
    with capture_activations(model, BLOCKS):
        assert hook_count(model) == len(BLOCKS)
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError):
        with capture_activations(model, BLOCKS):
            model(torch.zeros(1, 5, 32, 32))  # wrong number of channels: the forward pass raises
    assert hook_count(model) == 0


def test_unknown_layer_names_are_a_clear_error() -> None:
    """A wrong name lists the valid ones and registers nothing; a bare string is refused."""
    model = recipe_model()
    with pytest.raises(ValueError, match=r"'feature.0' is not a layer of RecipeNet.*features\.6"):
        with capture_activations(model, ["features.0", "feature.0"]):
            pass
    assert hook_count(model) == 0
    with pytest.raises(TypeError, match="list of layer names"):
        with capture_activations(model, "features.0"):
            pass


def test_create_feature_extractor_equals_the_hooks() -> None:
    """torchvision's FX feature extractor returns exactly what the forward hooks capture."""
    model, x = recipe_model(), prepare_batch(images(), CPU)
    extractor = create_feature_extractor(model, return_nodes=BLOCKS)
    with torch.no_grad(), capture_activations(model, BLOCKS) as activations:
        model(x)
        extracted = extractor(x)
    assert list(extracted) == BLOCKS
    for name in BLOCKS:
        assert torch.equal(extracted[name], activations[name]), name


# --- grad_cam ---------------------------------------------------------------------------------

@pytest.mark.parametrize("layer_name", ["features.2", "features.4", "features.6"])
@pytest.mark.parametrize("target", [0, 1])
def test_grad_cam_equals_captum_layer_grad_cam(layer_name: str, target: int) -> None:
    """Same map as Captum's LayerGradCam for both classes of the one-logit model."""
    model = recipe_model()
    for image in images(3, seed=1):
        ours = grad_cam(model, image, layer_name, target=target)
        theirs = captum_grad_cam(model, image, layer_name, target)
        assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_grad_cam_shape_range_and_default_target() -> None:
    """An (H, W) map in [0, 1] reaching 1; no target means the predicted class."""
    model, image = recipe_model(), images(1, seed=2)[0]
    cam = grad_cam(model, image, "features.6")
    assert cam.shape == (32, 32) and cam.dtype == torch.float32 and cam.device.type == "cpu"
    assert cam.min() >= 0 and cam.max() == 1
    with torch.no_grad():
        predicted = int(model(prepare_batch(image.unsqueeze(0), CPU)).item() > 0)
    assert torch.equal(cam, grad_cam(model, image, "features.6", target=predicted))
    big = torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8)
    assert grad_cam(model, big, "features.4").shape == (48, 40)


def test_the_two_classes_have_complementary_maps() -> None:
    """One logit: class 0's weights are class 1's negated, so the layer maps never overlap."""
    model, x = recipe_model(), prepare_batch(images(1, seed=3), CPU)
    layer = named_layer(model, "features.6")
    act0, grad0 = hooks.activation_and_gradient(model, x, layer, target=0)
    act1, grad1 = hooks.activation_and_gradient(model, x, layer, target=1)
    assert torch.equal(act0, act1) and torch.allclose(grad0, -grad1)


def test_a_map_without_positive_evidence_is_all_zeros() -> None:
    """scale_to_unit keeps an all-zero map at zero instead of dividing by zero."""
    assert torch.equal(hooks.scale_to_unit(torch.zeros(4, 4)), torch.zeros(4, 4))
    assert hooks.scale_to_unit(torch.tensor([[0.0, 2.0], [1.0, 4.0]])).max() == 1


def test_grad_cam_leaves_no_hooks_gradients_or_requires_grad_changes() -> None:
    """After grad_cam: no hooks, no .grad on parameters, the same requires_grad, even in no_grad."""
    model = recipe_model()
    model.classifier.weight.requires_grad_(False)
    before = [p.requires_grad for p in model.parameters()]
    with torch.no_grad():
        cam = grad_cam(model, images(1)[0], "features.4")
    assert cam.max() == 1
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == before


def test_grad_cam_refuses_bad_input() -> None:
    """Training mode, float or batched images, layers without maps: clear errors."""
    model, image = recipe_model(), images(1)[0]
    with pytest.raises(ValueError, match="uint8 image"):
        grad_cam(model, image.float(), "features.6")
    with pytest.raises(ValueError, match="uint8 image"):
        grad_cam(model, image.unsqueeze(0), "features.6")
    with pytest.raises(ValueError, match="pick a convolutional block"):
        grad_cam(model, image, "classifier")
    with pytest.raises(ValueError, match="classes 0 and 1"):
        grad_cam(model, image, "features.6", target=2)
    with pytest.raises(ValueError, match="model.eval"):
        grad_cam(model.train(), image, "features.6")
    assert hook_count(model) == 0


# --- the chapter teaches the shipped code -----------------------------------------------------

@pytest.mark.parametrize("name", ["named_layer", "capture_activations", "class_score",
                                  "activation_and_gradient", "scale_to_unit", "grad_cam"])
def test_chapter_6_teaches_the_shipped_code(name: str) -> None:
    """Chapter 6 defines each helper inline exactly as torchbook.hooks ships it."""
    assert_taught_as_shipped(CHAPTER, hooks, name)
