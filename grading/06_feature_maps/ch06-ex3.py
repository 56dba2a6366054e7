"""Checks of exercise ch06-ex3: switching off one classifier feature at a time (pre-hooks)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch06-ex3"
manual = ("the plot (accuracy change against the classifier weight, title, labelled axes), which "
          "features matter most, and the direction: a positive weight switched off can only "
          "move predictions towards airplane")


def reference(env):
    """Validation accuracy with all features and with each feature k zeroed (fractions)."""
    import torch
    model, device = env["model"], env["device"]
    images = env["prepare_batch"](env["valid_images"], device, env["uses_channels_last"](model))
    with env["capture_activations"](model, ["flatten"]) as captured, torch.no_grad():
        model(images)
    pooled, labels = captured["flatten"], env["valid_labels"].to(device)
    accuracies = []
    with torch.no_grad():
        base = ((model.classifier(pooled)[:, 0] > 0).long() == labels).float().mean().item()
        for k in range(pooled.shape[1]):
            changed = pooled.clone()
            changed[:, k] = 0
            predicted = (model.classifier(changed)[:, 0] > 0).long()
            accuracies.append((predicted == labels).float().mean().item())
    return base, torch.tensor(accuracies, dtype=torch.float64)


def per_feature_results(env):
    """Names of variables holding, for every feature, the accuracy or its change."""
    import torch
    base, accuracies = reference(env)
    targets = [accuracies, accuracies - base, 100 * accuracies, 100 * (accuracies - base)]
    found = []
    for key, value in env.items():
        if key.startswith("_") or not isinstance(value, (list, tuple, torch.Tensor)):
            continue
        try:
            vector = torch.as_tensor(value, dtype=torch.float64).flatten().cpu()
        except Exception:
            continue
        if vector.shape == accuracies.shape and any(
                torch.allclose(vector, target, atol=1e-6) for target in targets):
            found.append(key)
    return found


@test_case(points=2, hidden=False)
def test_accuracy_per_switched_off_feature(env):
    """A variable holds the validation accuracy (or its change) with each feature zeroed."""
    assert per_feature_results(env), \
        "keep one accuracy (or change of accuracy) per classifier input, in feature order"


@test_case(points=1, hidden=True)
def test_no_pre_hook_left(env):
    """With the answer done, no forward pre-hook stays on the classifier."""
    assert per_feature_results(env), "no per-feature accuracies to go with (see the public case)"
    assert not env["model"].classifier._forward_pre_hooks, "remove the pre-hook after each use"
