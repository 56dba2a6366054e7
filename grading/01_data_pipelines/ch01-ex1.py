"""Checks of exercise ch01-ex1: find the bug in `quick_mean_std` (statistics per channel)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch01-ex1"
manual = "the explanation: view mixes channels of different images; why the numbers look plausible"
# The chapter's own functions: the reference, the check and a helper that are not answers.
CHAPTER = {"channel_mean_std", "check_mean_std", "normalized_channel_means"}


def reference(images):
    """Per-channel mean and (population) std of uint8 images, computed channel by channel."""
    import torch
    pixels = images.double() / 255
    means = [pixels[:, c].mean() for c in range(images.shape[1])]
    stds = [pixels[:, c].std(unbiased=False) for c in range(images.shape[1])]
    return torch.stack(means), torch.stack(stds)


def agrees(function, images, atol=1e-6):
    """True if function(images) gives the reference mean and std of each channel."""
    import torch
    try:
        mean, std = function(images)
        found = torch.stack([torch.as_tensor([float(v) for v in s], dtype=torch.float64)
                             for s in (mean, std)])
    except Exception:
        return False
    expected = torch.stack(reference(images))
    return found.shape == expected.shape and torch.allclose(found, expected, atol=atol)


def red_images():
    """Four all-red 8 x 8 images: channel means (1, 0, 0), stds 0."""
    import torch
    red = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = 255
    return red


def fixed_functions(env):
    """The answer's functions that compute statistics per channel correctly (the fix)."""
    from torchbook.grading import answer_functions
    candidates = answer_functions(env, lambda name: "mean" in name, CHAPTER)
    return [f for f in candidates if agrees(f, red_images())]


@test_case(points=1, hidden=False)
def test_a_fixed_function_passes_the_chapter_check(env):
    """A function of yours (a fixed quick_mean_std, or a new one with "mean" in its name) gives
    (1, 0, 0) on all-red images and channel_mean_std's numbers on the training images."""
    fixed = fixed_functions(env)
    assert fixed, "no function with 'mean' in its name gives means (1, 0, 0) on all-red images"
    assert any(agrees(f, env["train_images"]) for f in fixed), \
        "the fixed function must agree with channel_mean_std on train_images"


@test_case(points=1, hidden=True)
def test_other_shapes_and_no_python_loop(env):
    """The fix works on other sizes and channel counts, without a Python loop over channels."""
    import ast
    import inspect
    import textwrap
    import torch
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 4, 7, 9), dtype=torch.uint8, generator=generator)
    good = [f for f in fixed_functions(env) if agrees(f, images)]
    assert good, "the fix must work for any number of channels and image size"
    loops = (ast.For, ast.While, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)
    for function in good:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        except (OSError, TypeError):
            continue
        if not any(isinstance(node, loops) for node in ast.walk(tree)):
            return
    raise AssertionError("fix the function without a Python loop (reduce over dims 0, 2, 3)")
