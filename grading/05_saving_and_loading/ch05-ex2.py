"""Checks of exercise ch05-ex2: a loader with its own generator (an experiment and an answer).

The exercise names nothing and returns nothing: its answer is a 4 + 4 experiment, an explanation
and a way to make the runs equal again. It is graded by hand; this file only declares that.
"""

OK_FORMAT = False
name = "ch05-ex2"
manual = ("the experiment (4 + 4 epochs with CheckpointCallback(last_path=...) differ from 8 "
          "straight), why (rng_states does not save the loader's generator), and a fix without "
          "changing torchbook (save/restore generator.get_state(), or reseed it every epoch) "
          "whose printed difference is 0")
manual_points = 3
