"""Checks of exercise ch04-ex1: find the bug in `bootstrap_auc_ci` (pairs broken apart)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch04-ex1"
manual = ("the explanation: targets and scores resampled with different indices break the pairs, "
          "so every resample scores like guessing, near 0.5")
CHAPTER = {"bootstrap_ci", "check_auc_interval"}


def interval(function, targets, scores):
    """function(targets, scores) as (low, high), or None if it fails."""
    try:
        low, high = function(targets, scores)
        return float(low), float(high)
    except Exception:
        return None


def holds_whole_auc(env, function):
    """True if the interval of the validation images contains their AUC (the chapter's check)."""
    from sklearn.metrics import roc_auc_score
    found = interval(function, env["valid_y"], env["p_valid"])
    whole = roc_auc_score(env["valid_y"], env["p_valid"])
    return found is not None and found[0] <= whole <= found[1]


def fixed_functions(env):
    """The answer's interval functions (a fixed bootstrap_auc_ci, or a new one)."""
    from torchbook.grading import LIBRARIES, answer_functions

    def named_as_interval(name: str) -> bool:
        return "bootstrap" in name or "ci" in name.split("_")

    return [f for f in answer_functions(env, named_as_interval, CHAPTER, LIBRARIES)
            if holds_whole_auc(env, f)]


@test_case(points=1, hidden=False)
def test_the_interval_holds_the_auc(env):
    """A function of yours gives an interval around the validation AUC (the chapter's check)."""
    assert fixed_functions(env), \
        "no function named with bootstrap or ci gives an interval around the validation AUC"


@test_case(points=1, hidden=True)
def test_pairs_stay_together(env):
    """Perfectly separated scores give an interval at 1; scores of another image give about 0.5."""
    import numpy as np
    rng = np.random.default_rng(1)
    targets = np.repeat([0, 1], 60)
    separated = targets + rng.uniform(0, 0.5, size=len(targets))
    for function in fixed_functions(env):
        perfect = interval(function, targets, separated)
        noise = interval(function, targets, rng.uniform(size=len(targets)))
        if perfect and noise and perfect[0] > 0.999 and noise[0] < 0.5 < noise[1]:
            return
    raise AssertionError("resample targets and scores with the same indices")
