"""Checks of exercise ch01-ex1: a validation split with two SubsetRandomSamplers."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch01-ex1"
manual = ""


def samplers(env):
    """Every SubsetRandomSampler the answer made: as variables or inside DataLoaders."""
    from torch.utils.data import DataLoader, SubsetRandomSampler
    found = [v for v in env.values() if isinstance(v, SubsetRandomSampler)]
    found += [v.sampler for v in env.values()
              if isinstance(v, DataLoader) and isinstance(v.sampler, SubsetRandomSampler)]
    unique = {id(s): s for s in found}
    return list(unique.values())


def split_pair(env):
    """The (train, valid) sampler pair over the training folder: disjoint, 80 % and 20 %."""
    n = len(env["plain"])
    pool = samplers(env)
    for big in pool:
        for small in pool:
            a, b = set(map(int, big.indices)), set(map(int, small.indices))
            if abs(len(a) - 0.8 * n) <= 1 and abs(len(b) - 0.2 * n) <= 1 and not a & b:
                return big, small
    return None


@test_case(points=1, hidden=False)
def test_two_samplers(env):
    """There are at least two SubsetRandomSamplers."""
    assert len(samplers(env)) >= 2, "make two SubsetRandomSamplers (or DataLoaders using them)"


@test_case(points=1, hidden=False)
def test_disjoint_80_20(env):
    """One sampler holds 80 % of the training folder, another the other 20 %, with no overlap."""
    assert split_pair(env) is not None, \
        "no pair of samplers with 80 % / 20 % of the training folder and no image in both"


@test_case(points=1, hidden=True)
def test_split_covers_the_folder_and_loaders_use_it(env):
    """The two parts cover the whole folder and two DataLoaders draw through them."""
    from torch.utils.data import DataLoader
    pair = split_pair(env)
    assert pair is not None
    n = len(env["plain"])
    assert set(map(int, pair[0].indices)) | set(map(int, pair[1].indices)) == set(range(n))
    loaders = [v for v in env.values() if isinstance(v, DataLoader)]
    for sampler in pair:
        users = [ld for ld in loaders if ld.sampler is sampler]
        assert users, "build a DataLoader with sampler= for each part"
        assert len(users[0].dataset) == n, "the loaders draw from the whole training folder"
