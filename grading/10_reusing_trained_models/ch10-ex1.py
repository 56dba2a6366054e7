"""Checks of exercise ch10-ex1: rename torchvision-style ResNet keys back to the book's names."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch10-ex1"
manual = ""
# The chapter's own functions with "name" in their names that are not answers.
CHAPTER = {"torchvision_names"}


def trained_looking(model):
    """The model with every tensor of its state_dict set to distinct random values."""
    import torch
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator))
    return model.eval()


def round_trips(env, rename, depth, num_classes):
    """True if rename(torchvision_names(state)) loads strictly and gives the same logits."""
    import torch
    from torchbook.models import resnet
    source = trained_looking(resnet(depth, width=4, num_classes=num_classes))
    target = resnet(depth, width=4, num_classes=num_classes).eval()
    try:
        renamed = rename(env["torchvision_names"](source.state_dict()))
        target.load_state_dict(renamed)
    except Exception:
        return False
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(target(x), source(x))


def answers(env, depth=8, num_classes=1):
    """The answer's renaming functions that round-trip a ResNet of `depth`."""
    from torchbook.grading import answer_functions
    found = answer_functions(env, lambda key: "name" in key.lower(), CHAPTER)
    return [f for f in found if round_trips(env, f, depth, num_classes)]


@test_case(points=1, hidden=False)
def test_a_resnet_8_round_trips(env):
    """A function of yours (with 'name' in its name) renames a ResNet-8's keys back."""
    assert answers(env), \
        "no function named with 'name' makes torchvision_names' keys load strictly"


@test_case(points=1, hidden=True)
def test_deeper_resnets_round_trip_too(env):
    """It works for a ResNet-20 and a ResNet-14 too (more blocks per stage, other heads)."""
    good = answers(env)
    assert good, "no working renaming function (see the public case)"
    assert any(round_trips(env, f, 20, 10) and round_trips(env, f, 14, 3) for f in good), \
        "the renaming does not work for deeper ResNets"
