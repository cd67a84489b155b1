"""Uncertainty decomposition over members or heads, and predict_uncertainty()."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor, VotingClassifier
from sklearn.linear_model import BayesianRidge
from sklearn.model_selection import GridSearchCV
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import skhydra
from skhydra import HydraDistilledClassifier
from skhydra.ensembles import predict_members
from skhydra.uncertainty import (
    classification_uncertainty,
    entropy_decomposition,
    predict_uncertainty,
    regression_uncertainty,
)


def _h(*p):
    """Entropy in nats, by hand."""
    return -sum(q * math.log(q) for q in p if q > 0)


def _entropy(p):
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


# ---------------------------------------------------------------------------
# classification_uncertainty: hand-computed cases
# ---------------------------------------------------------------------------


def test_two_members_by_hand():
    p = np.array([[[0.9, 0.1], [0.5, 0.5]]])
    total, aleatoric, epistemic = classification_uncertainty(p)
    expected_total = _h(0.7, 0.3)
    expected_aleatoric = 0.5 * (_h(0.9, 0.1) + math.log(2))
    assert total.shape == aleatoric.shape == epistemic.shape == (1,)
    assert total[0] == pytest.approx(expected_total, rel=1e-12)
    assert aleatoric[0] == pytest.approx(expected_aleatoric, rel=1e-12)
    assert epistemic[0] == pytest.approx(expected_total - expected_aleatoric, rel=1e-9)
    assert epistemic[0] > 0


def test_confident_members_that_disagree_are_all_epistemic():
    p = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]])
    total, aleatoric, epistemic = classification_uncertainty(p)
    np.testing.assert_allclose(total, [math.log(2), 0.0], atol=1e-12)
    np.testing.assert_allclose(aleatoric, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(epistemic, [math.log(2), 0.0], atol=1e-12)
    assert np.isfinite(total).all()


def test_identical_members_have_no_epistemic_uncertainty():
    member = np.array([0.2, 0.3, 0.5])
    p = np.tile(member, (4, 6, 1))
    total, aleatoric, epistemic = classification_uncertainty(p)
    np.testing.assert_allclose(epistemic, 0.0, atol=1e-12)
    np.testing.assert_allclose(total, _h(0.2, 0.3, 0.5), rtol=1e-12)
    np.testing.assert_allclose(aleatoric, _h(0.2, 0.3, 0.5), rtol=1e-12)


def test_uniform_members_have_maximal_aleatoric_uncertainty():
    p = np.full((2, 3, 4), 0.25)
    total, aleatoric, epistemic = classification_uncertainty(p)
    np.testing.assert_allclose(total, math.log(4), rtol=1e-12)
    np.testing.assert_allclose(aleatoric, math.log(4), rtol=1e-12)
    np.testing.assert_allclose(epistemic, 0.0, atol=1e-12)


def test_weighted_members_by_hand():
    p = np.array([[[0.9, 0.1], [0.5, 0.5]]])
    total, aleatoric, epistemic = classification_uncertainty(p, weights=[3.0, 1.0])
    # mean = 0.75 * [0.9, 0.1] + 0.25 * [0.5, 0.5] = [0.8, 0.2]
    assert total[0] == pytest.approx(_h(0.8, 0.2), rel=1e-12)
    assert aleatoric[0] == pytest.approx(0.75 * _h(0.9, 0.1) + 0.25 * math.log(2), rel=1e-12)
    assert epistemic[0] == pytest.approx(total[0] - aleatoric[0], abs=1e-15)
    unweighted = classification_uncertainty(p)
    assert not np.isclose(total[0], unweighted[0][0])


def test_weights_are_normalised_and_zero_weight_drops_a_member():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=(5, 3))
    scaled = classification_uncertainty(p, weights=[2.0, 4.0, 6.0])
    normalised = classification_uncertainty(p, weights=[1 / 6, 2 / 6, 3 / 6])
    for a, b in zip(scaled, normalised, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    dropped = classification_uncertainty(p, weights=[1.0, 0.0, 1.0])
    kept = classification_uncertainty(p[:, [0, 2]])
    for a, b in zip(dropped, kept, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "probabilities",
    [np.full((3, 2), 0.5), np.full((3,), 1 / 3), np.full((2, 2, 2, 2), 0.5)],
    ids=["2d", "1d", "4d"],
)
def test_classification_bad_shapes(probabilities):
    with pytest.raises(ValueError, match=r"n_samples, n_members, n_classes"):
        classification_uncertainty(probabilities)


@pytest.mark.parametrize(
    "weights", [[1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 0.0, 0.0]]
)
def test_classification_bad_weights(weights):
    p = np.full((2, 3, 2), 0.5)
    with pytest.raises(ValueError, match="weights must be 3 non-negative"):
        classification_uncertainty(p, weights=weights)


# ---------------------------------------------------------------------------
# entropy_decomposition: the one torch implementation, (n, classes, members)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_entropy_decomposition_by_hand(dtype):
    # row 0: members [0.9, 0.1] and [0.5, 0.5], weights 3:1, so the mean is [0.8, 0.2]
    # row 1: a member sure of class 0 and one sure of class 1: H(0.75, 0.25), all epistemic
    p = torch.tensor(
        [[[0.9, 0.5], [0.1, 0.5]], [[1.0, 0.0], [0.0, 1.0]]],
        dtype=dtype,
    )
    total, aleatoric = entropy_decomposition(p, torch.tensor([0.75, 0.25], dtype=dtype))
    assert total.shape == aleatoric.shape == (2,)
    assert total.dtype == aleatoric.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(total.numpy(), [_h(0.8, 0.2), _h(0.75, 0.25)], rtol=tol)
    np.testing.assert_allclose(
        aleatoric.numpy(), [0.75 * _h(0.9, 0.1) + 0.25 * math.log(2), 0.0], rtol=tol, atol=tol
    )


def test_entropy_decomposition_clamps_rounding_outside_zero_one():
    # probabilities a softmax or a float32 sum can give: -1e-9 and 1 + 1e-9 count as 0 and 1
    p = torch.tensor([[[-1e-9, 0.5], [1.0 + 1e-9, 0.5]]], dtype=torch.float64)
    total, aleatoric = entropy_decomposition(p, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.isfinite(total).all() and torch.isfinite(aleatoric).all()
    assert total.item() == pytest.approx(_h(0.25, 0.75), rel=1e-8)
    assert aleatoric.item() == pytest.approx(0.5 * math.log(2), rel=1e-8)


# ---------------------------------------------------------------------------
# classification_uncertainty: property tests
# ---------------------------------------------------------------------------


@st.composite
def member_probabilities(draw):
    n_samples = draw(st.integers(1, 6))
    n_members = draw(st.integers(1, 6))
    n_classes = draw(st.integers(2, 6))
    raw = draw(
        arrays(
            np.float64,
            (n_samples, n_members, n_classes),
            elements=st.one_of(st.just(0.0), st.floats(1e-6, 1.0)),
        )
    )
    # at least one positive entry per member
    raw[..., 0] += 1e-3
    return raw / raw.sum(axis=-1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(p=member_probabilities())
def test_classification_invariants(p):
    n_samples, n_members, n_classes = p.shape
    total, aleatoric, epistemic = classification_uncertainty(p)
    for part in (total, aleatoric, epistemic):
        assert part.shape == (n_samples,)
        assert np.isfinite(part).all()
    np.testing.assert_allclose(total, aleatoric + epistemic, rtol=0, atol=1e-12)
    assert (epistemic >= 0).all()
    assert (aleatoric >= -1e-12).all()
    # total is the entropy of the mean (the clip at 0 only removes rounding)
    np.testing.assert_allclose(total, _entropy(p.mean(axis=1)), atol=1e-9)
    np.testing.assert_allclose(aleatoric, _entropy(p).mean(axis=1), atol=1e-9)
    assert (total <= math.log(n_classes) + 1e-9).all()
    # mutual information is bounded by the entropy of the (uniform) member index
    assert (epistemic <= math.log(n_members) + 1e-9).all()


@settings(max_examples=40, deadline=None)
@given(p=member_probabilities(), seed=st.integers(0, 2**16))
def test_classification_member_permutation_and_duplication(p, seed):
    reference = classification_uncertainty(p)
    order = np.random.default_rng(seed).permutation(p.shape[1])
    for other in (
        classification_uncertainty(p[:, order]),
        classification_uncertainty(np.concatenate([p, p], axis=1)),
    ):
        for a, b in zip(reference, other, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(p=member_probabilities(), data=st.data())
def test_integer_weights_equal_repeated_members(p, data):
    counts = data.draw(
        st.lists(st.integers(1, 3), min_size=p.shape[1], max_size=p.shape[1]),
        label="counts",
    )
    weighted = classification_uncertainty(p, weights=counts)
    repeated = classification_uncertainty(np.repeat(p, counts, axis=1))
    for a, b in zip(weighted, repeated, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(p=member_probabilities())
def test_identical_members_property(p):
    same = np.repeat(p[:, :1], p.shape[1], axis=1)
    total, aleatoric, epistemic = classification_uncertainty(same)
    np.testing.assert_allclose(epistemic, 0.0, atol=1e-12)
    np.testing.assert_allclose(total, aleatoric, atol=1e-12)


# ---------------------------------------------------------------------------
# regression_uncertainty
# ---------------------------------------------------------------------------


def test_regression_by_hand():
    total, aleatoric, epistemic = regression_uncertainty(
        [[0.0, 2.0], [1.0, 1.0]], [[1.0, 3.0], [0.5, 0.5]]
    )
    np.testing.assert_allclose(aleatoric, [2.0, 0.5])
    np.testing.assert_allclose(epistemic, [1.0, 0.0])
    np.testing.assert_allclose(total, [3.0, 0.5])


def test_regression_weighted_by_hand():
    total, aleatoric, epistemic = regression_uncertainty(
        [[0.0, 4.0]], [[1.0, 5.0]], weights=[3.0, 1.0]
    )
    # weighted mean 1; population variance 0.75 * 1 + 0.25 * 9 = 3
    assert epistemic[0] == pytest.approx(3.0)
    assert aleatoric[0] == pytest.approx(0.75 * 1.0 + 0.25 * 5.0)
    assert total[0] == pytest.approx(3.0 + 2.0)


def test_regression_epistemic_is_the_population_variance():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(7, 5))
    variances = rng.uniform(0.1, 2.0, size=(7, 5))
    total, aleatoric, epistemic = regression_uncertainty(means, variances)
    np.testing.assert_allclose(epistemic, np.var(means, axis=1, ddof=0), rtol=1e-12)
    np.testing.assert_allclose(aleatoric, variances.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(total, aleatoric + epistemic, rtol=1e-12)
    assert (epistemic >= 0).all()


def test_regression_without_variances_gives_nan_aleatoric():
    means = np.array([[0.0, 2.0], [1.0, 3.0]])
    for variances in (None, np.full((2, 2), np.nan)):
        total, aleatoric, epistemic = regression_uncertainty(means, variances)
        assert np.isnan(aleatoric).all()
        assert np.isnan(total).all()
        np.testing.assert_allclose(epistemic, [1.0, 1.0])


def test_regression_bad_shapes():
    with pytest.raises(ValueError, match=r"means must have shape \(n_samples, n_members\)"):
        regression_uncertainty([0.0, 1.0])
    with pytest.raises(ValueError, match="variances must have the shape of means"):
        regression_uncertainty([[0.0, 1.0]], [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="weights"):
        regression_uncertainty([[0.0, 1.0]], [[1.0, 1.0]], weights=[1.0])


# ---------------------------------------------------------------------------
# predict_uncertainty on ensembles
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris_frame():
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.index = pd.Index([f"row{i}" for i in range(len(X))], name="id")
    return X, y


@pytest.fixture(scope="module")
def forest_on_frame(iris_frame):
    X, y = iris_frame
    return RandomForestClassifier(n_estimators=6, max_depth=3, random_state=0).fit(X, y)


def test_predict_uncertainty_on_a_forest_keeps_the_index(iris_frame, forest_on_frame):
    X, _ = iris_frame
    frame = predict_uncertainty(forest_on_frame, X)
    assert isinstance(frame, pd.DataFrame)
    assert frame.columns.tolist() == ["total", "aleatoric", "epistemic"]
    assert frame.index.equals(X.index)
    assert frame.index.name == "id"
    parts = classification_uncertainty(predict_members(forest_on_frame, X))
    for column, part in zip(frame.columns, parts, strict=True):
        np.testing.assert_allclose(frame[column].to_numpy(), part, rtol=1e-12)
    np.testing.assert_allclose(frame.total, frame.aleatoric + frame.epistemic, atol=1e-12)
    assert (frame.epistemic >= 0).all()
    # the forest disagrees somewhere, so the test is not trivially all zeros
    assert frame.epistemic.max() > 0


def test_predict_uncertainty_is_the_public_function(iris_frame, forest_on_frame):
    X, _ = iris_frame
    assert skhydra.predict_uncertainty is predict_uncertainty
    np.testing.assert_array_equal(
        skhydra.predict_uncertainty(forest_on_frame, X.to_numpy()).index, [*range(150)]
    )


def test_predict_uncertainty_on_a_pipeline_teacher(iris_frame):
    X, y = iris_frame
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3, random_state=0))
    pipe.fit(X, y)
    frame = predict_uncertainty(pipe, X.iloc[::10])
    assert frame.index.equals(X.index[::10])
    parts = classification_uncertainty(predict_members(pipe, X.iloc[::10]))
    np.testing.assert_allclose(frame.epistemic.to_numpy(), parts[2], rtol=1e-12)


def test_predict_uncertainty_uses_voting_weights(iris_frame):
    X, y = iris_frame
    vote = VotingClassifier(
        [("nb", GaussianNB()), ("tree", DecisionTreeClassifier(max_depth=2, random_state=0))],
        voting="soft",
        weights=[1.0, 4.0],
    ).fit(X, y)
    frame = predict_uncertainty(vote, X)
    P = predict_members(vote, X)
    expected = classification_uncertainty(P, weights=[0.2, 0.8])
    for column, part in zip(frame.columns, expected, strict=True):
        np.testing.assert_allclose(frame[column].to_numpy(), part, rtol=1e-12)
    unweighted = classification_uncertainty(P)
    assert not np.allclose(frame.total.to_numpy(), unweighted[0])


def test_predict_uncertainty_on_a_search_uses_the_best_estimator(iris_frame):
    X, y = iris_frame
    search = GridSearchCV(
        RandomForestClassifier(n_estimators=3, random_state=0), {"max_depth": [1, 3]}, cv=2
    ).fit(X, y)
    frame = predict_uncertainty(search, X)
    assert frame.index.equals(X.index)
    expected = predict_uncertainty(search.best_estimator_, X)
    pd.testing.assert_frame_equal(frame, expected)


@pytest.fixture(scope="module")
def diabetes_frame():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X.iloc[:60, :4], y.iloc[:60]


def test_predict_uncertainty_on_point_members_warns_and_gives_nan(diabetes_frame):
    X, y = diabetes_frame
    forest = RandomForestRegressor(n_estimators=4, max_depth=3, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match="no variance"):
        frame = predict_uncertainty(forest, X)
    assert frame.index.equals(X.index)
    assert frame.aleatoric.isna().all()
    assert frame.total.isna().all()
    trees = np.stack([t.predict(X.to_numpy()) for t in forest.estimators_], axis=1)
    np.testing.assert_allclose(frame.epistemic.to_numpy(), trees.var(axis=1), rtol=1e-6)
    assert (frame.epistemic > 0).any()


def test_predict_uncertainty_on_gaussian_members(diabetes_frame):
    X, y = diabetes_frame
    members = [
        BayesianRidge().fit(X, y),
        BayesianRidge(alpha_init=1e-3).fit(X.iloc[::2], y.iloc[::2]),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = predict_uncertainty(members, X)
    stats = [m.predict(X, return_std=True) for m in members]
    means = np.stack([s[0] for s in stats], axis=1)
    variances = np.stack([s[1] ** 2 for s in stats], axis=1)
    np.testing.assert_allclose(frame.aleatoric.to_numpy(), variances.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(frame.epistemic.to_numpy(), means.var(axis=1), rtol=1e-6)
    np.testing.assert_allclose(frame.total, frame.aleatoric + frame.epistemic, rtol=1e-12)


# ---------------------------------------------------------------------------
# predict_uncertainty on a Hydra student, in a Pipeline and a search
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def student_pipeline(iris_frame):
    """A scaler and a student of a forest fitted on the scaled rows."""
    X, y = iris_frame
    Xt = StandardScaler().fit_transform(X)
    teacher = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(Xt, y)
    student = HydraDistilledClassifier(
        teacher, **{**TINY, "early_stopping": False, "augmentation": None}
    )
    return make_pipeline(StandardScaler(), student).fit(X, y)


def test_predict_uncertainty_on_a_pipeline_ending_in_a_student(iris_frame, student_pipeline):
    X, _ = iris_frame
    frame = predict_uncertainty(student_pipeline, X)
    assert frame.index.equals(X.index)
    assert frame.columns.tolist() == ["total", "aleatoric", "epistemic"]
    student = student_pipeline[-1]
    direct = student.predict_uncertainty(student_pipeline[0].transform(X))
    np.testing.assert_allclose(frame.to_numpy(), direct.to_numpy(), rtol=1e-6)
    assert predict_uncertainty(student, student_pipeline[0].transform(X)).shape == (150, 3)


def test_predict_uncertainty_on_torch_members_needs_the_task(iris_frame):
    X, _ = iris_frame
    torch.manual_seed(0)
    modules = [torch.nn.Linear(4, 3) for _ in range(3)]
    with pytest.raises(ValueError, match="task="):
        predict_uncertainty(modules, X)
    frame = predict_uncertainty(modules, X, task="classifier")
    assert frame.index.equals(X.index)
    parts = classification_uncertainty(predict_members(modules, X, task="classifier"))
    for column, part in zip(frame.columns, parts, strict=True):
        np.testing.assert_allclose(frame[column].to_numpy(), part, rtol=1e-12)


# ---------------------------------------------------------------------------
# a student's decomposition is the ensembles' one, over its heads
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_head_student(iris, forest):
    """8 members on 3 heads (weights 3/8, 3/8, 2/8), trained enough for the heads to
    be confident and to disagree."""
    params = {**TINY, "lr": 3e-2, "phase1_epochs": 6, "max_epochs": 12}
    return HydraDistilledClassifier(forest, n_heads=3, **params).fit(iris[0])


def test_student_uncertainty_is_the_decomposition_of_its_heads(iris, three_head_student):
    X, _ = iris
    student = three_head_student
    np.testing.assert_allclose(student.head_weights_, [3 / 8, 3 / 8, 2 / 8])
    heads = student.predict_members(X)
    assert heads.shape == (150, 3, 3)
    frame = student.predict_uncertainty(X)
    parts = classification_uncertainty(heads, student.head_weights_)
    for column, part in zip(frame.columns, parts, strict=True):
        np.testing.assert_allclose(frame[column].to_numpy(), part, rtol=1e-5, atol=1e-5)
    # the heads disagree, and the head weights matter: the checks above are not trivial
    assert frame.epistemic.max() > 1e-2
    unweighted = classification_uncertainty(heads)[2]
    assert np.abs(frame.epistemic.to_numpy() - unweighted).max() > 1e-4


def test_regressor_uncertainty_is_the_decomposition_of_its_heads(diabetes, hydra_r):
    X, _ = diabetes
    frame = hydra_r.predict_uncertainty(X)
    means, variances = hydra_r.predict_members(X)
    parts = regression_uncertainty(means, variances, hydra_r.head_weights_)
    for column, part in zip(frame.columns, parts, strict=True):
        np.testing.assert_allclose(frame[column].to_numpy(), part, rtol=1e-10)
    assert (frame.epistemic > 0).any() and (frame.aleatoric > 0).all()
