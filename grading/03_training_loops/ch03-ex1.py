"""Checks of exercise ch03-ex1: an EarlyStopping callback."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch03-ex1"
manual = "after how many epochs the Adam run stops (a sentence, from its output)"


def stops(callback_class, values, monitor="valid_auc", already=False, **kwargs):
    """Feed epochs with these metric values; return stop_training after each epoch."""
    from types import SimpleNamespace
    assert callback_class is not None, "define the class EarlyStopping"
    callback = callback_class(monitor=monitor, **kwargs)
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
    """patience=2: best at epoch 2, no gain at 3 and 4, so it asks to stop after epoch 4."""
    assert stops(EarlyStopping, [0.5, 0.6, 0.6, 0.55, 0.7], patience=2)[:4] == \
        [False, False, False, True]


@test_case(points=1, hidden=True)
def test_monitor_patience_and_flat_runs(EarlyStopping):
    """Another metric and patience; a flat run stops after 1 + patience; improvement resets."""
    assert stops(EarlyStopping, [0.7, 0.6, 0.8], monitor="valid_acc", patience=1)[:2] == \
        [False, True]
    assert stops(EarlyStopping, [0.5] * 6, patience=3)[:4] == [False, False, False, True]
    assert stops(EarlyStopping, [0.5, 0.4, 0.6, 0.5, 0.7, 0.6], patience=2) == [False] * 6


@test_case(points=1, hidden=True)
def test_never_cancels_a_stop(EarlyStopping):
    """A stop another callback asked for stays asked for."""
    assert all(stops(EarlyStopping, [0.5, 0.6, 0.7], patience=2, already=True))
