"""Checks of exercise ch03-ex1: an EarlyStopping callback with a monitor, a mode and a patience."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch03-ex1"
manual = ("after how many epochs the Adam run stops, which epoch the checkpoint keeps, and what "
          "the training and validation losses do (sentences, from its output)")


def stops(callback_class, values, already=False, **kwargs):
    """Feed epochs with these metric values; return stop_training after each epoch."""
    from types import SimpleNamespace
    assert callback_class is not None, "define the class EarlyStopping"
    callback = callback_class(**kwargs)
    monitor = kwargs.get("monitor", "valid_loss")
    trainer = SimpleNamespace(stop_training=already, last_epoch=len(values))
    if hasattr(callback, "on_fit_start"):
        callback.on_fit_start(trainer)
    seen = []
    for epoch, value in enumerate(values, start=1):
        callback.on_epoch_end(trainer, {"epoch": epoch, monitor: value})
        seen.append(trainer.stop_training)
    return seen


@test_case(points=1, hidden=False)
def test_is_a_callback(EarlyStopping, Callback):
    """EarlyStopping subclasses the Trainer's Callback."""
    assert EarlyStopping is not None, "define the class EarlyStopping"
    assert issubclass(EarlyStopping, Callback)


@test_case(points=1, hidden=False)
def test_stops_after_patience(EarlyStopping):
    """valid_loss, mode min, patience 2: best at epoch 2, none better at 3 and 4: stop after 4."""
    assert stops(EarlyStopping, [0.5, 0.4, 0.4, 0.45, 0.3], monitor="valid_loss", mode="min",
                 patience=2)[:4] == [False, False, False, True]


@test_case(points=1, hidden=True)
def test_modes_defaults_and_flat_runs(EarlyStopping):
    """Mode max, the defaults (valid_loss, min, 2), a flat run; improvement resets the count."""
    assert stops(EarlyStopping, [0.7, 0.6, 0.8], monitor="valid_auc", mode="max",
                 patience=1)[:2] == [False, True]
    assert stops(EarlyStopping, [0.5, 0.4, 0.45, 0.42, 0.1]) == [False, False, False, True, True]
    assert stops(EarlyStopping, [0.5] * 6, patience=3)[:4] == [False, False, False, True]
    assert stops(EarlyStopping, [0.5, 0.6, 0.4, 0.5, 0.3, 0.4], patience=2) == [False] * 6


@test_case(points=1, hidden=True)
def test_never_cancels_a_stop(EarlyStopping):
    """A stop another callback asked for stays asked for."""
    assert all(stops(EarlyStopping, [0.5, 0.4, 0.3], patience=2, already=True))
