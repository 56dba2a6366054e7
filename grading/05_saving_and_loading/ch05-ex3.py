"""Checks of exercise ch05-ex3: torch.export without dynamic_shapes (a fixed batch size)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch05-ex3"
manual = "what happens with 5 images and why a static batch size is the default (in words)"


def static_programs(env):
    """Exported programs in the answer that run on 8 images and refuse 5."""
    import torch
    example = env["example"]
    found = []
    for key, value in env.items():
        if key.startswith("_") or not isinstance(value, torch.export.ExportedProgram):
            continue
        with torch.no_grad():
            try:
                eight = value.module()(example[:8])
            except Exception:
                continue
            try:
                value.module()(example[:5])
            except Exception:
                found.append((value, eight))
    return found


@test_case(points=1, hidden=False)
def test_a_static_export(env):
    """An exported program of yours accepts the batch of 8 and refuses a batch of 5."""
    assert static_programs(env), \
        "export the model without dynamic_shapes and keep the ExportedProgram in a variable"


@test_case(points=1, hidden=True)
def test_it_computes_the_model(env):
    """On the 8 example images it gives the model's logits."""
    import torch
    expected = env["cpu_model"](env["example"][:8]).detach()
    assert any(torch.allclose(eight, expected, atol=1e-5) for _, eight in static_programs(env)), \
        "no static exported program that computes cpu_model"
