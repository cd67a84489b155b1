"""Behaviour of HydraDistilledRegressor: teachers, target scaling, decomposition, errors."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.datasets import load_diabetes
from sklearn.ensemble import (
    BaggingRegressor,
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingRegressor,
    VotingRegressor,
)
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, WhiteKernel
from sklearn.linear_model import BayesianRidge, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor
from torch import nn

from skhydra import HydraDistilledRegressor, predict_uncertainty
from skhydra._regressor import GaussianTargets
from skhydra._targets import assign_heads
from skhydra.ensembles import predict_members, resolve_teacher
from skhydra.uncertainty import regression_uncertainty, uncertainty_frame

FAST = dict(body_layer_sizes=(32,), phase1_epochs=10, max_epochs=30, random_state=0)
# The 1-D toy needs a deeper, faster-learning student than FAST to follow the curve.
TOY = dict(body_layer_sizes=(32, 32), lr=1e-2, phase1_epochs=10, max_epochs=40, random_state=0)
# Enough training for six heads to learn their members (fidelity tests).
FIDELITY = dict(body_layer_sizes=(32,), phase1_epochs=20, max_epochs=80, lr=3e-3, random_state=0)
COLUMNS = ["total", "aleatoric", "epistemic"]


def _bootstrap_fits(make, X, y, n, seed=0):
    rng = np.random.default_rng(seed)
    members = []
    for _ in range(n):
        idx = rng.integers(len(X), size=len(X))
        members.append(make().fit(X[idx], y[idx]))
    return members


# ---------------------------------------------------------------------------
# fixtures: small data, few members, fitted once per module
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def student(diabetes, forest_r):
    """Point members, distilled with y (aleatoric variance learned from residuals)."""
    X, y = diabetes
    return HydraDistilledRegressor(forest_r, **FAST).fit(X, y)


@pytest.fixture(scope="module")
def voting(diabetes):
    X, y = diabetes
    return VotingRegressor(
        [
            ("ridge", Ridge(alpha=10.0)),
            ("tree", DecisionTreeRegressor(max_depth=3, random_state=0)),
            ("forest", RandomForestRegressor(n_estimators=4, max_depth=4, random_state=0)),
        ],
        weights=[3.0, 1.0, 1.0],
    ).fit(X, y)


@pytest.fixture(scope="module")
def voting_hydra(diabetes, voting):
    X, y = diabetes
    return HydraDistilledRegressor(voting, **FAST).fit(X, y)


@pytest.fixture(scope="module")
def gp_members(diabetes):
    X, y = diabetes
    kernel = RBF(length_scale=4.0) + WhiteKernel(noise_level=0.5)
    return _bootstrap_fits(
        lambda: GaussianProcessRegressor(kernel, optimizer=None, normalize_y=True), X, y, 4
    )


class _GaussianMLP(nn.Module):
    """Heteroscedastic member: returns the mean and the variance as two columns."""

    def __init__(self, n_features=1, width=32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_features, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh()
        )
        self.out = nn.Linear(width, 2)

    def forward(self, x):
        o = self.out(self.body(x))
        return torch.stack([o[:, 0], nn.functional.softplus(o[:, 1]) + 1e-4], dim=1)


class _MeanOnly(nn.Module):
    """Point member: the mean of a Gaussian MLP, shape (n,)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[:, 0]


@pytest.fixture(scope="module")
def toy():
    """1-D heteroscedastic data with a gap in (-1, 1) and 5 bootstrap Gaussian MLPs."""
    rng = np.random.default_rng(0)
    n = 200
    x = np.concatenate([rng.uniform(-4, -1, n // 2), rng.uniform(1, 4, n // 2)])
    y = np.sin(x) + rng.normal(size=n) * (0.05 + 0.1 * np.abs(x))
    X = x[:, None].astype(np.float32)
    members = []
    for seed in range(5):
        torch.manual_seed(seed)
        idx = rng.integers(n, size=n)
        xb = torch.from_numpy(X[idx])
        yb = torch.from_numpy(y[idx].astype(np.float32))
        net = _GaussianMLP()
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(500):
            opt.zero_grad()
            out = net(xb)
            nn.functional.gaussian_nll_loss(out[:, 0], yb, out[:, 1]).backward()
            opt.step()
        members.append(net)
    return X, y, members


def _teacher_mean(ensemble, X):
    means, _ = predict_members(ensemble, X, task="regressor")
    weights = resolve_teacher(ensemble, task="regressor", X=X).weights
    return np.average(means, axis=1, weights=weights)


def _check_student(model, ensemble, X, min_r2):
    t_means, _ = predict_members(ensemble, X, task="regressor")
    n_members = t_means.shape[1]
    assert model.n_members_ == model.n_heads_ == n_members
    means, variances = model.predict_members(X)
    assert means.shape == variances.shape == (len(X), n_members)
    assert np.isfinite(variances).all() and (variances > 0).all()
    assert r2_score(_teacher_mean(ensemble, X), model.predict(X)) > min_r2


@pytest.fixture(scope="module")
def disagreeing(diabetes):
    """Bagged linear members on half the rows and half the features, and off-training rows.

    Their disagreement is smooth, so a small student can learn it: fidelity
    tests on these members fail when the method is broken, not when the
    student is merely small.
    """
    X, y = diabetes
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.33, random_state=0)
    X_eval = np.vstack([X_test, X_test + np.random.default_rng(1).normal(size=X_test.shape)])
    members = {
        kind: BaggingRegressor(
            member, n_estimators=6, max_samples=0.5, max_features=0.5, random_state=0
        ).fit(X_train, y_train)
        for kind, member in (("gaussian", BayesianRidge()), ("point", Ridge()))
    }
    return X_train, y_train, X_eval, members


@pytest.fixture(scope="module")
def faithful(disagreeing):
    """Students of both bagged ensembles, fitted with y, and their teachers."""
    X_train, y_train, _, members = disagreeing
    return {
        kind: (HydraDistilledRegressor(bag, **FIDELITY).fit(X_train, y_train), bag)
        for kind, bag in members.items()
    }


# -- teachers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda X, y: RandomForestRegressor(n_estimators=5, min_samples_leaf=3, random_state=0).fit(
            X, y
        ),
        lambda X, y: ExtraTreesRegressor(n_estimators=5, min_samples_leaf=3, random_state=0).fit(
            X, y
        ),
        lambda X, y: BaggingRegressor(
            DecisionTreeRegressor(max_depth=4), n_estimators=5, max_features=0.5, random_state=0
        ).fit(X, y),
        lambda X, y: [Ridge(alpha=a).fit(X, y) for a in (0.1, 10.0, 100.0)],
        lambda X, y: make_pipeline(
            StandardScaler(), RandomForestRegressor(n_estimators=4, random_state=0)
        ).fit(X * 100.0, y),
        lambda X, y: FrozenEstimator(
            RandomForestRegressor(n_estimators=4, random_state=0).fit(X, y)
        ),
    ],
    ids=["forest", "extra_trees", "bagging_max_features", "list", "pipeline", "frozen"],
)
def test_fitted_teacher_kinds(diabetes, make):
    X, y = diabetes
    ensemble = make(X, y)
    # The pipeline teacher was fitted on rescaled inputs and takes them.
    Xin = X * 100.0 if "Pipeline" in type(ensemble).__name__ else X
    model = HydraDistilledRegressor(ensemble, **FAST).fit(Xin, y)
    _check_student(model, ensemble, Xin, min_r2=0.6)
    assert model.ensemble_ is ensemble


def test_bagging_members_see_their_feature_subsets(diabetes):
    X, y = diabetes
    # Members on 2 of 10 features: if they were given all features, predict would fail.
    bag = BaggingRegressor(Ridge(), n_estimators=4, max_features=0.2, random_state=0).fit(X, y)
    model = HydraDistilledRegressor(bag, **FAST).fit(X, y)
    assert r2_score(bag.predict(X), model.predict(X)) > 0.8


def test_voting_weights_weigh_the_heads(diabetes, voting, voting_hydra):
    X, _ = diabetes
    _check_student(voting_hydra, voting, X, min_r2=0.8)
    means, _ = voting_hydra.predict_members(X)
    np.testing.assert_allclose(voting_hydra.predict(X), means @ [0.6, 0.2, 0.2], rtol=1e-10)
    assert r2_score(voting.predict(X), voting_hydra.predict(X)) > 0.8


def test_unfitted_forest_is_cloned_and_fitted_with_sample_weight(diabetes):
    X, y = diabetes
    unfitted = RandomForestRegressor(n_estimators=4, random_state=0)
    weight = np.where(np.arange(len(X)) % 3 == 0, 0.0, 1.0)
    model = HydraDistilledRegressor(unfitted, **FAST).fit(X, y, sample_weight=weight)
    assert not hasattr(unfitted, "estimators_")
    assert model.ensemble_ is not unfitted and len(model.ensemble_.estimators_) == 4
    expected = clone(unfitted).fit(X, y, sample_weight=weight)
    np.testing.assert_allclose(model.ensemble_.predict(X), expected.predict(X))
    unweighted = clone(unfitted).fit(X, y)
    assert not np.allclose(model.ensemble_.predict(X), unweighted.predict(X))


def test_default_ensemble_is_a_forest_of_20_trees(diabetes):
    X, y = diabetes
    model = HydraDistilledRegressor(**FAST).fit(X, y)
    assert isinstance(model.ensemble_, RandomForestRegressor)
    assert model.n_members_ == model.n_heads_ == 20
    assert model.ensemble is None and model.ensemble_.random_state == 0
    assert r2_score(model.ensemble_.predict(X), model.predict(X)) > 0.6


def test_torch_members_with_mean_and_variance(toy):
    X, _, members = toy
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = HydraDistilledRegressor(members, **TOY).fit(X)
        u = model.predict_uncertainty(X)
    _check_student(model, members, X, min_r2=0.95)
    assert np.isfinite(u.to_numpy()).all()
    _, t_var = predict_members(members, X, task="regressor")
    ratio = u["aleatoric"].mean() / t_var.mean()
    assert 0.5 < ratio < 2.0
    assert all(m.training for m in members)  # the teacher's mode is left untouched


def test_torch_members_with_mean_only(toy):
    X, y, members = toy
    point = [_MeanOnly(m) for m in members]
    with pytest.warns(UserWarning, match="aleatoric"):
        unlabelled = HydraDistilledRegressor(point, **TOY).fit(X)
    assert unlabelled.n_heads_ == 5
    assert np.isnan(unlabelled.predict_members(X)[1]).all()
    model = HydraDistilledRegressor(point, **TOY).fit(X, y)
    _check_student(model, point, X, min_r2=0.95)


def test_gaussian_process_members(diabetes, gp_members):
    X, _ = diabetes
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = HydraDistilledRegressor(gp_members, **FAST).fit(X)
        u = model.predict_uncertainty(X)
        t = predict_uncertainty(gp_members, X)
    _check_student(model, gp_members, X, min_r2=0.8)
    assert np.isfinite(u.to_numpy()).all() and np.isfinite(t.to_numpy()).all()
    assert 0.5 < u["aleatoric"].mean() / t["aleatoric"].mean() < 2.0


def test_bayesian_ridge_members(diabetes):
    X, y = diabetes
    members = _bootstrap_fits(BayesianRidge, X, y, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = HydraDistilledRegressor(members, **TOY).fit(X)
        u = model.predict_uncertainty(X)
    _check_student(model, members, X, min_r2=0.95)
    _, t_var = predict_members(members, X)
    assert 0.5 < u["aleatoric"].mean() / t_var.mean() < 2.0


# -- point members: aleatoric from y or unknown ----------------------------------


def test_point_members_without_y_report_unknown_aleatoric(diabetes, forest_r):
    X, _ = diabetes
    with pytest.warns(UserWarning, match="aleatoric"):
        model = HydraDistilledRegressor(forest_r, **FAST).fit(X)
    with pytest.warns(UserWarning, match="aleatoric"):
        u = model.predict_uncertainty(X)
    assert list(u.columns) == COLUMNS
    assert u["aleatoric"].isna().all() and u["total"].isna().all()
    assert np.isfinite(u["epistemic"]).all() and (u["epistemic"] >= 0).all()
    assert (u["epistemic"] > 0).any()
    with pytest.warns(UserWarning, match="aleatoric"):
        mean, std = model.predict(X, return_std=True)
    assert np.isfinite(mean).all() and np.isnan(std).all()


def test_point_members_with_y_learn_aleatoric(diabetes, student):
    X, y = diabetes
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        u = student.predict_uncertainty(X)
    assert np.isfinite(u.to_numpy()).all()
    assert (u["aleatoric"] > 0).all()
    # Of the order of the residual variance, not the variance floor.
    assert 0.1 * y.var() < u["aleatoric"].mean() < 1.5 * y.var()


# -- the decomposition -------------------------------------------------------------


@pytest.mark.parametrize("name", ["student", "voting_hydra"])
def test_decomposition_invariants(diabetes, request, name):
    X, _ = diabetes
    model = request.getfixturevalue(name)
    u = model.predict_uncertainty(X)
    assert list(u.columns) == COLUMNS and len(u) == len(X)
    np.testing.assert_allclose(u["total"], u["aleatoric"] + u["epistemic"], rtol=1e-12)
    assert (u["epistemic"] >= 0).all() and (u["epistemic"] > 0).any()
    mean, std = model.predict(X, return_std=True)
    np.testing.assert_allclose(std**2, u["total"], rtol=1e-6)
    means, variances = model.predict_members(X)
    weights = model.teacher_.weights  # None (equal) for the forest
    np.testing.assert_allclose(mean, np.average(means, axis=1, weights=weights), rtol=1e-10)
    np.testing.assert_allclose(model.predict(X), mean)
    np.testing.assert_allclose(
        u["epistemic"], np.average((means - mean[:, None]) ** 2, axis=1, weights=weights)
    )
    np.testing.assert_allclose(u["aleatoric"], np.average(variances, axis=1, weights=weights))


def test_one_head_has_zero_epistemic(diabetes, forest_r):
    X, y = diabetes
    kd = HydraDistilledRegressor(forest_r, n_heads=1, **FAST).fit(X, y)
    assert kd.n_heads_ == 1 and kd.n_members_ == 6
    u = kd.predict_uncertainty(X)
    np.testing.assert_array_equal(u["epistemic"], 0.0)
    assert (u["aleatoric"] > 0).all()


def test_fewer_heads_than_members(diabetes, forest_r):
    X, y = diabetes
    model = HydraDistilledRegressor(forest_r, n_heads=2, **FAST).fit(X, y)
    assert model.n_heads_ == 2 and model.n_members_ == 6
    means, variances = model.predict_members(X[:7])
    assert means.shape == variances.shape == (7, 2)
    assert model.predict_uncertainty(X[:7]).shape == (7, 3)
    assert r2_score(forest_r.predict(X), model.predict(X)) > 0.6
    with pytest.raises(ValueError, match="exceeds the ensemble's 6 members"):
        HydraDistilledRegressor(forest_r, n_heads=7, **FAST).fit(X, y)


def test_target_scaling_round_trip():
    X, y = load_diabetes(return_X_y=True)
    big_y = 1000.0 * y + 5000.0
    # Leaves of 5 rows: no near-ties in the split search, so both forests grow the
    # same trees (fully grown trees can pick different splits on rescaled targets).
    small = RandomForestRegressor(n_estimators=5, min_samples_leaf=5, random_state=0).fit(X, y)
    big = RandomForestRegressor(n_estimators=5, min_samples_leaf=5, random_state=0).fit(X, big_y)
    scale = 1000.0 * y.std()
    assert np.abs(big.predict(X) - (1000.0 * small.predict(X) + 5000.0)).max() < 1e-9 * scale

    s = HydraDistilledRegressor(small, **FAST).fit(X, y)
    b = HydraDistilledRegressor(big, **FAST).fit(X, big_y)
    s_mean, s_std = s.predict(X, return_std=True)
    b_mean, b_std = b.predict(X, return_std=True)
    assert abs(r2_score(small.predict(X), s_mean) - r2_score(big.predict(X), b_mean)) < 0.02
    assert r2_score(small.predict(X), s_mean) > 0.6
    assert np.abs(b_mean - (1000.0 * s_mean + 5000.0)).max() < 1e-3 * scale
    np.testing.assert_allclose(b_std, 1000.0 * s_std, rtol=1e-3)
    ub, us = b.predict_uncertainty(X), s.predict_uncertainty(X)
    np.testing.assert_allclose(ub["epistemic"], 1e6 * us["epistemic"], rtol=1e-2, atol=1e-6)


@pytest.mark.slow
def test_heteroscedastic_gap_keeps_epistemic_and_aleatoric_shape(toy):
    X, _, members = toy
    grid = np.linspace(-4, 4, 161)[:, None].astype(np.float32)
    gap = np.abs(grid[:, 0]) < 0.8
    data = np.abs(grid[:, 0]) > 1.2
    inner = data & (np.abs(grid[:, 0]) < 2.0)
    outer = np.abs(grid[:, 0]) > 3.0

    t_means, t_vars = predict_members(members, grid, task="regressor")
    teacher = uncertainty_frame(*regression_uncertainty(t_means, t_vars))
    model = HydraDistilledRegressor(members, **{**TOY, "max_epochs": 110}).fit(X)
    assert model.augmentation == "auto"  # the default: noise rows (torch members) reach the gap
    student = model.predict_uncertainty(grid)
    for u in (teacher, student):
        assert u["epistemic"][gap].mean() > 1.5 * u["epistemic"][data].mean()
        # The noise grows with |x| (variance x4 from |x| = 1.5 to 3.5; the MLPs see ~x2).
        assert u["aleatoric"][outer].mean() > 1.5 * u["aleatoric"][inner].mean()
    # Without synthetic rows the student never sees the gap and misses the disagreement there.
    plain = HydraDistilledRegressor(members, **{**TOY, "max_epochs": 100, "augmentation": None})
    u = plain.fit(X).predict_uncertainty(grid)
    assert u["epistemic"][gap].mean() < 0.5 * student["epistemic"][gap].mean()


def test_module_function_on_torch_members(toy):
    X, _, members = toy
    u = predict_uncertainty(members, X[:10], task="regressor")
    means, variances = predict_members(members, X[:10], task="regressor")
    np.testing.assert_allclose(u["epistemic"], means.var(axis=1), rtol=1e-6)
    np.testing.assert_allclose(u["aleatoric"], variances.mean(axis=1), rtol=1e-6)


# -- the module function, DataFrames, pickling -------------------------------------


def test_module_function_on_teacher_and_student(diabetes, forest_r, student):
    X, _ = diabetes
    with pytest.warns(UserWarning, match="no variance"):
        t = predict_uncertainty(forest_r, X)
    s = predict_uncertainty(student, X)
    assert list(t.columns) == list(s.columns) == COLUMNS
    assert t["aleatoric"].isna().all()
    trees = np.stack([tree.predict(X) for tree in forest_r.estimators_], axis=1)
    np.testing.assert_allclose(t["epistemic"], trees.var(axis=1), rtol=1e-6)
    pd.testing.assert_frame_equal(s, student.predict_uncertainty(X))


def test_module_function_with_gaussian_members(diabetes, gp_members):
    X, _ = diabetes
    t = predict_uncertainty(gp_members, X[:20])
    stds = np.stack([gp.predict(X[:20], return_std=True)[1] for gp in gp_members], axis=1)
    np.testing.assert_allclose(t["aleatoric"], (stds**2).mean(axis=1), rtol=1e-6)
    assert np.isfinite(t.to_numpy()).all()


def test_dataframe_index_and_feature_names(diabetes, forest_r):
    X, y = diabetes
    columns = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns, index=np.arange(len(X)) + 1000)
    model = HydraDistilledRegressor(forest_r, **FAST).fit(frame, pd.Series(y, index=frame.index))
    assert list(model.feature_names_in_) == columns
    assert model.n_features_in_ == X.shape[1]
    u = model.predict_uncertainty(frame.iloc[10:20])
    assert list(u.index) == list(frame.index[10:20])
    assert list(predict_uncertainty(model, frame).index) == list(frame.index)
    with pytest.warns(UserWarning, match="no variance"):
        assert list(predict_uncertainty(forest_r, frame).index) == list(frame.index)


def test_dataframe_members_fitted_with_names_stay_quiet(diabetes):
    X, y = diabetes
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    members = [BayesianRidge().fit(frame.iloc[i::2], y[i::2]) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = HydraDistilledRegressor(members, **FAST).fit(frame)
        model.predict_uncertainty(frame)


def test_dataframe_with_reordered_columns_is_refused(diabetes):
    X, y = diabetes
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    members = [Ridge().fit(frame.iloc[i::2], y[i::2]) for i in range(2)]
    with pytest.raises(ValueError, match="feature names"):
        members[0].predict(frame[frame.columns[::-1]])
    with pytest.raises(ValueError, match="feature names"):
        HydraDistilledRegressor(members, **FAST).fit(frame[frame.columns[::-1]], y)


def test_pickle_round_trip(diabetes, voting_hydra):
    X, _ = diabetes
    loaded = pickle.loads(pickle.dumps(voting_hydra))
    mean, std = voting_hydra.predict(X, return_std=True)
    mean2, std2 = loaded.predict(X, return_std=True)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(std, std2)


def test_same_random_state_same_predictions(diabetes, forest_r, student):
    X, y = diabetes
    again = HydraDistilledRegressor(forest_r, **FAST).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), student.predict(X))


# -- errors ----------------------------------------------------------------------


def test_bad_input_errors(diabetes, forest_r, student):
    X, y = diabetes
    with pytest.raises(ValueError, match="columns"):
        HydraDistilledRegressor(forest_r, **FAST).fit(X, np.stack([y, y], axis=1))
    X_inf = X.copy()
    X_inf[0, 0] = np.inf  # forests take NaN (see test_base), not infinity
    with pytest.raises(ValueError, match="infinity"):
        HydraDistilledRegressor(forest_r, **FAST).fit(X_inf, y)
    with pytest.raises(ValueError, match="infinity"):
        student.predict(X_inf)
    y_nan = y.copy()
    y_nan[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        HydraDistilledRegressor(RandomForestRegressor(n_estimators=2), **FAST).fit(X, y_nan)
    with pytest.raises(ValueError, match="features"):
        student.predict(X[:, :3])
    with pytest.raises(ValueError, match="features"):
        student.predict_uncertainty(X[:, :3])
    with pytest.raises(NotFittedError):
        HydraDistilledRegressor(forest_r).predict(X)
    with pytest.raises(NotFittedError):
        HydraDistilledRegressor(forest_r).predict_uncertainty(X)
    with pytest.raises(ValueError, match="requires y"):
        HydraDistilledRegressor(**FAST).fit(X)
    with pytest.raises(ValueError, match="requires y"):
        HydraDistilledRegressor(RandomForestRegressor(n_estimators=2), **FAST).fit(X)


@pytest.mark.parametrize(
    "ensemble, word",
    [
        (GradientBoostingRegressor(n_estimators=3), "boosting"),
        (HistGradientBoostingRegressor(max_iter=3), "boosting"),
        (StackingRegressor([("ridge", Ridge()), ("tree", DecisionTreeRegressor())]), "stacking"),
    ],
    ids=["gradient_boosting", "hist_gradient_boosting", "stacking"],
)
@pytest.mark.parametrize("fitted", [True, False], ids=["fitted", "unfitted"])
def test_boosting_and_stacking_are_refused(diabetes, ensemble, word, fitted):
    X, y = diabetes
    ensemble = clone(ensemble).fit(X, y) if fitted else clone(ensemble)
    with pytest.raises(TypeError, match=word):
        HydraDistilledRegressor(ensemble, **FAST).fit(X, y)


def test_classifier_ensemble_is_refused(diabetes):
    X, y = diabetes
    labels = (y > np.median(y)).astype(int)
    classifier = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, labels)
    with pytest.raises(ValueError, match="HydraDistilledClassifier"):
        HydraDistilledRegressor(classifier, **FAST).fit(X)
    with pytest.raises(ValueError, match="HydraDistilledClassifier"):
        HydraDistilledRegressor(classifier, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="HydraDistilledClassifier"):
        HydraDistilledRegressor([classifier.estimators_[0]], **FAST).fit(X)


# -- fidelity to the teacher: the heads keep the members' disagreement ---------


@pytest.mark.parametrize("kind", ["gaussian", "point"])
def test_student_epistemic_tracks_the_teacher_off_the_training_rows(disagreeing, faithful, kind):
    _, _, X_eval, _ = disagreeing
    student, bag = faithful[kind]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*predict no variance", category=UserWarning)
        teacher = predict_uncertainty(bag, X_eval)["epistemic"]
    mine = student.predict_uncertainty(X_eval)["epistemic"]
    assert spearmanr(teacher, mine).statistic > 0.9
    assert 0.6 < mine.mean() / teacher.mean() < 1.5
    if kind == "gaussian":
        t_aleatoric = predict_uncertainty(bag, X_eval)["aleatoric"]
        ratio = student.predict_uncertainty(X_eval)["aleatoric"].mean() / t_aleatoric.mean()
        assert 0.7 < ratio < 1.4


@pytest.mark.parametrize("kind", ["gaussian", "point"])
def test_head_m_learns_member_m(disagreeing, faithful, kind):
    _, _, X_eval, _ = disagreeing
    student, bag = faithful[kind]
    member_means, _ = predict_members(bag, X_eval)
    head_means, _ = student.predict_members(X_eval)
    # errors[m, h]: how far head h is from member m; member m's own head is the closest.
    errors = ((member_means[:, :, None] - head_means[:, None, :]) ** 2).mean(axis=0)
    np.testing.assert_array_equal(errors.argmin(axis=1), np.arange(6))


def test_fewer_heads_learn_the_moments_of_their_members(disagreeing):
    X_train, y_train, X_eval, members = disagreeing
    bag = members["gaussian"]
    student = HydraDistilledRegressor(bag, n_heads=3, **FIDELITY).fit(X_train, y_train)
    np.testing.assert_array_equal(student.member_heads_, [0, 1, 2, 0, 1, 2])
    means, variances = predict_members(bag, X_eval)
    # Head h imitates the moment-matched Gaussian of members h and h + 3.
    group_means = (means[:, :3] + means[:, 3:]) / 2
    head_means, head_variances = student.predict_members(X_eval)
    errors = ((group_means[:, :, None] - head_means[:, None, :]) ** 2).mean(axis=0)
    np.testing.assert_array_equal(errors.argmin(axis=1), np.arange(3))
    group_variances = (
        variances[:, :3] + variances[:, 3:] + means[:, :3] ** 2 + means[:, 3:] ** 2
    ) / 2
    group_variances -= group_means**2
    assert 0.7 < head_variances.mean() / group_variances.mean() < 1.4


# -- the target encoding ------------------------------------------------------------


def test_gaussian_targets_standardise_and_match_moments():
    means = np.array([[10.0, 14.0, 30.0]])
    variances = np.array([[4.0, 8.0, np.nan]])
    encoding = GaussianTargets(loc=10.0, scale=2.0, aleatoric_known=True)
    heads = assign_heads(3, 2)  # head 0: members 0 and 2; head 1: member 1
    phase1, phase2 = encoding.encode((means, variances), heads, np.array([12.0]))
    # Standardised: means (0, 2, 10), variances (1, 2, nan); y = 1.
    np.testing.assert_allclose(phase1["mean"], [[4.0]])
    assert np.isnan(phase1["var"]).all()  # a point member leaves the mixture's variance unknown
    np.testing.assert_allclose(phase2["mean"], [[5.0, 2.0]])
    np.testing.assert_allclose(phase2["var"][:, 1], [2.0])
    np.testing.assert_allclose(phase1["y"], [1.0])
    gaussians = encoding.encode((means[:, :2], variances[:, :2]), assign_heads(2, 1), None)[1]
    # One head, two members (0, 1) and (2, 2): mixture mean 1, variance 1.5 + 1 = 2.5.
    np.testing.assert_allclose(gaussians["mean"], [[1.0]])
    np.testing.assert_allclose(gaussians["var"], [[2.5]])
    assert np.isnan(gaussians["y"]).all()


def test_gaussian_targets_decode_to_units_of_y():
    encoding = GaussianTargets(loc=100.0, scale=10.0, aleatoric_known=True)
    outputs = torch.tensor([[[0.5, 0.5413]]])  # softplus(0.5413) = 1.0
    means, variances = encoding.decode(outputs)
    np.testing.assert_allclose(means, [[105.0]])
    np.testing.assert_allclose(variances, [[100.0]], rtol=1e-3)
    unknown = GaussianTargets(loc=0.0, scale=1.0, aleatoric_known=False).decode(outputs)[1]
    assert np.isnan(unknown).all()


# -- tree teachers: heads matched by rank ----------------------------------------------


@pytest.fixture(scope="module")
def forest_split(diabetes):
    """A 30-tree forest fitted on two thirds of diabetes; held-out and noisy rows."""
    X, y = diabetes
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.33, random_state=0)
    X_eval = np.vstack([X_test, X_test + np.random.default_rng(1).normal(size=X_test.shape)])
    forest = RandomForestRegressor(n_estimators=30, random_state=0).fit(X_train, y_train)
    return X_train, y_train, X_eval, forest


def test_forest_heads_matched_by_rank_keep_the_spread(forest_split):
    X_train, y_train, X_eval, forest = forest_split
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*predict no variance", category=UserWarning)
        teacher = predict_uncertainty(forest, X_eval)["epistemic"].mean()
    ratio = {}
    for matching in ("auto", "member"):
        student = HydraDistilledRegressor(forest, head_matching=matching, **FIDELITY)
        student.fit(X_train, y_train)
        spread = student.predict_uncertainty(X_eval)["epistemic"].mean()
        ratio[student.head_matching_] = spread / teacher
    # One tree's prediction jumps from row to row; the trees' ranks do not. Heads that
    # imitate single trees average their jumps away and lose most of the spread.
    assert ratio["rank"] > 0.5
    assert ratio["member"] < ratio["rank"] / 3
