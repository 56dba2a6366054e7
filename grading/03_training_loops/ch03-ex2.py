"""Checks of exercise ch03-ex2: OneCycleLR next to warmup_cosine_schedule (a plot and a paragraph).

Nothing in this exercise is named or returned: its answer is a figure and where the two schedules
differ, in words. It is graded by hand; this file only declares that, so the gradebook says so.
"""

OK_FORMAT = False
name = "ch03-ex2"
manual = ("the plot of both schedules (title, labelled axes, legend) and where they differ: "
          "OneCycleLR warms up along a cosine, starts at max_lr / 25 and ends near 0, "
          "and cycles the momentum")
manual_points = 2
