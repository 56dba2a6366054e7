"""Checks of exercise ch07-ex3: find the bug in `TutorialBlock` (a shortcut never added)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch07-ex3"
manual = "which network the tutorial trained: a plain network of the same depth"
CHAPTER = {"check_block"}


def residual_classes(env):
    """The answer's nn.Module classes with 'block' in their name (not torchbook's)."""
    from torch import nn
    return [value for key, value in env.items()
            if isinstance(value, type) and issubclass(value, nn.Module)
            and "block" in key.lower() and key not in CHAPTER
            and not getattr(value, "__module__", "").startswith(("torchbook", "torch"))]


def by_hand(block, x):
    """What a residual block with these layers computes: relu(branch(x) + shortcut(x))."""
    import torch
    branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    shortcut = block.downsample(x) if block.downsample is not None else x
    return torch.relu(branch + shortcut)


def residual(block_class, x, trained_looking):
    """True if the block computes relu(branch + shortcut) for both shapes of the chapter."""
    import torch
    try:
        for in_channels, out_channels, stride in [(8, 8, 1), (8, 16, 2)]:
            torch.manual_seed(1)
            block = block_class(in_channels, out_channels, stride).eval()
            if trained_looking:
                for module in block.modules():
                    if isinstance(module, torch.nn.BatchNorm2d):
                        torch.nn.init.uniform_(module.weight, 0.5, 1.5)
                        torch.nn.init.uniform_(module.bias, -0.5, 0.5)
            else:
                torch.nn.init.zeros_(block.bn2.weight)
            with torch.no_grad():
                if not torch.allclose(block(x), by_hand(block, x), atol=1e-5):
                    return False
        return True
    except Exception:
        return False


@test_case(points=1, hidden=False)
def test_the_fix_passes_the_chapter_check(env):
    """A block class of yours passes its input around the switched-off branch."""
    import torch
    x = torch.randn(4, 8, 16, 16)
    assert any(residual(c, x, False) for c in residual_classes(env)), \
        "no block class adds the shortcut: with bn2's scale at zero, relu(x) must come out"


@test_case(points=1, hidden=True)
def test_the_fix_adds_branch_and_shortcut(env):
    """With every layer active, the block computes relu(branch(x) + shortcut(x))."""
    import torch
    x = torch.randn(3, 8, 12, 12)
    assert any(residual(c, x, False) and residual(c, x, True) for c in residual_classes(env)), \
        "the block must return relu(branch + shortcut) before and after training"
