"""Checks of exercise ch08-ex3: top-k accuracy of ten-class probabilities."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch08-ex3"
manual = ("the top-1, top-2 and top-3 validation accuracies, how many images k = 2 adds, and how "
          "many of them are mix-ups of the most confused pair (cat/dog on the full data)")
CHAPTER = {"check_confusion_counts", "confusion_counts", "images_per_second", "train_baseline"}


def agrees(function, probabilities, labels, k):
    """True if function(probabilities, labels, k) equals scikit-learn's top-k accuracy."""
    from sklearn.metrics import top_k_accuracy_score
    try:
        ours = float(function(probabilities, labels, k))
    except Exception:
        return False
    theirs = top_k_accuracy_score(labels.numpy(), probabilities.numpy(), k=k,
                                  labels=range(probabilities.shape[1]))
    return abs(ours - theirs) < 1e-6


def answers(env):
    """The answer's functions named with top."""
    from torchbook.grading import LIBRARIES, answer_functions
    return answer_functions(env, lambda key: "top" in key, CHAPTER, LIBRARIES)


@test_case(points=1, hidden=False)
def test_top_k_on_the_validation_images(env):
    """top_k_accuracy(p_valid, labels, k) agrees with scikit-learn for k = 1, 2, 3."""
    probabilities, labels = env["p_valid"], env["data"].valid.labels
    assert any(all(agrees(f, probabilities, labels, k) for k in (1, 2, 3))
               for f in answers(env)), \
        "write top_k_accuracy(probabilities, labels, k) as in the exercise"


@test_case(points=1, hidden=True)
def test_top_k_on_a_small_case(env):
    """Four images, four classes: top-1 1/4, top-2 2/4, top-3 3/4."""
    import torch
    probabilities = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.4, 0.3, 0.2],
                                  [0.1, 0.2, 0.3, 0.4], [0.4, 0.1, 0.2, 0.3]])
    labels = torch.tensor([0, 2, 1, 1])
    assert any(all(agrees(f, probabilities, labels, k) for k in (1, 2, 3)) for f in answers(env)), \
        "count an image when its label is among the k largest probabilities"
