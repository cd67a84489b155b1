"""skhydra.losses: tempered_log_softmax, the tempered KL loss of classification and the
Gaussian distillation loss of regression, against hand-computed values."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

from skhydra.losses import (
    GaussianDistillationLoss,
    TemperedKLLoss,
    gaussian_kl,
    tempered_log_softmax,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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


def test_tempered_kl_reads_the_targets_own_term_when_given():
    # The term sum p log p computed once per fit gives the same loss (and gradient).
    y_true = _targets(4, 3, 5)
    logits = torch.randn(4, 3, 5, requires_grad=True)
    loss = TemperedKLLoss(2.0)
    computed = loss(logits, y_true)
    (grad_computed,) = torch.autograd.grad(computed, logits)
    target = y_true["target"]
    given = {**y_true, "neg_entropy": (target * target.log()).sum(-1).mean(1)}
    read = loss(logits, given)
    (grad_read,) = torch.autograd.grad(read, logits)
    torch.testing.assert_close(read, computed)
    torch.testing.assert_close(grad_read, grad_computed)
    # ...and is what is read: a wrong value shifts the loss by it (times T^2).
    shifted = loss(logits, {**given, "neg_entropy": given["neg_entropy"] + 1.0})
    torch.testing.assert_close(shifted, computed + 4.0)


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


# ---------------------------------------------------------------------------
# tempered_log_softmax
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "probabilities, temperature, expected",
    [
        # softmax(log p / T) is p ** (1 / T), renormalised.
        ([0.8, 0.2], 2.0, [2 / 3, 1 / 3]),  # sqrt: 0.894 and 0.447
        ([0.6, 0.4], 0.5, [9 / 13, 4 / 13]),  # squares: 0.36 and 0.16
        ([0.25, 0.75], 1.0, [0.25, 0.75]),  # T = 1 leaves p unchanged
        ([0.5, 0.3, 0.2], 1e6, [1 / 3, 1 / 3, 1 / 3]),  # a high T flattens
        ([0.9, 0.1], 1e-3, [1.0, 0.0]),  # a low T sharpens to the argmax
    ],
)
def test_tempered_log_softmax_by_hand(probabilities, temperature, expected):
    log_p = torch.tensor(probabilities, dtype=torch.float64).log()
    out = tempered_log_softmax(log_p, temperature)
    torch.testing.assert_close(
        out.exp(), torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0
    )
    assert torch.logsumexp(out, dim=-1).item() == pytest.approx(0.0, abs=1e-12)


def test_tempered_log_softmax_of_logits_by_hand():
    # Logits (0, 2 ln 3) at T = 2: softmax(0, ln 3) = (1/4, 3/4), whatever their offset.
    logits = torch.tensor(
        [[0.0, 2 * math.log(3)], [5.0, 5.0 + 2 * math.log(3)]], dtype=torch.float64
    )
    out = tempered_log_softmax(logits, 2.0)
    expected = torch.tensor([math.log(0.25), math.log(0.75)], dtype=torch.float64)
    torch.testing.assert_close(out, expected.expand(2, 2))


def test_tempered_log_softmax_works_along_the_last_axis():
    scores = torch.randn(4, 3, 5)
    out = tempered_log_softmax(scores, 1.5)
    assert out.shape == scores.shape
    torch.testing.assert_close(out.exp().sum(dim=-1), torch.ones(4, 3))
    for n, h in [(0, 0), (3, 2)]:
        torch.testing.assert_close(out[n, h], tempered_log_softmax(scores[n, h], 1.5))


# ---------------------------------------------------------------------------
# direction of the KL divergence
# ---------------------------------------------------------------------------


def test_tempered_kl_is_teacher_to_student_not_the_reverse():
    # Teacher p = (0.9, 0.1), student q = (0.5, 0.5):
    # KL(p || q) = 0.9 ln(0.9 / 0.5) + 0.1 ln(0.1 / 0.5) = 0.368064
    # KL(q || p) = 0.5 ln(0.5 / 0.9) + 0.5 ln(0.5 / 0.1) = 0.510826
    forward = 0.9 * math.log(1.8) + 0.1 * math.log(0.2)
    reverse = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5.0)
    assert forward == pytest.approx(0.368064, abs=1e-6)
    assert reverse == pytest.approx(0.510826, abs=1e-6)
    y_true = {"target": torch.tensor([[[0.9, 0.1]]]), "weight": torch.ones(1)}
    student_logits = torch.tensor([[[0.3, 0.3]]])  # uniform q, whatever the level
    loss = TemperedKLLoss(1.0)(student_logits, y_true).item()
    assert loss == pytest.approx(forward, rel=1e-5)
    assert abs(loss - reverse) > 0.1
    # At T = 2 the student's uniform distribution stays uniform: the loss is T^2 KL(p || q).
    assert TemperedKLLoss(2.0)(student_logits, y_true).item() == pytest.approx(
        4 * forward, rel=1e-5
    )
