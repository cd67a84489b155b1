"""One factor on the heads' logits after training (match_aleatoric): the heads as sure as
the members they imitate."""

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
    fit_head_scale,
    held_out_rows,
    mean_head_entropy,
    row_limit,
)
from skhydra._targets import assign_heads

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
    assert row_limit(100, 2) == 5_000
    assert row_limit(100, 10) == 4_000
    assert row_limit(200, 100) * 200 * 100 <= 4_000_000
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
    assert encoding.head_entropy(phase2["target"], weights) == pytest.approx(entropy, abs=1e-5)


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
    student = HydraDistilledClassifier(forest, **FAST).fit(X)
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


def test_match_aleatoric_false_leaves_the_heads_alone(digits_forest):
    X, X_test, _, forest = digits_forest
    on = HydraDistilledClassifier(forest, **FAST).fit(X)
    off = HydraDistilledClassifier(forest, match_aleatoric=np.False_, **FAST).fit(X)
    assert off.head_scale_ == 1.0
    # The same training, then the factor: the logits differ by exactly that factor.
    logits_on = torch.cat(list(on._head_outputs(X_test)))
    logits_off = torch.cat(list(off._head_outputs(X_test)))
    torch.testing.assert_close(logits_on, on.head_scale_ * logits_off, rtol=1e-4, atol=1e-4)


def test_auto_leaves_smooth_members_and_single_heads_alone(digits_forest):
    X, _, _, forest = digits_forest
    y = forest.predict(X)
    members = [LogisticRegression(C=c, max_iter=300).fit(X, y) for c in (0.01, 0.1)]
    assert HydraDistilledClassifier(members, **FAST).fit(X).head_scale_ == 1.0
    forced = HydraDistilledClassifier(members, match_aleatoric=np.True_, **FAST).fit(X)
    assert forced.head_scale_ != 1.0
    assert HydraDistilledClassifier(forest, n_heads=1, **FAST).fit(X).head_scale_ == 1.0


def test_head_scale_survives_dump_and_load(digits_forest, tmp_path):
    X, X_test, _, forest = digits_forest
    student = HydraDistilledClassifier(forest, **FAST).fit(X)
    path = tmp_path / "student.skhydra"
    skhydra.dump(student, path)
    loaded = skhydra.load(path)
    assert loaded.head_scale_ == student.head_scale_
    np.testing.assert_allclose(
        loaded.predict_proba(X_test), student.predict_proba(X_test), atol=1e-6
    )
