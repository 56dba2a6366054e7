"""Checks of exercise ch11-ex3: shard an evaluation without padding."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch11-ex3"
manual = ("the demonstration: for 1,001 images and 4 ranks, the summed numbers of correct "
          "images divided by the summed image counts equal the accuracy of all images")


def shards_exactly(function, n, world_size):
    """True if the ranks' shares cover range(n) once and differ in size by at most one."""
    try:
        shares = [list(function(n, world_size, rank)) for rank in range(world_size)]
    except Exception:
        return False
    sizes = [len(share) for share in shares]
    return sorted(sum(shares, [])) == list(range(n)) and max(sizes) - min(sizes) <= 1


def fixed_functions(env):
    """The answer's functions named with 'shard' that shard 1,001 images over 4 ranks exactly."""
    from torchbook.grading import answer_functions
    return [f for f in answer_functions(env, lambda name: "shard" in name)
            if shards_exactly(f, 1001, 4)]


@test_case(points=1, hidden=False)
def test_every_image_once(env):
    """1,001 images over 4 ranks: every image on exactly one rank, shares balanced."""
    assert fixed_functions(env), \
        "no function named with 'shard' gives each of 1,001 images to exactly one of 4 ranks"


@test_case(points=1, hidden=True)
def test_other_sizes(env):
    """Fewer images than ranks, one rank, and sizes that split evenly."""
    good = fixed_functions(env)
    assert good, "no function to test (see the public case)"
    cases = [(3, 8), (10, 1), (12, 4), (0, 2), (97, 7)]
    assert any(all(shards_exactly(f, n, w) for n, w in cases) for f in good)
