"""Tests for torchbook.models: the seed CNN three ways, weight copying and shape walks."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from taught_code import assert_taught_as_shipped
from torchbook import models
from torchbook.models import (ContainerNet, Net, SigmoidNet, copy_weights, count_parameters,
                              layer_output_shapes, sequential_net)

CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "02_models_three_ways.ipynb"
BUILDERS = [Net, sequential_net, ContainerNet]


@pytest.mark.parametrize("build", BUILDERS + [SigmoidNet])
def test_every_style_has_the_seed_parameter_count(build) -> None:
    """All styles hold exactly the seed's 54,273 parameters."""
    assert count_parameters(build()) == 54_273


def test_count_parameters_counts_every_number() -> None:
    """count_parameters adds weights and biases: Linear(3, 2) has 3*2 + 2 numbers."""
    assert count_parameters(nn.Linear(3, 2)) == 8
    assert count_parameters(nn.ReLU()) == 0


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize("batch", [1, 7])
def test_one_logit_per_image(build, batch: int) -> None:
    """Each style maps (N, 3, 32, 32) images to (N, 1) logits."""
    assert build().eval()(torch.randn(batch, 3, 32, 32)).shape == (batch, 1)


@pytest.mark.parametrize("build", BUILDERS)
def test_two_logit_head(build) -> None:
    """num_outputs=2 gives two logits per image and 33 more parameters (32 weights + 1 bias)."""
    model = build(num_outputs=2)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 2)
    assert count_parameters(model) == 54_273 + 33


def test_adaptive_pooling_accepts_larger_images() -> None:
    """AdaptiveMaxPool2d makes Net independent of the image size: 64x64 images work too."""
    assert Net().eval()(torch.randn(2, 3, 64, 64)).shape == (2, 1)


def test_three_styles_compute_the_same_function_after_copy_weights() -> None:
    """With Net's weights copied in, the Sequential and container styles give identical outputs."""
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(5, 3, 32, 32)
    for build in (sequential_net, ContainerNet):
        other = build().eval()
        assert not torch.allclose(net(x), other(x))
        copy_weights(net, other)
        assert torch.equal(net(x), other(x))


def test_copy_weights_refuses_mismatched_models() -> None:
    """Models with different tensors cannot exchange weights."""
    with pytest.raises(ValueError):
        copy_weights(Net(), nn.Linear(64, 32))
    with pytest.raises(RuntimeError):
        copy_weights(Net(num_outputs=2), sequential_net())


def test_sigmoid_net_is_net_with_a_sigmoid() -> None:
    """SigmoidNet shares Net's state_dict keys and returns sigmoid(Net's logit)."""
    net, seed = Net().eval(), SigmoidNet().eval()
    assert list(net.state_dict()) == list(seed.state_dict())
    seed.load_state_dict(net.state_dict())
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(seed(x), torch.sigmoid(net(x)))


def test_container_net_really_uses_its_module_dict() -> None:
    """forward looks up the ModuleDict by key: without the 'classifier' stage it fails."""
    model = ContainerNet()
    del model.stages["classifier"]
    with pytest.raises(KeyError):
        model(torch.randn(1, 3, 32, 32))


def test_container_net_really_uses_its_module_list() -> None:
    """Replacing a block of the ModuleList changes the output of forward."""
    model = ContainerNet().eval()
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    model.blocks[1] = nn.Sequential(nn.Conv2d(32, 64, kernel_size=5), nn.MaxPool2d(2))
    assert not torch.allclose(before, model(x))
    assert isinstance(model.blocks, nn.ModuleList) and isinstance(model.stages, nn.ModuleDict)


def test_layer_output_shapes_walks_every_layer_call() -> None:
    """The shape walk lists each leaf call in order, the reused pool twice, and removes its hooks."""
    net = Net()
    shapes = layer_output_shapes(net, torch.randn(2, 3, 32, 32))
    assert [name for name, _, _ in shapes] == ["conv1", "pool", "conv2", "pool", "dropout", "adaptive_pool",
                                               "flatten", "linear1", "relu", "linear2"]
    assert shapes[0] == ("conv1", "Conv2d", (2, 32, 30, 30))
    assert shapes[3] == ("pool", "MaxPool2d", (2, 64, 5, 5))
    assert shapes[-1] == ("linear2", "Linear", (2, 1))
    assert all(not m._forward_hooks for m in net.modules())


def test_layer_output_shapes_names_nested_layers() -> None:
    """Nested containers give dotted names."""
    shapes = layer_output_shapes(ContainerNet(), torch.randn(1, 3, 32, 32))
    assert shapes[0] == ("blocks.0.0", "Conv2d", (1, 32, 30, 30))
    assert shapes[-1] == ("stages.classifier.2", "Linear", (1, 1))




@pytest.mark.parametrize("name", ["Net", "sequential_net", "ContainerNet", "count_parameters",
                                  "copy_weights", "layer_output_shapes"])
def test_chapter_teaches_the_package_code(name: str) -> None:
    """The code chapter 2 teaches inline is the code torchbook.models ships."""
    assert_taught_as_shipped("02_models_three_ways", models, name)


@pytest.mark.parametrize("depth, parameters", [(20, 272_474), (32, 466_906), (56, 855_770)])
def test_resnet_family_parameter_counts(depth: int, parameters: int) -> None:
    """ResNet-20/32/56 (width 16, ten classes, 1x1 projection shortcuts) have their known sizes."""
    assert count_parameters(models.resnet(depth)) == parameters


def test_resnet_maps_images_to_class_logits_at_any_width() -> None:
    """(N, 3, 32, 32) images give (N, num_classes) logits; width scales the channels."""
    model = models.resnet(8, width=4, num_classes=3).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert model.fc.in_features == 16


def test_resnet_rejects_a_depth_not_of_the_form_6n_plus_2() -> None:
    """A depth such as 18 (the ImageNet family) is refused with the rule in the message."""
    with pytest.raises(ValueError, match="6n"):
        models.resnet(18)


def test_block_shortcut_is_identity_or_a_projection() -> None:
    """Same shape: identity shortcut; new width or stride: a strided 1x1 conv + BN projection."""
    assert isinstance(models.BasicBlock(8, 8).shortcut, nn.Identity)
    projection = models.BasicBlock(8, 16, stride=2).shortcut
    assert isinstance(projection[0], nn.Conv2d) and projection[0].stride == (2, 2)
    assert models.BasicBlock(8, 16, stride=2)(torch.randn(1, 8, 32, 32)).shape == (1, 16, 16, 16)


def test_plain_network_has_no_shortcuts_and_fewer_parameters() -> None:
    """shortcut=False drops every shortcut (and the projections' parameters) but keeps the shape."""
    plain = models.resnet(20, shortcut=False)
    assert all(block.shortcut is None for stage in plain.stages for block in stage)
    assert count_parameters(plain) < count_parameters(models.resnet(20))


def test_residual_block_passes_input_through_when_its_branch_is_zero() -> None:
    """With the last BN's scale at zero the block computes relu(x): the identity path is real."""
    block = models.BasicBlock(4, 4).eval()
    nn.init.zeros_(block.bn2.weight)
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(block(x), torch.relu(x))


def test_simple_cnn_is_the_tutorial_baseline() -> None:
    """conv 3->18 (same padding), 2x2 pool to 18x16x16 = 4608 features, fc 64, ten logits."""
    model = models.SimpleCNN()
    assert count_parameters(model) == 296_130
    shapes = {name: shape for name, _, shape in
              layer_output_shapes(model, torch.zeros(2, 3, 32, 32))}
    assert shapes["conv1"] == (2, 18, 32, 32) and shapes["pool"] == (2, 18, 16, 16)
    assert shapes["flatten"] == (2, 4608) and shapes["fc2"] == (2, 10)
    assert models.SimpleCNN(num_classes=3)(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
