"""Checks of exercise ch05-ex1: find the bug in `load_run` (a resume that drifts)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch05-ex1"
manual = ""
# The chapter's own functions with those words in their names that are not answers.
CHAPTER = {"load_to_cpu", "median_load_seconds", "try_loading", "restore_rng_states"}


def tiny_run(lr=0.1):
    """A small model, SGD with momentum and a StepLR schedule."""
    import torch
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


def resume(env, load):
    """Train 5 steps, save with the chapter's save_run, draw, load into a fresh run.

    Returns (loaded run, saved run, value returned by load, draws after saving, draws after load).
    """
    import tempfile
    from pathlib import Path
    import torch
    model, optimizer, scheduler = tiny_run()
    for _ in range(5):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.pt"
        env["save_run"](path, model, optimizer, scheduler, 5)
        after_save = torch.rand(3)
        fresh = tiny_run(lr=0.7)
        returned = load(path, *fresh)
        after_load = torch.rand(3)
    return fresh, (model, optimizer, scheduler), returned, after_save, after_load


def restores_schedule(env, load):
    """True if `load` brings back the scheduler's step and learning rate."""
    saved_states = env["rng_states"]()
    try:
        fresh, saved, *_ = resume(env, load)
    except Exception:
        return False
    finally:
        env["restore_rng_states"](saved_states)
    return (fresh[2].last_epoch == saved[2].last_epoch
            and fresh[2].get_last_lr() == saved[2].get_last_lr()
            and fresh[1].param_groups[0]["lr"] == saved[1].param_groups[0]["lr"])


def fixed_functions(env):
    """The answer's loaders: a fixed load_run, or a new function named with load/resume/restore."""
    from torchbook.grading import answer_functions

    def named_as_loader(name: str) -> bool:
        return any(word in name for word in ("load", "resume", "restore"))

    return [f for f in answer_functions(env, named_as_loader, CHAPTER) if restores_schedule(env, f)]


@test_case(points=1, hidden=False)
def test_the_scheduler_is_restored(env):
    """A loader of yours restores the scheduler: same step, same learning rate."""
    assert fixed_functions(env), \
        "no function named with load, resume or restore restores the scheduler saved by save_run"


@test_case(points=1, hidden=True)
def test_everything_else_is_restored_too(env):
    """The fixed loader still restores weights, optimizer state and RNGs and returns the epoch."""
    import torch
    good = fixed_functions(env)
    assert good, "no fixed loader to test (see the public case)"
    saved_states = env["rng_states"]()
    try:
        fresh, saved, returned, after_save, after_load = resume(env, good[0])
    finally:
        env["restore_rng_states"](saved_states)
    assert returned == 5, "return the epoch the run stopped after"
    assert all(torch.equal(a, b) for a, b in zip(fresh[0].parameters(), saved[0].parameters()))
    momentum = [fresh[1].state[p]["momentum_buffer"] for p in fresh[0].parameters()]
    expected = [saved[1].state[p]["momentum_buffer"] for p in saved[0].parameters()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, expected)), "optimizer state"
    assert torch.equal(after_save, after_load), "the random number generators"
