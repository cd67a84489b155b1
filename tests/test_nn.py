"""Pure torch layer: batched heads, the Hydra module and the distillation losses."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

from skhydra.losses import GaussianDistillationLoss, TemperedKLLoss, gaussian_kl
from skhydra.nn import BatchedLinear, HydraHeads, HydraModule, Standardize, gaussian_parameters


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------------------
# BatchedLinear, HydraHeads, HydraModule
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# TemperedKLLoss
# ---------------------------------------------------------------------------


def _targets(n=5, heads=3, classes=4):
    p = torch.softmax(torch.randn(n, heads, classes), dim=-1)
    return {"target": p, "weight": torch.ones(n)}


def test_tempered_kl_is_zero_at_the_target():
    y_true = _targets()
    loss = TemperedKLLoss(temperature=1.0)(torch.log(y_true["target"]), y_true)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # logits are defined up to a constant per row and head
    shifted = torch.log(y_true["target"]) + torch.randn(5, 3, 1)
    assert TemperedKLLoss()(shifted, y_true).item() == pytest.approx(0.0, abs=1e-6)


def test_tempered_kl_is_positive_elsewhere():
    y_true = _targets()
    loss = TemperedKLLoss(1.0)(torch.randn(5, 3, 4), y_true)
    assert loss.item() > 1e-3


def test_tempered_kl_by_hand_with_temperature_two():
    target = torch.tensor([[[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]], [[0.1, 0.1, 0.8], [1.0, 0.0, 0.0]]])
    logits = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]], [[0.0, 2.0, 4.0], [3.0, 1.0, 0.0]]])
    weight = torch.tensor([1.0, 3.0])
    T = 2.0
    per_row = []
    for n in range(2):
        heads = []
        for h in range(2):
            z = [v / T for v in logits[n, h].tolist()]
            log_norm = math.log(sum(math.exp(v) for v in z))
            kl = sum(
                p * (math.log(p) - (v - log_norm))
                for p, v in zip(target[n, h].tolist(), z, strict=True)
                if p > 0
            )
            heads.append(kl)
        per_row.append(T**2 * sum(heads) / 2)
    expected = (1.0 * per_row[0] + 3.0 * per_row[1]) / 4.0
    loss = TemperedKLLoss(temperature=T)(logits, {"target": target, "weight": weight})
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # T^2 = 4 is in there: without it the loss would be a quarter of the hand value
    assert loss.item() != pytest.approx(expected / T**2, rel=1e-2)


def test_tempered_kl_ignores_zero_weight_rows():
    y_true = _targets(n=4)
    logits = torch.randn(4, 3, 4)
    y_true["weight"] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    half = {"target": y_true["target"][:2], "weight": torch.ones(2)}
    loss = TemperedKLLoss(1.5)(logits, y_true)
    torch.testing.assert_close(loss, TemperedKLLoss(1.5)(logits[:2], half))


def test_tempered_kl_gradient_is_finite_with_zero_targets():
    target = torch.tensor([[[1.0, 0.0, 0.0]]])
    logits = torch.zeros(1, 1, 3, requires_grad=True)
    loss = TemperedKLLoss(2.0)(logits, {"target": target, "weight": torch.ones(1)})
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------------------
# gaussian_kl and GaussianDistillationLoss
# ---------------------------------------------------------------------------


def test_gaussian_kl_matches_torch_distributions():
    mean_p, mean_q = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    var_p = torch.rand(6, 3, dtype=torch.float64) + 0.1
    var_q = torch.rand(6, 3, dtype=torch.float64) + 0.1
    expected = kl_divergence(Normal(mean_p, var_p.sqrt()), Normal(mean_q, var_q.sqrt()))
    torch.testing.assert_close(gaussian_kl(mean_p, var_p, mean_q, var_q), expected)
    same = gaussian_kl(mean_p, var_p, mean_p, var_p)
    torch.testing.assert_close(same, torch.zeros_like(same))


def test_gaussian_kl_by_hand():
    # KL(N(0, 1) || N(1, 4)) = log 2 + (1 + 1) / 8 - 1/2
    value = gaussian_kl(*map(torch.tensor, (0.0, 1.0, 1.0, 4.0)))
    assert value.item() == pytest.approx(math.log(2) + 0.25 - 0.5, rel=1e-6)


def _regression_batch(n=6, heads=3):
    y_pred = torch.randn(n, heads, 2, dtype=torch.float64)
    mean_t = torch.randn(n, heads, dtype=torch.float64)
    var_t = torch.rand(n, heads, dtype=torch.float64) + 0.2
    y = torch.randn(n, dtype=torch.float64)
    weight = torch.rand(n, dtype=torch.float64) + 0.5
    return y_pred, {"mean": mean_t, "var": var_t, "y": y, "weight": weight}


def test_gaussian_distillation_with_teacher_variances_is_the_kl():
    y_pred, y_true = _regression_batch()
    loss = GaussianDistillationLoss(min_variance=1e-3)(y_pred, y_true)
    mean_s, var_s = y_pred[..., 0], F.softplus(y_pred[..., 1]) + 1e-3
    per_row = gaussian_kl(y_true["mean"], y_true["var"], mean_s, var_s).mean(dim=1)
    expected = (per_row * y_true["weight"]).sum() / y_true["weight"].sum()
    torch.testing.assert_close(loss, expected)
    # the observed y plays no part when the teacher gives variances
    y_true["y"] = y_true["y"] + 100.0
    torch.testing.assert_close(GaussianDistillationLoss(1e-3)(y_pred, y_true), expected)


def test_gaussian_distillation_with_point_members():
    y_pred, y_true = _regression_batch()
    y_true["var"] = torch.full_like(y_true["var"], float("nan"))
    loss = GaussianDistillationLoss(min_variance=1e-3)(y_pred, y_true)
    mean_s = y_pred[..., 0].numpy()
    var_s = (F.softplus(y_pred[..., 1]) + 1e-3).numpy()
    mean_t = y_true["mean"].numpy()
    y = y_true["y"].numpy()[:, None]
    per_head = 0.5 * (mean_s - mean_t) ** 2 + 0.5 * (np.log(var_s) + (y - mean_t) ** 2 / var_s)
    w = y_true["weight"].numpy()
    expected = (per_head.mean(axis=1) * w).sum() / w.sum()
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_gaussian_distillation_point_members_without_y_match_means_only():
    y_pred, y_true = _regression_batch()
    y_true["var"] = torch.full_like(y_true["var"], float("nan"))
    y_true["y"] = torch.full_like(y_true["y"], float("nan"))
    y_pred = y_pred.clone().requires_grad_(True)
    loss = GaussianDistillationLoss()(y_pred, y_true)
    squared = 0.5 * (y_pred[..., 0] - y_true["mean"]) ** 2
    expected = (squared.mean(dim=1) * y_true["weight"]).sum() / y_true["weight"].sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    # NaN teacher variances and NaN targets must not leak NaN into the gradient
    assert torch.isfinite(y_pred.grad).all()
    # without y, nothing trains the variance output
    assert y_pred.grad[..., 1].abs().sum() == 0


def test_gaussian_distillation_mixes_heads_elementwise():
    y_pred, y_true = _regression_batch(n=4, heads=2)
    var = y_true["var"].clone()
    var[:, 1] = float("nan")
    y_true["var"] = var
    y_pred = y_pred.clone().requires_grad_(True)
    loss = GaussianDistillationLoss(1e-3)(y_pred, y_true)
    mean_s, var_s = y_pred[..., 0], F.softplus(y_pred[..., 1]) + 1e-3
    kl = gaussian_kl(y_true["mean"][:, 0], var[:, 0], mean_s[:, 0], var_s[:, 0])
    y = y_true["y"]
    point = 0.5 * (mean_s[:, 1] - y_true["mean"][:, 1]) ** 2 + 0.5 * (
        torch.log(var_s[:, 1]) + (y - y_true["mean"][:, 1]) ** 2 / var_s[:, 1]
    )
    per_row = (kl + point) / 2
    expected = (per_row * y_true["weight"]).sum() / y_true["weight"].sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(y_pred.grad).all()
