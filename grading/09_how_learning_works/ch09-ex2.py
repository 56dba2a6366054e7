"""Checks of exercise ch09-ex2: the big model with augmentation only and weight decay only."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch09-ex2"
manual = ("the plot of the four runs (titled, labelled, legends) and which remedy closed most of "
          "the gap between training and validation loss, read from the answer's own output")
COLUMNS = {"epoch", "train_loss", "valid_loss"}


def history(env, key):
    """The answer's history `key`, checked to be a table of the chapter's big-model epochs."""
    import math
    import pandas as pd
    table = env.get(key)
    assert isinstance(table, pd.DataFrame), f"{key} must be the history (a DataFrame) of the run"
    assert COLUMNS <= set(table.columns), f"{key} needs the Trainer's columns {sorted(COLUMNS)}"
    epochs = env["big_epochs"]
    assert len(table) == epochs, f"{key} must have big_epochs = {epochs} rows"
    losses = table["train_loss"].tolist() + table["valid_loss"].tolist()
    assert all(math.isfinite(v) for v in losses), f"{key} has losses that are not finite"
    return table


@test_case(points=1, hidden=False)
def test_two_histories_of_the_big_models_epochs(env):
    """augmentation_only and weight_decay_only are histories of big_epochs epochs."""
    history(env, "augmentation_only")
    history(env, "weight_decay_only")


@test_case(points=1, hidden=True)
def test_each_run_differs_from_the_others(env):
    """Each run trained anew: neither copies the chapter's runs nor the other one."""
    augmented, decayed = history(env, "augmentation_only"), history(env, "weight_decay_only")
    runs = [augmented, decayed, env["big_history"], env["regularised_history"]]
    losses = [tuple(run["train_loss"].round(8)) for run in runs]
    assert len(set(losses)) == 4, "the four runs must differ (one remedy each, newly trained)"
