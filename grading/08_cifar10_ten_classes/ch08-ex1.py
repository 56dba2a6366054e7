"""Checks of exercise ch08-ex1: find the bug in `confusion_counts` (rows and columns swapped)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch08-ex1"
manual = ("the explanation: a right answer has predicted == true, the same cell either way, so the "
          "diagonal and the accuracy survive the swap; only the mistakes move")
CHAPTER = {"check_confusion_counts"}


def counts_of(function, labels, predictions, num_classes):
    """function(labels, predictions, num_classes) as a NumPy array, or None if it fails."""
    import numpy as np
    try:
        return np.asarray(function(labels, predictions, num_classes))
    except Exception:
        return None


def expected(labels, predictions, num_classes):
    """scikit-learn's confusion matrix: rows are true classes."""
    from sklearn.metrics import confusion_matrix
    return confusion_matrix(labels.numpy(), predictions.numpy(), labels=range(num_classes))


def fixed_functions(env):
    """The answer's functions named like a confusion count that agree on the validation answers."""
    import numpy as np
    from torchbook.grading import LIBRARIES, answer_functions

    labels, predictions = env["data"].valid.labels, env["valid_pred"]
    wanted = expected(labels, predictions, 10)
    return [f for f in answer_functions(env, lambda key: "confusion" in key, CHAPTER, LIBRARIES)
            if np.array_equal(counts_of(f, labels, predictions, 10), wanted)]


@test_case(points=1, hidden=False)
def test_the_counts_match_scikit_learn(env):
    """A function of yours counts the validation answers as scikit-learn does (the chapter's check)."""
    assert fixed_functions(env), \
        "no function named with 'confusion' counts the validation answers as scikit-learn does"


@test_case(points=1, hidden=True)
def test_rows_are_true_classes_on_any_answers(env):
    """Three classes, one never predicted, one never present: rows are still the true classes."""
    import numpy as np
    import torch
    labels = torch.tensor([0, 0, 1, 1, 1, 0])
    predictions = torch.tensor([1, 1, 1, 2, 2, 0])
    for function in fixed_functions(env):
        if np.array_equal(counts_of(function, labels, predictions, 3),
                          expected(labels, predictions, 3)):
            return
    raise AssertionError("count image i in row labels[i], column predictions[i]")
