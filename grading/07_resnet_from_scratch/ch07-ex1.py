"""Checks of exercise ch07-ex1: option A shortcuts (`PadShortcut`), subsampling and zero channels."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch07-ex1"
manual = "the parameter count of ResNet-20 with option A: the plain network's (shortcut=False)"


def outputs(env, in_channels, out_channels, stride, x):
    """PadShortcut(in_channels, out_channels, stride)(x), or None if that fails."""
    try:
        return env["PadShortcut"](in_channels, out_channels, stride)(x)
    except Exception:
        return None


@test_case(points=1, hidden=False)
def test_shapes_match_the_block_and_no_parameters(env):
    """Same output shapes as BasicBlock, for an identity and a downsampling shortcut; no weights."""
    import torch
    from torchbook.models import BasicBlock
    x = torch.randn(2, 16, 32, 32)
    for shape in [(16, 16, 1), (16, 32, 2)]:
        out = outputs(env, *shape, x)
        assert out is not None, f"PadShortcut{shape} fails on a (2, 16, 32, 32) batch"
        assert out.shape == BasicBlock(*shape)(x).shape, f"PadShortcut{shape}: wrong shape"
        parameters = sum(p.numel() for p in env["PadShortcut"](*shape).parameters())
        assert parameters == 0, "an option A shortcut has no parameters"


@test_case(points=1, hidden=True)
def test_subsamples_and_pads_with_zeros(env):
    """The first channels are x's every second pixel, the added channels are zeros; stride 1 is x."""
    import torch
    x = torch.randn(3, 8, 10, 10)
    out = outputs(env, 8, 24, 2, x)
    assert out is not None and out.shape == (3, 24, 5, 5)
    assert torch.equal(out[:, :8], x[:, :, ::2, ::2]), "keep every second pixel of every second row"
    assert torch.count_nonzero(out[:, 8:]) == 0, "the added channels must be zeros"
    same = outputs(env, 8, 8, 1, x)
    assert same is not None and torch.equal(same, x), "with the same shape, the shortcut is x"
