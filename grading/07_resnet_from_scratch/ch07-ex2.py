"""Checks of exercise ch07-ex2: `zero_init_residuals`, every block starting as its shortcut."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch07-ex2"
manual = ("the explanation: the convolutions inside the blocks get zero gradients (the block's "
          "output does not depend on them), the zeroed scales do not, so training can start")


def applied(env, model):
    """The model after zero_init_residuals (it may return the model or None)."""
    result = env["zero_init_residuals"](model)
    return model if result is None else result


@test_case(points=1, hidden=False)
def test_last_batchnorm_scales_are_zero(env):
    """In a ResNet, every BasicBlock's bn2.weight is zero afterwards."""
    from torchbook.models import BasicBlock, resnet
    model = applied(env, resnet(8, width=4, num_classes=3))
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(float(b.bn2.weight.detach().abs().max()) == 0 for b in blocks), \
        "every block's bn2.weight must be zero"


@test_case(points=1, hidden=True)
def test_nothing_else_changes_and_blocks_pass_their_shortcut(env):
    """Other tensors unchanged; each block then outputs relu(shortcut(x)), in any container."""
    import torch
    from torch import nn
    from torchbook.models import BasicBlock
    torch.manual_seed(0)
    model = nn.Sequential(BasicBlock(4, 4), nn.Sequential(BasicBlock(4, 8, stride=2))).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model = applied(env, model)
    for key, value in model.state_dict().items():
        if not key.endswith("bn2.weight"):
            assert torch.equal(value, before[key]), f"{key} changed"
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        expected = torch.relu(model[1][0].shortcut(torch.relu(x)))
        assert torch.allclose(model(x), expected, atol=1e-6)
