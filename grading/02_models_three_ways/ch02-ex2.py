"""Checks of exercise ch02-ex2: find the bug in `deep_head` (one Linear shared three times)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch02-ex2"
manual = ("the explanation: `block * depth` repeats the same Linear object, so the three layers "
          "share one weight matrix and training cannot make them differ")
CHAPTER = {"check_head"}


def builds_right_head(make_head, width=64, depth=3):
    """True if make_head(width, depth) maps (8, width) to (8, 1) with depth separate blocks."""
    import torch
    from torch import nn
    try:
        head = make_head(width=width, depth=depth) if (width, depth) != (64, 3) else make_head()
        shape = tuple(head(torch.randn(8, width)).shape)
    except Exception:
        return False
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    count = sum(p.numel() for p in head.parameters())
    return (shape == (8, 1) and count == depth * (width * width + width) + width + 1
            and len({id(m) for m in linears}) == depth + 1)


def fixed_functions(env):
    """The answer's head builders (a fixed deep_head, or a new one with "head" in its name)."""
    from torchbook.grading import answer_functions
    return [f for f in answer_functions(env, lambda name: "head" in name, CHAPTER)
            if builds_right_head(f)]


@test_case(points=1, hidden=False)
def test_a_fixed_head_passes_the_chapter_check(env):
    """A function of yours builds the head with three separate Linear(64, 64) blocks."""
    assert fixed_functions(env), \
        "no function with 'head' in its name builds (8, 64) -> (8, 1) with 3 separate blocks"


@test_case(points=1, hidden=True)
def test_other_widths_depths_and_independent_layers(env):
    """Width 16, depth 5 work too, with ReLUs; changing one layer leaves the next alone."""
    import torch
    from torch import nn
    good = [f for f in fixed_functions(env) if builds_right_head(f, width=16, depth=5)]
    assert good, "the fix must honour width and depth"
    head = good[0](width=16, depth=5)
    assert any(isinstance(m, nn.ReLU) for m in head.modules()), "a ReLU after each hidden Linear"
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    before = linears[1].weight.detach().clone()
    with torch.no_grad():
        linears[0].weight.add_(1.0)
    assert torch.equal(linears[1].weight, before), "the hidden layers must not share weights"
