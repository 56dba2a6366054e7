"""Checks of exercise ch04-ex3: a paired bootstrap interval of AUC(TTA) - AUC(no TTA)."""
from otter.test_files import test_case

from torchbook.grading import LIBRARIES

OK_FORMAT = False
name = "ch04-ex3"
manual = ("the interval from bootstrap_ci with that metric, whether it contains 0, and why the "
          "paired interval is narrower (the two AUCs move together)")
CHAPTER = {"bootstrap_auc_ci", "bootstrap_ci", "check_auc_interval"}


def gain(env, numbers):
    """AUC with TTA minus AUC without, on the validation images with these numbers."""
    from sklearn.metrics import roc_auc_score
    targets, probs = env["valid_y"][numbers], env["valid_probs"]
    with_tta = roc_auc_score(targets, probs[True][numbers])
    return with_tta - roc_auc_score(targets, probs[False][numbers])


def paired_metrics(env):
    """The answer's functions metric(targets, image_numbers) that give the AUC gain of TTA."""
    import types
    import numpy as np
    n = len(env["valid_y"])
    subset = np.random.default_rng(0).integers(0, n, size=n)
    found = []
    for key, value in env.items():
        if (not isinstance(value, types.FunctionType) or key.startswith("_") or key in CHAPTER
                or getattr(value, "__module__", "").startswith(LIBRARIES)):
            continue
        try:
            ok = all(abs(float(value(env["valid_y"][nums], nums)) - gain(env, nums)) < 1e-9
                     for nums in (np.arange(n), subset))
        except Exception:
            continue
        if ok:
            found.append(key)
    return found


@test_case(points=2, hidden=False)
def test_a_paired_metric(env):
    """A function metric(targets, image_numbers) gives AUC(TTA) - AUC(no TTA) on those images."""
    assert paired_metrics(env), \
        "write metric(targets, image_numbers) returning AUC(TTA) - AUC(no TTA) on those images"
