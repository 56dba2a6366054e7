"""Checks of exercise ch06-ex1: find the bug in `batchnorm_output` (an in-place ReLU)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch06-ex1"
manual = "the explanation: ReLU(inplace=True) overwrites the tensor the hook saved; clone it"
CHAPTER = {"check_batchnorm_output"}


def by_hand(model, x):
    """The first BatchNorm's output, applied by hand."""
    import torch
    with torch.no_grad():
        return model.features[0][1](model.features[0][0](x))


def right_on(function, model, x):
    """True if function(model, x) gives the BatchNorm output (negative values included)."""
    import torch
    try:
        result = function(model, x)
        return torch.allclose(result, by_hand(model, x), atol=1e-5)
    except Exception:
        return False


def fixed_functions(env):
    """The answer's functions named with batchnorm (a fixed batchnorm_output, or a new one)."""
    from torchbook.grading import answer_functions
    return [f for f in answer_functions(env, lambda name: "batchnorm" in name.lower(), CHAPTER)
            if right_on(f, env["model"], env["x"])]


@test_case(points=1, hidden=False)
def test_the_fix_passes_the_chapter_check(env):
    """A function of yours returns the BatchNorm output of the chapter's two images."""
    assert fixed_functions(env), \
        "no function with 'batchnorm' in its name returns the BatchNorm output of x"


@test_case(points=1, hidden=True)
def test_other_batches_and_no_hook_left(env):
    """It works on another batch and leaves no hook on the model."""
    import torch
    model = env["model"]
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=generator)
    other = env["prepare_batch"](images, env["device"], env["uses_channels_last"](model))
    good = [f for f in fixed_functions(env) if right_on(f, model, other)]
    assert good, "the fix must work on any batch"
    assert env["count_hooks"](model) == 0, "remove the hook after use"
