"""Factors on the heads' logits after training: the heads as sure as the members they
imitate (match_aleatoric) and as far apart (match_epistemic)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import skhydra
from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra._classifier import ClassTargets
from skhydra._head_scale import (
    HEAD_SCALE_BOUNDS,
    HEAD_SPREAD_BOUNDS,
    fit_head_factors,
    fit_head_scale,
    held_out_rows,
    mean_head_entropy,
    mean_head_epistemic,
    row_limit,
    spread_logits,
)
from skhydra._targets import assign_heads
from skhydra.nn import HydraHeads

FAST = dict(body_layer_sizes=(64,), phase1_epochs=15, max_epochs=45, lr=3e-3, random_state=0)


def test_fit_head_scale_recovers_the_factor_of_sharper_heads():
    logits = torch.randn(200, 4, 3, generator=torch.Generator().manual_seed(0))
    weights = torch.full((4,), 0.25)
    for factor in (0.3, 1.0, 2.5, 7.0):
        target = mean_head_entropy(torch.log_softmax(factor * logits, dim=-1), weights)
        found = fit_head_scale(logits, target, weights, bounds=(0.1, 10.0))
        assert found == pytest.approx(factor, rel=1e-4)


def test_fit_head_scale_stops_at_its_bounds():
    logits = torch.tensor([[[2.0, 0.0, -1.0]]])
    weights = torch.ones(1)
    assert fit_head_scale(logits, 0.0, weights) == HEAD_SCALE_BOUNDS[1]  # certain members
    assert fit_head_scale(logits, np.log(3.0), weights) == HEAD_SCALE_BOUNDS[0]  # uniform
    assert HEAD_SCALE_BOUNDS == (0.5, 2.0)


def test_fit_head_factors_recovers_both_factors():
    # Logits of a shared mean and each head's own deviation, as trained heads give.
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(1000, 1, 5, generator=g) + torch.randn(1000, 20, 5, generator=g)
    weights = torch.full((20,), 0.05)
    for scale, spread in ((1.5, 1.3), (0.8, 0.7), (1.0, 1.8)):
        log_p = torch.log_softmax(scale * spread_logits(z, weights, spread), dim=-1)
        found = fit_head_factors(
            z, mean_head_entropy(log_p, weights), mean_head_epistemic(log_p, weights), weights
        )
        assert found == pytest.approx((scale, spread), rel=0.01)


def test_fit_head_factors_leaves_an_unmatched_factor_at_one():
    z = torch.randn(300, 4, 3, generator=torch.Generator().manual_seed(1))
    weights = torch.full((4,), 0.25)
    log_p = torch.log_softmax(1.7 * z, dim=-1)
    scale, spread = fit_head_factors(z, mean_head_entropy(log_p, weights), None, weights)
    assert spread == 1.0 and scale == pytest.approx(1.7, rel=1e-3)
    # Heads that disagree as much as certain members can: the spread's upper bound.
    assert fit_head_factors(z, None, np.log(3.0), weights)[1] == HEAD_SPREAD_BOUNDS[1]


def test_spread_folds_into_heads_of_one_layer_only():
    heads = HydraHeads(n_heads=3, in_features=4, hidden_sizes=(), out_features=2)
    z, w = torch.randn(6, 4), torch.tensor([0.5, 0.25, 0.25])
    before = heads(z)
    heads.spread_outputs(0.5, w)
    torch.testing.assert_close(heads(z), spread_logits(before, w, 0.5))
    deep = HydraHeads(n_heads=3, in_features=4, hidden_sizes=(8,), out_features=2)
    with pytest.raises(ValueError, match="heads of one layer"):
        deep.spread_outputs(0.5, w)


def test_head_weights_weigh_the_entropy():
    log_p = torch.log(torch.tensor([[[0.5, 0.5], [1.0, 0.0]]]))
    assert mean_head_entropy(log_p, torch.tensor([1.0, 0.0])) == pytest.approx(np.log(2))
    assert mean_head_entropy(log_p, torch.tensor([0.0, 1.0])) == pytest.approx(0.0)


def test_held_out_rows_are_validation_rows_of_positive_weight():
    valid = np.array([True, False, True, True, True])
    weight = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    assert held_out_rows(valid, weight, 5).tolist() == [0, 3, 4]
    assert held_out_rows(None, weight, 5).tolist() == [0, 1, 3, 4]
    assert held_out_rows(None, np.ones(100), 100, limit=3).tolist() == [0, 50, 99]


def test_many_heads_and_classes_search_fewer_rows():
    assert row_limit(100, 2) == 1_000
    assert row_limit(100, 20) == 500
    assert row_limit(200, 100) * 200 * 100 <= 1_000_000
    assert row_limit(10_000, 1_000) == 1


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_class_targets_give_the_entropy_of_the_untempered_members(temperature):
    members = np.array([[[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]], [[0.2, 0.3, 0.5], [0.0, 0.5, 0.5]]])
    encoding = ClassTargets(np.arange(3), temperature)
    heads = assign_heads(2, 2)
    _, phase2 = encoding.encode(members, heads, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(members * np.log(members), axis=-1).mean()
    weights = torch.full((2,), 0.5, dtype=torch.float64)
    entropy_s, _ = encoding.head_uncertainty(phase2["target"], weights)
    assert entropy_s == pytest.approx(entropy, abs=1e-5)


@pytest.fixture(scope="module")
def digits_forest():
    X, y = load_digits(return_X_y=True)
    inside = y < 5
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(
        X[inside][:600], y[inside][:600]
    )
    return X[inside][:600], X[inside][600:], X[~inside][:200], forest


def test_forest_student_reports_the_forests_zero_aleatoric_part_as_epistemic(digits_forest):
    X, X_test, X_ood, forest = digits_forest
    X_eval = np.r_[X_test, X_ood]
    teacher = predict_uncertainty(forest, X_eval)
    assert teacher["aleatoric"].max() == 0.0  # fully grown trees vote with certainty
    student = HydraDistilledClassifier(forest, match_epistemic=False, **FAST).fit(X)
    assert student.head_scale_ == HEAD_SCALE_BOUNDS[1]  # a target of zero: the bound
    matched = student.predict_uncertainty(X_eval)
    # The same student without the factor: the heads hedge, and part of the trees'
    # disagreement is reported as aleatoric (0.128 nats against 0.061 measured; epistemic
    # 0.539 against 0.581, the forest's 0.771).
    student.net_.module_.heads.scale_outputs(1.0 / student.head_scale_)
    hedged = student.predict_uncertainty(X_eval)
    assert hedged["aleatoric"].mean() > 1.6 * matched["aleatoric"].mean()
    assert matched["epistemic"].mean() > 1.04 * hedged["epistemic"].mean()
    assert matched["epistemic"].mean() / teacher["epistemic"].mean() > 0.7


def test_forest_student_reports_as_much_disagreement_as_the_forest(digits_forest):
    # Heads that cannot fit every tree's own votes shrink towards their mean: without the
    # spread the student reports about 0.75 of the forest's epistemic uncertainty (0.754,
    # 0.738, 0.778 measured over three seeds), with it 0.93-1.01.
    X, X_test, X_ood, forest = digits_forest
    X_eval = np.r_[X_test, X_ood]
    teacher = predict_uncertainty(forest, X_eval)["epistemic"].mean()
    spread = HydraDistilledClassifier(forest, **FAST).fit(X)
    shrunk = HydraDistilledClassifier(forest, match_epistemic=False, **FAST).fit(X)
    assert shrunk.head_spread_ == 1.0 and spread.head_spread_ > 1.15
    assert shrunk.predict_uncertainty(X_eval)["epistemic"].mean() / teacher < 0.85
    assert 0.85 < spread.predict_uncertainty(X_eval)["epistemic"].mean() / teacher < 1.15


def test_factors_off_leave_the_heads_alone(digits_forest):
    X, X_test, _, forest = digits_forest
    on = HydraDistilledClassifier(forest, **FAST).fit(X)
    off = HydraDistilledClassifier(
        forest, match_aleatoric=np.False_, match_epistemic=False, **FAST
    ).fit(X)
    assert off.head_scale_ == 1.0 and off.head_spread_ == 1.0
    # The same training, then the factors: the logits differ by exactly them.
    logits_on = torch.cat(list(on._head_outputs(X_test)))
    logits_off = torch.cat(list(off._head_outputs(X_test)))
    weights = torch.as_tensor(on.head_weights_, dtype=torch.float32)
    expected = on.head_scale_ * spread_logits(logits_off, weights, on.head_spread_)
    torch.testing.assert_close(logits_on, expected, rtol=1e-4, atol=1e-4)


def test_auto_leaves_smooth_members_and_single_heads_alone(digits_forest):
    X, _, _, forest = digits_forest
    y = forest.predict(X)
    members = [LogisticRegression(C=c, max_iter=300).fit(X, y) for c in (0.01, 0.1)]
    smooth = HydraDistilledClassifier(members, **FAST).fit(X)
    assert smooth.head_scale_ == 1.0 and smooth.head_spread_ == 1.0
    forced = HydraDistilledClassifier(
        members, match_aleatoric=np.True_, match_epistemic=np.True_, **FAST
    ).fit(X)
    assert forced.head_scale_ != 1.0 and forced.head_spread_ != 1.0
    single = HydraDistilledClassifier(forest, n_heads=1, **FAST).fit(X)
    assert single.head_scale_ == 1.0 and single.head_spread_ == 1.0


def test_auto_spreads_heads_of_one_layer_only(digits_forest):
    X, _, _, forest = digits_forest
    deep = HydraDistilledClassifier(forest, head_layer_sizes=(8,), **FAST).fit(X)
    assert deep.head_spread_ == 1.0 and deep.head_scale_ != 1.0
    with pytest.raises(ValueError, match=r"match_epistemic=True needs heads of one layer"):
        HydraDistilledClassifier(forest, head_layer_sizes=(8,), match_epistemic=True, **FAST).fit(X)


def test_head_scale_survives_dump_and_load(digits_forest, tmp_path):
    X, X_test, _, forest = digits_forest
    student = HydraDistilledClassifier(forest, **FAST).fit(X)
    path = tmp_path / "student.skhydra"
    skhydra.dump(student, path)
    loaded = skhydra.load(path)
    assert loaded.head_scale_ == student.head_scale_
    assert loaded.head_spread_ == student.head_spread_ != 1.0
    np.testing.assert_allclose(
        loaded.predict_proba(X_test), student.predict_proba(X_test), atol=1e-6
    )
