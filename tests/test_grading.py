"""Tests for torchbook.grading: finding the student's own functions for the exercise checks."""
from __future__ import annotations

import numpy as np

from torchbook.grading import LIBRARIES, answer_functions
from torchbook.settings import by_mode


def test_answer_functions_keeps_only_the_students_matching_functions() -> None:
    """Chapter names, private names, library functions and non-functions are left out."""
    def fixed_head():
        return 1

    def check_head():
        return 2

    def _helper_head():
        return 3

    env = {"fixed_head": fixed_head, "check_head": check_head, "_helper_head": _helper_head,
           "head_size": 64, "by_mode_head": by_mode, "other": lambda: 4}
    found = answer_functions(env, lambda name: "head" in name, chapter={"check_head"})
    assert found == [fixed_head]


def test_answer_functions_skips_every_library_named() -> None:
    """With LIBRARIES, a numpy function under a matching name is not taken for an answer."""
    env = {"mean_of": np.mean, "my_mean": lambda x: sum(x) / len(x)}
    assert [f.__name__ for f in answer_functions(env, lambda n: "mean" in n, (), LIBRARIES)] \
        == ["<lambda>"]
