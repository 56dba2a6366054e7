"""Checks of exercise ch01-ex3: HorizonWindowDataset, several days ahead."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch01-ex3"
manual = ""


def series(env):
    """The daily changes of the chapter as a float tensor (T, F)."""
    import torch
    return torch.as_tensor(env["daily"].to_numpy().copy(), dtype=torch.float32)


@test_case(points=1, hidden=False)
def test_is_a_window_dataset(HorizonWindowDataset, WindowDataset):
    """HorizonWindowDataset exists and subclasses WindowDataset."""
    assert HorizonWindowDataset is not None, "define the class HorizonWindowDataset"
    assert issubclass(HorizonWindowDataset, WindowDataset)


@test_case(points=1, hidden=False)
def test_length_and_first_item(env, HorizonWindowDataset):
    """window=8, horizon=3 over `daily`: T - 10 items; item 0 is rows 0-7 -> rows 8-10."""
    import torch
    assert HorizonWindowDataset is not None, "define the class HorizonWindowDataset"
    data = series(env)
    windows = HorizonWindowDataset(env["daily"].to_numpy().copy(), window=8, horizon=3)
    assert len(windows) == len(data) - 8 - 3 + 1, f"expected {len(data) - 10} items"
    inputs, targets = windows[0]
    assert tuple(targets.shape) == (3, data.shape[1]), "targets have shape (horizon, F)"
    assert torch.allclose(inputs, data[:8]) and torch.allclose(targets, data[8:11])


@test_case(points=1, hidden=True)
def test_other_sizes_last_item_and_bounds(env, HorizonWindowDataset):
    """Other window/horizon sizes, the last item, an index past the end, a too-short series."""
    import torch
    assert HorizonWindowDataset is not None, "define the class HorizonWindowDataset"
    data = series(env)
    for window, horizon in [(5, 1), (3, 7)]:
        windows = HorizonWindowDataset(data, window=window, horizon=horizon)
        assert len(windows) == len(data) - window - horizon + 1
        inputs, targets = windows[len(windows) - 1]
        assert torch.allclose(targets, data[len(data) - horizon:])
        assert torch.allclose(inputs, data[len(data) - horizon - window:len(data) - horizon])
        try:
            windows[len(windows)]
        except IndexError:
            pass
        else:
            raise AssertionError("an index past the last item must raise IndexError")
    assert len(HorizonWindowDataset(data[:5], window=4, horizon=2)) == 0
