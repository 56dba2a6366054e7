"""Helpers for the exercise checks in grading/ (otter-grader runs them in the student's namespace)."""
from __future__ import annotations

import types
from typing import Callable, Collection

LIBRARIES = ("torchbook", "sklearn", "numpy", "torch", "matplotlib", "pandas")


def answer_functions(env: dict, name_matches: Callable[[str], bool], chapter: Collection[str] = (),
                     libraries: tuple[str, ...] = ("torchbook",)) -> list[Callable]:
    """The student's own functions whose name matches (not the chapter's, private or libraries')."""
    return [value for key, value in env.items()
            if isinstance(value, types.FunctionType) and name_matches(key)
            and key not in chapter and not key.startswith("_")
            and not getattr(value, "__module__", "").startswith(libraries)]
