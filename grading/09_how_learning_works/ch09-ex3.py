"""Checks of exercise ch09-ex3: SGD with four momentums on the chapter's valley."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch09-ex3"
manual = ("the log-scale plot (title, labelled axes, legend) and why momentum 0.99 is not the "
          "fastest: its velocity fades so slowly that it overshoots and swings around the minimum")
MOMENTUMS = (0.0, 0.5, 0.9, 0.99)


def reference(momentum):
    """The 61 losses of SGD (lr 0.1) from (-9, 2) on w1^2 / 50 + w2^2, the start included."""
    import torch
    w = torch.tensor([-9.0, 2.0], requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=0.1, momentum=momentum)
    losses = []
    for step in range(61):
        loss = w[0] ** 2 / 50 + w[1] ** 2
        losses.append(loss.item())
        if step < 60:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return losses


def answer(env):
    """momentum_losses, checked to map each momentum to 61 numbers."""
    losses = env.get("momentum_losses")
    assert isinstance(losses, dict), "momentum_losses must be a dict: momentum -> losses"
    assert sorted(float(k) for k in losses) == list(MOMENTUMS), \
        f"momentum_losses needs exactly the momentums {MOMENTUMS}"
    result = {}
    for key, values in losses.items():
        values = [float(v) for v in values]
        assert len(values) == 61, "61 losses per momentum: the start and after each of 60 steps"
        result[float(key)] = values
    return result


@test_case(points=1, hidden=False)
def test_four_momentums_sixty_one_losses(env):
    """A dict with the momentums 0, 0.5, 0.9 and 0.99, each with 61 losses."""
    answer(env)


@test_case(points=1, hidden=True)
def test_the_losses_are_sgds(env):
    """The losses are those of SGD at lr 0.1 from the chapter's start on the valley."""
    import math
    for momentum, values in answer(env).items():
        expected = reference(momentum)
        close = [math.isclose(v, e, rel_tol=1e-4, abs_tol=1e-9) for v, e in zip(values, expected)]
        assert all(close), f"the losses for momentum {momentum} are not SGD's at lr 0.1 from START"
