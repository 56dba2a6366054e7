"""Checks of exercise ch02-ex3: TwoHeadNet, one body and two heads in an nn.ModuleDict."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch02-ex3"
manual = "each head's loss with the matching loss function on random labels (read the code)"


def heads_of(model):
    """The ModuleDict holding the two heads, or None."""
    from torch import nn
    for module in model.modules():
        if isinstance(module, nn.ModuleDict) and set(module) == {"one_logit", "two_logits"}:
            return module
    return None


@test_case(points=1, hidden=False)
def test_both_heads_shapes(TwoHeadNet):
    """forward(x, "one_logit") gives (N, 1) and forward(x, "two_logits") gives (N, 2)."""
    import torch
    assert TwoHeadNet is not None, "define the class TwoHeadNet"
    model = TwoHeadNet()
    x = torch.randn(5, 3, 32, 32)
    assert tuple(model(x, "one_logit").shape) == (5, 1)
    assert tuple(model(x, "two_logits").shape) == (5, 2)


@test_case(points=1, hidden=False)
def test_heads_in_a_module_dict(TwoHeadNet):
    """The heads sit in an nn.ModuleDict with keys one_logit and two_logits."""
    assert TwoHeadNet is not None, "define the class TwoHeadNet"
    assert heads_of(TwoHeadNet()) is not None, "keep both heads in one nn.ModuleDict"


@test_case(points=1, hidden=True)
def test_shared_body_and_parameters(TwoHeadNet, count_parameters):
    """54,339 parameters; the heads are Linear(32, 1) and Linear(32, 2) on one shared body."""
    import torch
    from torch import nn
    assert TwoHeadNet is not None, "define the class TwoHeadNet"
    model = TwoHeadNet().eval()
    assert count_parameters(model) == 54339
    heads = heads_of(model)
    assert isinstance(heads["one_logit"], nn.Linear) and heads["one_logit"].out_features == 1
    assert isinstance(heads["two_logits"], nn.Linear) and heads["two_logits"].out_features == 2
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = {}
        hook = heads["two_logits"].register_forward_hook(lambda m, i, o: features.update(a=i[0]))
        model(x, "two_logits")
        hook.remove()
        assert torch.allclose(heads["one_logit"](features["a"]), model(x, "one_logit"), atol=1e-5)
