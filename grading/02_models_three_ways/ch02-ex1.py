"""Checks of exercise ch02-ex1: ReluNet, the seed Net with a ReLU after each convolution."""
from otter.test_files import test_case

OK_FORMAT = False
name = "ch02-ex1"
manual = "why the parameter count is the same (a sentence)"


@test_case(points=1, hidden=False)
def test_subclass_shape_and_count(ReluNet, Net, count_parameters):
    """ReluNet subclasses Net, gives one logit per image and has Net's parameter count."""
    import torch
    assert ReluNet is not None, "define the class ReluNet"
    assert issubclass(ReluNet, Net), "ReluNet should subclass Net"
    model = ReluNet()
    assert tuple(model(torch.randn(4, 3, 32, 32)).shape) == (4, 1)
    assert count_parameters(model) == count_parameters(Net())


@test_case(points=2, hidden=True)
def test_relu_after_each_convolution(ReluNet):
    """In eval mode it computes pool(relu(conv)) twice, then the head of Net."""
    import torch
    assert ReluNet is not None, "define the class ReluNet"
    torch.manual_seed(0)
    model = ReluNet().eval()
    x = torch.randn(6, 3, 32, 32)
    m = model
    with torch.no_grad():
        h = m.pool(torch.relu(m.conv1(x)))
        h = m.pool(torch.relu(m.conv2(h)))
        h = m.flatten(m.adaptive_pool(h))
        expected = m.linear2(torch.relu(m.linear1(h)))
        assert torch.allclose(model(x), expected, atol=1e-5), \
            "the output differs from Net with a ReLU after conv1 and after conv2"
