"""Checks of exercise ch11-ex2: load a state_dict saved from a model or from its DDP wrapper."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch11-ex2"
manual = ""
CHAPTER = {"largest_difference"}


def small_model():
    """A model with nested names, as the check's source of weights."""
    from torch import nn
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 2))


def loads_both(function):
    """True if `function` loads a prefixed and a plain file into fresh models, weights equal."""
    import tempfile
    from pathlib import Path
    import torch
    source = small_model()
    source[1].running_mean += 1  # buffers count too
    with tempfile.TemporaryDirectory() as folder:
        prefixed = {f"module.{k}": v for k, v in source.state_dict().items()}
        files = {"ddp.pt": prefixed, "plain.pt": source.state_dict()}
        for file_name, state in files.items():
            torch.save(state, Path(folder) / file_name)
            model = small_model()
            try:
                function(Path(folder) / file_name, model)
            except Exception:
                return False
            if not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                         source.state_dict().values())):
                return False
    return True


def fixed_functions(env):
    """The answer's loaders: functions named with 'load' that load both kinds of files."""
    from torchbook.grading import answer_functions
    return [f for f in answer_functions(env, lambda n: "load" in n, CHAPTER) if loads_both(f)]


@test_case(points=1, hidden=False)
def test_both_kinds_of_files_load(env):
    """A function of yours loads a state_dict with and without the module. prefix."""
    assert fixed_functions(env), \
        "no function named with 'load' loads both a DDP (module.) and a plain state_dict"


@test_case(points=1, hidden=True)
def test_another_architecture_still_fails(env):
    """A file of another model raises instead of loading part of it silently."""
    import tempfile
    from pathlib import Path
    import torch
    from torch import nn
    good = fixed_functions(env)
    assert good, "no loader to test (see the public case)"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "other.pt"
        torch.save({f"module.{k}": v for k, v in nn.Linear(3, 1).state_dict().items()}, path)
        for function in good:
            try:
                function(path, small_model())
            except Exception:
                return
    raise AssertionError("loading a file of another architecture must raise (strict loading)")
