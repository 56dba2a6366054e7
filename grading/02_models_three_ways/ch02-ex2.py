"""Checks of exercise ch02-ex2: parameters of each layer of Net, by hand."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch02-ex2"
manual = ("the conv2 share (94.5 %) and the 3 x 3 count (18,496) in the printed answer; "
          "answers that only print their counts fail the automatic part: read them")
PER_LAYER = (896, 51264, 2080, 33)


def numbers_in(value):
    """The integers a variable holds: itself, or the values of a dict, list or tuple."""
    from numbers import Integral
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)) and len(value) < 100:
        return {int(v) for v in value if isinstance(v, Integral) and not isinstance(v, bool)}
    if isinstance(value, Integral) and not isinstance(value, bool):
        return {int(value)}
    return set()


@test_case(points=1, hidden=False)
def test_counts_by_layer_kept(env):
    """The four by-hand layer counts are kept in variables (e.g. a dict by layer name)."""
    held = set()
    for key, value in env.items():
        if not key.startswith("_"):
            held |= numbers_in(value)
    missing = [n for n in PER_LAYER if n not in held]
    assert not missing, f"no variable holds these layer counts: {missing}"


@test_case(points=1, hidden=True)
def test_counts_add_up(count_parameters, net):
    """The per-layer counts add up to count_parameters(net)."""
    assert sum(PER_LAYER) == count_parameters(net)
