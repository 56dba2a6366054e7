"""Checks of exercise ch11-ex1: find the bug in `epoch_orders` (no sampler.set_epoch)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch11-ex1"
manual = ""
# The chapter's own functions with those words in their names that are not answers.
CHAPTER = {"check_epoch_orders"}


def orders(function, images, world_size, epochs, batch_size=4):
    """Every rank's orders from `function`, or None if it fails."""
    import torch
    from torch.utils.data import TensorDataset
    dataset = TensorDataset(torch.arange(images))
    try:
        return [function(dataset, world_size, rank, epochs, batch_size)
                for rank in range(world_size)]
    except Exception:
        return None


def shards_well(function, images, world_size, epochs):
    """True if each epoch covers every image once and each epoch has a new order."""
    ranks = orders(function, images, world_size, epochs)
    if ranks is None:
        return False
    once = all(sorted(sum((ranks[r][e] for r in range(world_size)), [])) == list(range(images))
               for e in range(epochs))
    return once and all(ranks[0][e] != ranks[0][e + 1] for e in range(epochs - 1))


def fixed_functions(env):
    """The answer's functions: a fixed epoch_orders, or a new one named with order or epoch."""
    from torchbook.grading import answer_functions

    def named(name: str) -> bool:
        return "order" in name or "epoch" in name

    return [f for f in answer_functions(env, named, CHAPTER) if shards_well(f, 24, 2, 3)]


@test_case(points=1, hidden=False)
def test_every_epoch_is_reshuffled(env):
    """Two ranks, three epochs of 24 images: each image once per epoch, a new order each epoch."""
    assert fixed_functions(env), \
        "no function named with 'order' or 'epoch' reshuffles every epoch (sampler.set_epoch)"


@test_case(points=1, hidden=True)
def test_other_sizes(env):
    """Three ranks, four epochs of 30 images: the same, every rank in step with the others."""
    good = fixed_functions(env)
    assert good, "no fixed epoch_orders to test (see the public case)"
    assert any(shards_well(f, 30, 3, 4) for f in good)
