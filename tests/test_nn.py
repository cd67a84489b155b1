"""skhydra.nn: batched linear layers and heads, the Hydra module, input standardisation
and the Gaussian parameters of regression heads."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from skhydra.nn import (
    BatchedLinear,
    FillMissing,
    HydraHeads,
    HydraModule,
    Standardize,
    gaussian_parameters,
    resolve_head_rank,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------------------
# BatchedLinear, HydraHeads, HydraModule
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rank, in_features, n_heads, width, expected",
    [
        ("auto", 256, 100, 3, 32),  # 76.8k -> 17.8k multiply-adds: projected
        ("auto", 256, 100, 10, 32),
        ("auto", 256, 100, 40, 40),  # never fewer dimensions than outputs
        ("auto", 256, 5, 10, None),  # five members: 12.8k vs 9.8k, not halved
        ("auto", 256, 20, 3, None),
        ("auto", 16, 100, 3, None),  # a narrow body: the projection would widen it
        (None, 256, 100, 3, None),
        (8, 256, 5, 3, 8),  # an explicit rank is used as given...
        (256, 256, 100, 3, None),  # ...unless it is the body's width or more
    ],
)
def test_resolve_head_rank(rank, in_features, n_heads, width, expected):
    assert resolve_head_rank(rank, in_features, n_heads, width) == expected


def test_low_rank_heads_share_one_projection():
    heads = HydraHeads(n_heads=1, in_features=16, hidden_sizes=(), out_features=3, rank=4)
    heads.expand(6)
    assert heads.rank == 4 and heads.project.weight.shape == (4, 16)
    z = torch.randn(5, 16)
    out = heads(z)
    assert out.shape == (5, 6, 3)
    # Each head is its own linear map of the shared 4 projected features.
    projected = z @ heads.project.weight.T
    layer = heads.layers[0]
    for h in range(6):
        expected = projected @ layer.weight[h] + layer.bias[h]
        torch.testing.assert_close(out[:, h], expected, rtol=1e-5, atol=1e-6)
    # Phase 2 starts from copies; the projection stays one shared layer.
    torch.testing.assert_close(out[:, 0], out[:, 5])
    assert sum(p.numel() for p in heads.parameters()) == 16 * 4 + 6 * (4 * 3 + 3)


def test_heads_pickled_before_the_projection_existed_still_load():
    import pickle

    heads = HydraHeads(n_heads=3, in_features=8, hidden_sizes=(), out_features=2)
    z = torch.randn(4, 8)
    expected = heads(z)
    del heads._modules["project"]  # the layout of skhydra 0.1's heads
    restored = pickle.loads(pickle.dumps(heads))
    assert restored.rank is None
    torch.testing.assert_close(restored(z), expected)


def test_module_resolves_auto_rank_for_the_heads_it_will_have():
    module = HydraModule(
        torch.zeros(4), torch.ones(4), (128,), (), 3, head_rank="auto", planned_heads=100
    )
    assert module.n_heads == 1 and module.head_rank == 32
    few = HydraModule(
        torch.zeros(4), torch.ones(4), (128,), (), 3, head_rank="auto", planned_heads=5
    )
    assert few.head_rank is None and isinstance(few.heads.project, torch.nn.Identity)


def test_batched_linear_with_shared_input_equals_a_loop():
    layer = BatchedLinear(4, 5, 3)
    x = torch.randn(7, 5)
    out = layer(x)
    assert out.shape == (7, 4, 3)
    for h in range(4):
        expected = F.linear(x, layer.weight[h].T, layer.bias[h])
        torch.testing.assert_close(out[:, h], expected, rtol=1e-5, atol=1e-6)


def test_batched_linear_with_per_head_input_equals_a_loop():
    layer = BatchedLinear(4, 5, 3)
    x = torch.randn(7, 4, 5)
    out = layer(x)
    assert out.shape == (7, 4, 3)
    for h in range(4):
        expected = F.linear(x[:, h], layer.weight[h].T, layer.bias[h])
        torch.testing.assert_close(out[:, h], expected, rtol=1e-5, atol=1e-6)


def test_batched_linear_heads_are_initialised_independently():
    layer = BatchedLinear(3, 6, 2)
    assert layer.n_heads == 3
    assert not torch.equal(layer.weight[0], layer.weight[1])
    bound = 1 / math.sqrt(6)
    assert layer.weight.abs().max() <= bound
    assert layer.bias.abs().max() <= bound


def test_batched_linear_gradients_stay_in_their_head():
    layer = BatchedLinear(3, 4, 2)
    out = layer(torch.randn(5, 4))
    out[:, 1].sum().backward()
    assert layer.weight.grad[1].abs().sum() > 0
    assert layer.weight.grad[[0, 2]].abs().sum() == 0
    assert layer.bias.grad[[0, 2]].abs().sum() == 0


def test_hydra_heads_with_hidden_layers_equal_a_loop():
    heads = HydraHeads(3, 5, (4,), 2)
    z = torch.randn(6, 5)
    out = heads(z)
    assert out.shape == (6, 3, 2)
    assert heads.n_heads == 3
    first, second = heads.layers
    for h in range(3):
        hidden = F.relu(F.linear(z, first.weight[h].T, first.bias[h]))
        expected = F.linear(hidden, second.weight[h].T, second.bias[h])
        torch.testing.assert_close(out[:, h], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head_layer_sizes", [(), (4,), (4, 3)])
def test_expand_heads_copies_head_zero(head_layer_sizes):
    module = HydraModule(torch.zeros(5), torch.ones(5), (8,), head_layer_sizes, 3, n_heads=2)
    old = [(layer.weight[0].clone(), layer.bias[0].clone()) for layer in module.heads.layers]
    x = torch.randn(9, 5)
    with torch.no_grad():
        before = module(x)
    assert not torch.allclose(before[:, 0], before[:, 1])
    module.expand_heads(6)
    assert module.n_heads == 6
    for layer, (weight, bias) in zip(module.heads.layers, old, strict=True):
        assert layer.weight.shape[0] == 6
        for h in range(6):
            torch.testing.assert_close(layer.weight[h], weight, rtol=0, atol=0)
            torch.testing.assert_close(layer.bias[h], bias, rtol=0, atol=0)
    with torch.no_grad():
        after = module(x)
    assert after.shape == (9, 6, 3)
    for h in range(6):
        torch.testing.assert_close(after[:, h], before[:, 0], rtol=0, atol=1e-6)


def test_expanded_heads_are_independent_copies():
    module = HydraModule(torch.zeros(3), torch.ones(3), (4,), (), 2)
    module.expand_heads(3)
    layer = module.heads.layers[0]
    with torch.no_grad():
        layer.weight[1].add_(1.0)
    assert not torch.equal(layer.weight[0], layer.weight[1])
    torch.testing.assert_close(layer.weight[0], layer.weight[2])
    # the expanded weights are trainable parameters of the module
    names = dict(module.named_parameters())
    assert names["heads.layers.0.weight"] is layer.weight
    assert layer.weight.requires_grad


def test_hydra_module_standardises_inside():
    loc = torch.tensor([10.0, -5.0])
    scale = torch.tensor([2.0, 0.5])
    module = HydraModule(loc, scale, (), (), 2, n_heads=1)
    x = torch.randn(4, 2) * scale + loc
    layer = module.heads.layers[0]
    expected = F.linear((x - loc) / scale, layer.weight[0].T, layer.bias[0])
    torch.testing.assert_close(module(x)[:, 0], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(Standardize(loc, scale)(x), (x - loc) / scale)
    # the scaling travels with the state dict (a pickled model needs it)
    assert {"scaler.loc", "scaler.scale"} <= set(module.state_dict())


def test_gaussian_parameters_gives_positive_floored_variances():
    raw = torch.tensor([[[0.5, -50.0], [1.0, 0.0], [-2.0, 3.0]]])
    mean, variance = gaussian_parameters(raw, 1e-3)
    torch.testing.assert_close(mean, raw[..., 0])
    torch.testing.assert_close(variance, F.softplus(raw[..., 1]) + 1e-3)
    assert (variance >= 1e-3).all()
    assert variance[0, 1] == pytest.approx(math.log(2) + 1e-3)


def test_hydra_module_default_body_layers_and_dropout():
    module = HydraModule(torch.zeros(5), torch.ones(5), (8, 4), (), 3, dropout=0.5)
    kinds = [type(m).__name__ for m in module.body]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout"]
    assert [m.out_features for m in module.body if isinstance(m, torch.nn.Linear)] == [8, 4]
    assert module.heads.layers[0].weight.shape == (1, 4, 3)
    # Without hidden widths the scaled input goes to the heads; no dropout by default.
    bare = HydraModule(torch.zeros(5), torch.ones(5), (), (), 3)
    assert len(bare.body) == 0 and bare.heads.layers[0].weight.shape == (1, 5, 3)
    assert not any(
        isinstance(m, torch.nn.Dropout)
        for m in HydraModule(0, 1, (8,), (), 3, input_shape=(5,)).modules()
    )


def test_hydra_module_finds_a_custom_body_width():
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Dropout(0.5))
    module = HydraModule(
        torch.zeros(1, 1, 1),
        torch.ones(1, 1, 1),
        (),
        (),
        4,
        n_heads=2,
        body=cnn,
        input_shape=(1, 8, 8),
    )
    assert module.body is cnn
    assert module.heads.layers[0].weight.shape == (2, 2 * 6 * 6, 4)
    assert cnn.training  # the width was found in eval mode, and the mode restored
    assert module(torch.randn(3, 1, 8, 8)).shape == (3, 2, 4)


def test_hydra_module_refuses_a_body_that_fails_or_pools_rows():
    with pytest.raises(ValueError, match=r"Linear failed on a batch of shape \(2, 5\)"):
        HydraModule(torch.zeros(5), torch.ones(5), (), (), 3, body=torch.nn.Linear(4, 2))
    pooled = torch.nn.Flatten(start_dim=0)
    with pytest.raises(ValueError, match="Flatten must return a tensor with one row per input row"):
        HydraModule(torch.zeros(5), torch.ones(5), (), (), 3, body=pooled)


def test_fill_missing_learns_fills_and_flags_missing_features():
    fill = FillMissing(3, missing=[0, 2])
    x = torch.tensor([[float("nan"), 1.0, 2.0], [3.0, float("nan"), float("nan")]])
    with torch.no_grad():
        fill.fill.copy_(torch.tensor([10.0, 20.0, 30.0]))
    out = fill(x)
    # filled values, then one indicator per feature that can be missing (0 and 2)
    expected = [[10.0, 1.0, 2.0, 1.0, 0.0], [3.0, 20.0, 30.0, 0.0, 1.0]]
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    out.sum().backward()
    np.testing.assert_array_equal(fill.fill.grad.numpy(), [1.0, 1.0, 1.0])


def test_hydra_module_with_missing_values_widens_the_body_input():
    module = HydraModule(torch.zeros(3), torch.ones(3), (8,), (), 2, missing=[1])
    assert module.body[0].in_features == 4
    out = module(torch.tensor([[1.0, float("nan"), 0.0]]))
    assert torch.isfinite(out).all()
