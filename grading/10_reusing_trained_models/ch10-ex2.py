"""Checks of exercise ch10-ex2: find the bug in `train_head_only` (a backbone that moves)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch10-ex2"
manual = ""


def small_transfer_model(env):
    """A tiny ResNet with one logit and trained-looking BatchNorm statistics, on the device."""
    import torch
    from torchbook.models import resnet
    torch.manual_seed(0)
    model = resnet(8, width=4, num_classes=1)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("running_mean"):
                tensor.copy_(torch.rand(tensor.shape) * 0.1)  # statistics that a batch would move
            elif key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape) * 0.1 + 0.9)
    return model.to(env["device"])


def run(env, train_head):
    """Train a small model's head with `train_head`; return (backbone moved, head moved) names."""
    import torch
    model = small_transfer_model(env)
    before = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.tensor([0, 1] * 10)
    train_head(model, images, labels)
    moved = [key for key, tensor in model.state_dict().items()
             if not torch.equal(tensor, before[key])]
    head = [key for key in moved if key.startswith("fc.")]
    return [key for key in moved if key not in head], head


def fixed_functions(env):
    """The answer's functions named with 'head' that leave a backbone unchanged."""
    from torchbook.grading import answer_functions
    good = []
    for function in answer_functions(env, lambda key: "head" in key.lower()):
        try:
            backbone_moved, _ = run(env, function)
        except Exception:
            continue
        if not backbone_moved:
            good.append(function)
    return good


@test_case(points=1, hidden=False)
def test_the_backbone_stays_put(env):
    """A head-training function of yours leaves every backbone tensor (statistics too) as is."""
    assert fixed_functions(env), \
        "no function named with 'head' trains the head without changing the backbone's tensors"


@test_case(points=1, hidden=True)
def test_the_head_is_still_trained(env):
    """The fixed function still trains the head: its weight and bias change."""
    good = fixed_functions(env)
    assert good, "no function leaves the backbone unchanged (see the public case)"
    assert any(set(run(env, f)[1]) == {"fc.weight", "fc.bias"} for f in good), \
        "the head's weight and bias must change"
