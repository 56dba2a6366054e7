"""Checks of exercise ch03-ex3: the mean of per-batch accuracies against the epoch accuracy."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch03-ex3"
manual = "which weighting gives back the epoch accuracy (by batch size; a sentence)"


def reference(env):
    """The seed network's validation logits and targets, as the exercise computes them."""
    return env["predict_logits"](env["seed_net"], env["valid_loader"], env["device"])


def batch_accuracies(env, logits, targets, size):
    """Accuracy of each batch of `size` consecutive images."""
    acc = env["accuracy_from_logits"]
    starts = range(0, len(targets), size)
    return [float(acc(logits[i:i + size], targets[i:i + size])) for i in starts]


def sequences(env):
    """Every list/tuple/1-D tensor of floats in [0, 1] that the answer holds."""
    import torch
    found = []
    for key, value in env.items():
        if key.startswith("_") or not isinstance(value, (list, tuple, torch.Tensor)):
            continue
        try:
            vector = torch.as_tensor(value, dtype=torch.float64).flatten()
        except Exception:
            continue
        if 0 < vector.numel() <= 1000 and bool(((vector >= 0) & (vector <= 1)).all()):
            found.append(vector.tolist())
    return found


@test_case(points=2, hidden=False)
def test_per_batch_accuracies(env):
    """A variable holds the accuracy of each batch of consecutive validation images."""
    import math
    logits, targets = reference(env)
    n = len(targets)
    for values in sequences(env):
        for size in range(1, n + 1):
            if math.ceil(n / size) != len(values):
                continue
            expected = batch_accuracies(env, logits, targets, size)
            if all(abs(a - b) < 1e-6 for a, b in zip(values, expected)):
                return
    raise AssertionError("keep the per-batch accuracies in a list (one per batch, in order)")
