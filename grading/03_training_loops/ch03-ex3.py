"""Checks of exercise ch03-ex3: find the bug in `validate` (the model left in training mode)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch03-ex3"
manual = ("the explanation: no model.eval(), so dropout stays on and changes the loss at every "
          "call; torch.no_grad() does not switch it off")
CHAPTER = {"valid_epoch", "valid_step", "check_validate"}


def agrees_after_train(env, function, model):
    """True if function(model, ...) twice after model.train() gives valid_epoch's loss."""
    from torch import nn
    loss_fn, losses = nn.BCEWithLogitsLoss(), []
    try:
        for _ in range(2):
            model.train()
            result = function(model, env["valid_loader"], loss_fn, env["device"])
            losses.append(result["valid_loss"])
        model.train()
        reference = env["valid_epoch"](model, env["valid_loader"], loss_fn, env["device"])
    except Exception:
        return False
    return all(abs(float(loss) - reference["valid_loss"]) < 1e-6 for loss in losses)


def fixed_functions(env):
    """The answer's validation functions (a fixed validate, or a new one named with valid)."""
    from torchbook.grading import LIBRARIES, answer_functions
    return [f for f in answer_functions(env, lambda name: "valid" in name, CHAPTER, LIBRARIES)
            if agrees_after_train(env, f, env["seed_net"])]


@test_case(points=1, hidden=False)
def test_the_fix_passes_the_chapter_check(env):
    """A function of yours, called after model.train(), gives valid_epoch's loss, every time."""
    assert fixed_functions(env), \
        "no function named with 'valid' agrees with valid_epoch when called after model.train()"


@test_case(points=1, hidden=True)
def test_batchnorm_is_left_alone(env):
    """On a model with BatchNorm it agrees too and leaves the running statistics unchanged."""
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)).to(env["device"])
    good = fixed_functions(env)
    assert good, "no fixed validate to test (see the public case)"
    for function in good:
        before = model[1].running_mean.clone()
        model.train()
        function(model, env["valid_loader"], nn.BCEWithLogitsLoss(), env["device"])
        if torch.equal(model[1].running_mean, before) and agrees_after_train(env, function, model):
            return
    raise AssertionError("validation must not update BatchNorm's running statistics")
