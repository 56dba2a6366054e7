"""Checks of exercise ch06-ex2: evidence for the other class (show, explain, look).

The exercise asks to show two facts (flipped channel weights, maps that never overlap at 4 x 4),
to explain why, and to look at the upsampled maps: it names no result. Graded by hand.
"""

OK_FORMAT = False
name = "ch06-ex2"
manual = ("alpha of class 0 = -alpha of class 1 and a zero product of the 4 x 4 maps, shown from "
          "activation_and_gradient; why (the scores are z and -z); whether the upsampled maps "
          "overlap (they can, near borders)")
manual_points = 3
