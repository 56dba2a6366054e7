"""Checks of exercise ch01-ex2: per-channel mean and std from streamed batches."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch01-ex2"
manual = "that the statistics come from running sums over streamed batches (read the code)"
CHAPTER_NAMES = {"mean", "std", "CIFAR2_MEAN", "CIFAR2_STD"}


def three_vectors(env):
    """Every variable (not the chapter's own) that holds three numbers."""
    import torch
    found = {}
    for key, value in env.items():
        if key.startswith("_") or key in CHAPTER_NAMES or isinstance(value, (str, bytes)):
            continue
        try:
            vector = torch.as_tensor(value, dtype=torch.float64).flatten()
        except Exception:
            continue
        if vector.numel() == 3:
            found[key] = vector
    return found


def matching(env, reference, tol):
    """Names of three-number variables equal to `reference` within `tol`."""
    import torch
    target = torch.as_tensor([float(x) for x in reference], dtype=torch.float64)
    return [key for key, vector in three_vectors(env).items()
            if torch.allclose(vector, target, atol=tol, rtol=0)]


@test_case(points=1, hidden=False)
def test_streamed_mean(env):
    """A variable of your own holds the per-channel mean (close to channel_mean_std's)."""
    assert matching(env, env["mean"], 1e-3), \
        "keep your streamed mean in a variable: three numbers, one per channel"


@test_case(points=1, hidden=False)
def test_streamed_std(env):
    """A variable of your own holds the per-channel standard deviation."""
    assert matching(env, env["std"], 1e-3), \
        "keep your streamed std in a variable: three numbers, one per channel"


@test_case(points=1, hidden=True)
def test_precise(env):
    """Both agree with channel_mean_std to 1e-5 (no precision lost in the sums)."""
    assert matching(env, env["mean"], 1e-5) and matching(env, env["std"], 1e-5), \
        "close, but not to 1e-5: accumulate the sums in float64"
