"""Checks of exercise ch08-ex2: precision and recall of every class from the confusion matrix."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch08-ex2"
manual = ("which class has the lowest precision on the validation images, and which classes its "
          "false alarms come from (its column of the confusion matrix)")
CHAPTER = {"check_confusion_counts", "confusion_counts", "images_per_second", "train_baseline"}


def scikit_learn(matrix):
    """Precision and recall per class of a confusion matrix, by scikit-learn (zero_division=0)."""
    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support
    matrix = np.asarray(matrix)
    n = len(matrix)
    labels = np.repeat(np.arange(n), matrix.sum(axis=1))
    answers = np.concatenate([np.repeat(np.arange(n), row) for row in matrix])
    precision, recall, _, _ = precision_recall_fscore_support(labels, answers, labels=range(n),
                                                              zero_division=0)
    return precision, recall


def agrees(function, matrix):
    """True if function(matrix) returns (precision, recall) as scikit-learn computes them."""
    import numpy as np
    try:
        precision, recall = function(matrix)
        want_precision, want_recall = scikit_learn(matrix)
        return (np.allclose(np.asarray(precision, dtype=float), want_precision)
                and np.allclose(np.asarray(recall, dtype=float), want_recall))
    except Exception:
        return False


def answers(env):
    """The answer's functions named with precision or recall."""
    from torchbook.grading import LIBRARIES, answer_functions
    return answer_functions(env, lambda key: "precision" in key or "recall" in key, CHAPTER,
                            LIBRARIES)


@test_case(points=1, hidden=False)
def test_precision_and_recall_of_the_validation_matrix(env):
    """precision_recall(matrix) on the chapter's validation matrix agrees with scikit-learn."""
    assert any(agrees(f, env["matrix"]) for f in answers(env)), \
        "write precision_recall(matrix) returning (precision, recall), one number per class"


@test_case(points=1, hidden=True)
def test_a_class_never_predicted_has_precision_zero(env):
    """A class no image is called gets precision 0, not NaN; one with no images recall 0."""
    import numpy as np
    matrix = np.array([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    assert any(agrees(f, matrix) for f in answers(env)), \
        "a class that is never predicted (or never present) must give 0, as zero_division=0"
