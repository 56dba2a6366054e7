"""Checks of exercise ch10-ex3: parameter groups with a learning rate per stage."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch10-ex3"
manual = "the validation accuracy of the layer-wise run against the two-group run (printed)"
# The chapter's own functions with "group" in their names that are not answers.
CHAPTER = {"head_and_backbone_groups"}

PARTS = [("fc.", 0), ("stages.2.", 1), ("stages.1.", 2), ("stages.0.", 3), ("stem.", 4)]


def learning_rates(groups):
    """Map id(parameter) -> list of the learning rates of the groups it is in."""
    rates = {}
    for group in groups:
        for parameter in group["params"]:
            rates.setdefault(id(parameter), []).append(group["lr"])
    return rates


def correct_groups(function, depth, lr, decay):
    """True if function(model, lr, decay) puts each parameter once, at its part's rate."""
    import math
    from torchbook.models import resnet
    model = resnet(depth, width=4, num_classes=3)
    try:
        rates = learning_rates(function(model, lr, decay))
    except Exception:
        return False
    for key, parameter in model.named_parameters():
        power = next(p for prefix, p in PARTS if key.startswith(prefix))
        found = rates.get(id(parameter), [])
        if len(found) != 1 or not math.isclose(found[0], lr * decay ** power, rel_tol=1e-9):
            return False
    return len(rates) == len(list(model.parameters()))


def answers(env):
    """The answer's functions named with 'group' that are right on a ResNet-8."""
    from torchbook.grading import answer_functions
    found = answer_functions(env, lambda key: "group" in key.lower(), CHAPTER)
    return [f for f in found if correct_groups(f, 8, 0.1, 0.5)]


@test_case(points=1, hidden=False)
def test_each_part_gets_its_rate(env):
    """A function of yours (named with 'group') gives fc lr, stages 2, 1, 0 and the stem less."""
    assert answers(env), "no function named with 'group' gives each part of a ResNet-8 its rate"


@test_case(points=1, hidden=True)
def test_other_depths_and_decays(env):
    """It works for a ResNet-20 and another decay too."""
    good = answers(env)
    assert good, "no working function (see the public case)"
    assert any(correct_groups(f, 20, 0.05, 0.3) for f in good), "ResNet-20 with decay 0.3"
