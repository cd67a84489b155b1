"""Teacher adapters: every supported ensemble -> per-member predictions."""

import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    BaggingRegressor,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.linear_model import BayesianRidge, LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from torch import nn

from skhydra.ensembles import Teacher, fit_teacher, predict_members, resolve_teacher

NAMES = np.array(["setosa", "versicolor", "virginica"])


def _mapped(member, X, n_classes):
    """A member's probabilities placed in the teacher's columns (members use encoded labels)."""
    out = np.zeros((len(X), n_classes))
    out[:, np.asarray(member.classes_).astype(int)] = member.predict_proba(X)
    return out


# ---------------------------------------------------------------------------
# fixtures: tiny data, few members, fitted once per module
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y, NAMES[y]


@pytest.fixture(scope="module")
def forest(iris):
    X, _, ys = iris
    return RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, ys)


@pytest.fixture(scope="module")
def extra_trees(iris):
    X, y, _ = iris
    # integer labels 1..3 while the trees see the encoded 0..2
    return ExtraTreesClassifier(n_estimators=4, max_depth=3, random_state=0).fit(X, y + 1)


@pytest.fixture(scope="module")
def bagging(iris):
    X, _, ys = iris
    return BaggingClassifier(
        DecisionTreeClassifier(max_depth=3), n_estimators=5, max_features=0.5, random_state=0
    ).fit(X, ys)


@pytest.fixture(scope="module")
def soft_voting(iris):
    X, _, ys = iris
    return VotingClassifier(
        [
            ("lr", LogisticRegression(max_iter=500)),
            ("gone", "drop"),
            ("tree", DecisionTreeClassifier(max_depth=2, random_state=0)),
            ("nb", GaussianNB()),
        ],
        voting="soft",
        weights=[1.0, 5.0, 2.0, 3.0],
    ).fit(X, ys)


@pytest.fixture(scope="module")
def hard_voting(iris):
    X, _, ys = iris
    return VotingClassifier(
        [
            ("lr", LogisticRegression(max_iter=500)),
            ("tree", DecisionTreeClassifier(max_depth=1, random_state=0)),
            ("nb", GaussianNB()),
        ],
        voting="hard",
        weights=[1.0, 1.0, 2.0],
    ).fit(X, ys)


@pytest.fixture(scope="module")
def regression():
    X, y = load_diabetes(return_X_y=True)
    return X[:80, :4], y[:80]


@pytest.fixture(scope="module")
def forest_regressor(regression):
    X, y = regression
    return RandomForestRegressor(n_estimators=4, max_depth=3, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def gaussian_members(regression):
    X, y = regression
    return [
        GaussianProcessRegressor(alpha=1.0, normalize_y=True).fit(X, y),
        BayesianRidge().fit(X, y),
        make_pipeline(StandardScaler(), BayesianRidge()).fit(X, y),
    ]


# ---------------------------------------------------------------------------
# each kind of classification teacher
# ---------------------------------------------------------------------------


def test_forest_members_are_the_trees(iris, forest):
    X, _, _ = iris
    P = predict_members(forest, X)
    assert P.shape == (150, 5, 3)
    assert P.dtype == np.float32
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=1e-6)
    for j, tree in enumerate(forest.estimators_):
        np.testing.assert_allclose(P[:, j], _mapped(tree, X, 3), atol=1e-6)
    teacher = resolve_teacher(forest)
    assert teacher.n_members == 5
    assert teacher.is_classifier
    assert teacher.weights is None
    assert teacher.classes_.tolist() == NAMES.tolist()
    assert teacher.n_features_in_ == 4


def test_extra_trees_with_shifted_integer_labels(iris, extra_trees):
    X, _, _ = iris
    P = predict_members(extra_trees, X)
    assert resolve_teacher(extra_trees).classes_.tolist() == [1, 2, 3]
    for j, tree in enumerate(extra_trees.estimators_):
        np.testing.assert_allclose(P[:, j], _mapped(tree, X, 3), atol=1e-6)
    np.testing.assert_allclose(P.mean(axis=1), extra_trees.predict_proba(X), atol=1e-5)


def test_bagging_applies_estimators_features(iris, bagging):
    X, _, _ = iris
    P = predict_members(bagging, X)
    assert P.shape == (150, 5, 3)
    # max_features=0.5 really gives the members a subset of the columns
    assert all(len(f) == 2 for f in bagging.estimators_features_)
    for j, (est, feats) in enumerate(
        zip(bagging.estimators_, bagging.estimators_features_, strict=True)
    ):
        np.testing.assert_allclose(P[:, j], _mapped(est, X[:, feats], 3), atol=1e-6)


def test_bagging_non_tree_members_see_the_input_unchanged(iris):
    X, _, ys = iris
    bag = BaggingClassifier(
        KNeighborsClassifier(3), n_estimators=5, max_samples=10, max_features=0.5, random_state=0
    ).fit(X, ys)
    P = predict_members(bag, X)
    for j, (est, feats) in enumerate(zip(bag.estimators_, bag.estimators_features_, strict=True)):
        np.testing.assert_allclose(P[:, j], _mapped(est, X[:, feats], 3), atol=1e-6)
    np.testing.assert_allclose(P.mean(axis=1), bag.predict_proba(X), atol=1e-5)


def test_soft_voting_weights_skip_the_dropped_member(iris, soft_voting):
    X, _, _ = iris
    teacher = resolve_teacher(soft_voting)
    assert teacher.n_members == 3
    np.testing.assert_allclose(teacher.weights, np.array([1.0, 2.0, 3.0]) / 6.0)
    assert teacher.weights.sum() == pytest.approx(1.0)
    P = predict_members(soft_voting, X)
    for j, est in enumerate(soft_voting.estimators_):
        np.testing.assert_allclose(P[:, j], _mapped(est, X, 3), atol=1e-6)


def test_hard_voting_gives_one_hot_votes_and_warns(iris, hard_voting):
    X, _, _ = iris
    with pytest.warns(UserWarning, match="hard voting"):
        P = predict_members(hard_voting, X)
    assert P.shape == (150, 3, 3)
    assert set(np.unique(P).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(P.sum(axis=2), 1.0)
    for j, est in enumerate(hard_voting.estimators_):
        np.testing.assert_array_equal(P[:, j].argmax(axis=1), est.predict(X))
    with pytest.warns(UserWarning, match="hard voting"):
        teacher = resolve_teacher(hard_voting)
    np.testing.assert_allclose(teacher.weights, [0.25, 0.25, 0.5])
    votes = np.average(P, axis=1, weights=teacher.weights)
    np.testing.assert_array_equal(teacher.classes_[votes.argmax(axis=1)], hard_voting.predict(X))


def test_list_with_string_labels_is_aligned_on_the_union(iris):
    X, _, ys = iris
    no_virginica = ys != "virginica"
    no_setosa = ys != "setosa"
    members = [
        LogisticRegression(max_iter=500).fit(X[no_virginica], ys[no_virginica]),
        DecisionTreeClassifier(max_depth=2, random_state=0).fit(X[no_setosa], ys[no_setosa]),
    ]
    teacher = resolve_teacher(members)
    # the union is larger than either member's classes
    assert teacher.classes_.tolist() == NAMES.tolist()
    P = predict_members(members, X)
    assert P.shape == (150, 2, 3)
    np.testing.assert_array_equal(P[:, 0, 2], 0.0)
    np.testing.assert_array_equal(P[:, 1, 0], 0.0)
    np.testing.assert_allclose(P[:, 0, :2], members[0].predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(P[:, 1, 1:], members[1].predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=1e-6)


def test_tuple_of_members_is_accepted(iris):
    X, _, ys = iris
    members = tuple(
        DecisionTreeClassifier(max_depth=2, random_state=s).fit(X, ys) for s in range(3)
    )
    P = predict_members(members, X)
    for j, est in enumerate(members):
        np.testing.assert_allclose(P[:, j], est.predict_proba(X), atol=1e-6)


def test_pipeline_teacher_members_see_transformed_input(iris):
    X, _, ys = iris
    X_shifted = X * 10.0 + 5.0
    pipe = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
    ).fit(X_shifted, ys)
    P = predict_members(pipe, X_shifted)
    Xt = pipe[0].transform(X_shifted)
    forest = pipe[-1]
    for j, tree in enumerate(forest.estimators_):
        np.testing.assert_allclose(P[:, j], _mapped(tree, Xt, 3), atol=1e-6)
    # the raw input would have given other predictions, so the check above is meaningful
    assert not np.allclose(P[:, 0], _mapped(forest.estimators_[0], X_shifted, 3))
    np.testing.assert_allclose(P.mean(axis=1), pipe.predict_proba(X_shifted), atol=1e-5)
    teacher = resolve_teacher(pipe)
    assert teacher.ensemble is pipe
    np.testing.assert_allclose(teacher.transform(X_shifted), Xt)


def test_frozen_estimator_is_unwrapped(iris, forest):
    X, _, _ = iris
    frozen = FrozenEstimator(forest)
    np.testing.assert_array_equal(predict_members(frozen, X), predict_members(forest, X))
    assert resolve_teacher(frozen).n_members == 5


def test_frozen_pipeline_teacher(iris):
    X, _, ys = iris
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=2, random_state=0))
    pipe.fit(X, ys)
    np.testing.assert_array_equal(
        predict_members(FrozenEstimator(pipe), X), predict_members(pipe, X)
    )


def _torch_classifiers(n_members=3, n_features=4, n_classes=3):
    torch.manual_seed(0)
    return [
        nn.Sequential(nn.Linear(n_features, 8), nn.Tanh(), nn.Linear(8, n_classes))
        for _ in range(n_members)
    ]


def test_torch_classifier_members_give_softmax_of_logits(iris):
    X, _, _ = iris
    modules = _torch_classifiers()
    P = predict_members(modules, X, task="classifier")
    assert P.shape == (150, 3, 3)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    for j, module in enumerate(modules):
        with torch.no_grad():
            expected = torch.softmax(module(Xt), dim=1).numpy()
        np.testing.assert_allclose(P[:, j], expected, atol=1e-6)
    assert resolve_teacher(modules, task="classifier").is_classifier


def test_torch_classifier_runs_in_eval_mode_and_restores_training(iris):
    X, _, _ = iris
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    module.train()
    P = predict_members([module], X, task="classifier")
    assert module.training
    with torch.no_grad():
        logits = module[0](torch.as_tensor(X, dtype=torch.float32))
    np.testing.assert_allclose(P[:, 0], torch.softmax(logits, dim=1).numpy(), atol=1e-6)


def test_torch_classifier_classes_and_wrong_width(iris):
    X, _, _ = iris
    modules = _torch_classifiers()
    teacher = resolve_teacher(modules, task="classifier", classes=NAMES)
    assert teacher.classes_.tolist() == NAMES.tolist()
    assert predict_members(teacher, X).shape == (150, 3, 3)
    with pytest.raises(ValueError, match="logits of shape"):
        predict_members(modules, X, task="classifier", classes=["a", "b"])


def test_torch_members_without_task_are_refused(iris):
    X, _, _ = iris
    with pytest.raises(ValueError, match="task="):
        predict_members(_torch_classifiers(), X)
    with pytest.raises(ValueError, match="task="):
        resolve_teacher(_torch_classifiers())


# ---------------------------------------------------------------------------
# the members' mean is the ensemble's own prediction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["forest", "bagging", "extra_trees"])
def test_member_mean_is_the_ensemble_predict_proba(iris, request, name):
    X, _, _ = iris
    ensemble = request.getfixturevalue(name)
    P = predict_members(ensemble, X)
    np.testing.assert_allclose(P.mean(axis=1), ensemble.predict_proba(X), atol=1e-5)


def test_weighted_member_mean_is_the_soft_voting_predict_proba(iris, soft_voting):
    X, _, _ = iris
    P = predict_members(soft_voting, X)
    weights = resolve_teacher(soft_voting).weights
    np.testing.assert_allclose(
        np.average(P, axis=1, weights=weights), soft_voting.predict_proba(X), atol=1e-5
    )
    # the weights matter: the unweighted mean is not the ensemble's prediction
    assert not np.allclose(P.mean(axis=1), soft_voting.predict_proba(X), atol=1e-5)


# ---------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------

_REFUSED = [
    (GradientBoostingClassifier(n_estimators=2, max_depth=1), "boosting"),
    (HistGradientBoostingClassifier(max_iter=2), "boosting"),
    (AdaBoostClassifier(n_estimators=2), "boosting"),
    (StackingClassifier([("nb", GaussianNB())], cv=2), "stacking"),
]


@pytest.mark.parametrize("model, word", _REFUSED)
def test_boosting_and_stacking_are_refused_with_reason(iris, model, word):
    X, _, ys = iris
    fitted = model.fit(X, ys)
    for teacher in (fitted, make_pipeline(StandardScaler(), fitted), [fitted]):
        with pytest.raises(TypeError, match=f"(?i){word}") as info:
            predict_members(teacher, X)
        # says what to pass instead
        assert "random forest" in str(info.value)


def test_unfitted_boosting_is_refused_by_fit_teacher(iris):
    X, _, ys = iris
    with pytest.raises(TypeError, match="cannot be distilled"):
        fit_teacher(GradientBoostingClassifier(), X, ys, task="classifier")
    with pytest.raises(TypeError, match="cannot be distilled"):
        fit_teacher([GradientBoostingRegressor()], X, ys, task="regressor")


@pytest.mark.parametrize(
    "model", [LogisticRegression(max_iter=500), DecisionTreeClassifier(max_depth=2)]
)
def test_single_model_is_refused(iris, model):
    X, _, ys = iris
    model.fit(X, ys)
    with pytest.raises(TypeError, match="single model"):
        predict_members(model, X)


def test_single_torch_module_is_refused():
    with pytest.raises(TypeError, match="single model"):
        resolve_teacher(nn.Linear(4, 3), task="classifier")


def test_arbitrary_object_is_refused():
    with pytest.raises(TypeError, match="Cannot use an object of type object"):
        resolve_teacher(object())


def test_list_with_a_non_estimator_is_refused():
    with pytest.raises(TypeError, match="neither a classifier nor a regressor"):
        resolve_teacher([object(), object()])


def test_none_is_refused():
    with pytest.raises(ValueError, match="None"):
        resolve_teacher(None)


@pytest.mark.parametrize("empty", [[], ()])
def test_empty_list_is_refused(iris, empty):
    X, _, _ = iris
    with pytest.raises(ValueError):
        predict_members(empty, X)


@pytest.mark.parametrize("empty", [[], ()])
def test_empty_list_message_says_empty(iris, empty):
    X, _, _ = iris
    with pytest.raises(ValueError, match="empty"):
        predict_members(empty, X)


def test_mixed_classifier_and_regressor_list_is_refused(iris):
    X, y, _ = iris
    members = [GaussianNB().fit(X, y), Ridge().fit(X, y)]
    with pytest.raises(ValueError, match="mixes classifiers and regressors"):
        predict_members(members, X)


def test_members_with_different_n_features_are_refused(iris):
    X, y, _ = iris
    members = [GaussianNB().fit(X, y), GaussianNB().fit(X[:, :3], y)]
    with pytest.raises(ValueError, match=r"different numbers of features \[3, 4\]"):
        predict_members(members, X)


def test_list_mixing_torch_and_sklearn_is_refused(iris):
    X, y, _ = iris
    members = [GaussianNB().fit(X, y), nn.Linear(4, 3)]
    with pytest.raises(TypeError, match="mixes torch modules"):
        predict_members(members, X, task="classifier")


def test_list_mixing_fitted_and_unfitted_is_refused(iris):
    X, y, _ = iris
    members = [GaussianNB().fit(X, y), GaussianNB()]
    with pytest.raises(ValueError, match="mixes fitted and unfitted"):
        predict_members(members, X)


def test_task_mismatch_is_refused(iris, forest, forest_regressor):
    X, _, _ = iris
    with pytest.raises(ValueError, match="HydraDistilledClassifier"):
        resolve_teacher(forest, task="regressor")
    with pytest.raises(ValueError, match="HydraDistilledRegressor"):
        resolve_teacher(forest_regressor, task="classifier")


@pytest.mark.parametrize(
    "unfitted",
    [
        RandomForestClassifier(n_estimators=2),
        BaggingClassifier(n_estimators=2),
        VotingClassifier([("lr", LogisticRegression())], voting="soft"),
        make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=2)),
        [LogisticRegression(), DecisionTreeClassifier()],
    ],
    ids=["forest", "bagging", "voting", "pipeline", "list"],
)
def test_unfitted_ensemble_raises_not_fitted(iris, unfitted):
    X, _, _ = iris
    with pytest.raises(NotFittedError):
        predict_members(unfitted, X)


# ---------------------------------------------------------------------------
# chunking, containers, no mutation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["forest", "bagging", "soft_voting"])
def test_chunked_prediction_equals_default(iris, request, name):
    X, _, _ = iris
    ensemble = request.getfixturevalue(name)
    np.testing.assert_array_equal(
        predict_members(ensemble, X, batch_size=7), predict_members(ensemble, X)
    )


def test_chunked_regression_equals_default(regression, gaussian_members):
    X, _ = regression
    means7, vars7 = predict_members(gaussian_members, X, batch_size=7)
    means, variances = predict_members(gaussian_members, X)
    np.testing.assert_allclose(means7, means, rtol=1e-10)
    np.testing.assert_allclose(vars7, variances, rtol=1e-10)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5])
def test_bad_batch_size_is_refused(iris, forest, batch_size):
    X, _, _ = iris
    with pytest.raises(ValueError, match="batch_size"):
        predict_members(forest, X, batch_size=batch_size)


def test_dataframe_input_keeps_feature_names_quiet(iris):
    X, _, ys = iris
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"], index=np.arange(150) * 3)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(df, ys)
    members = [GaussianNB(var_smoothing=v).fit(df, ys) for v in (1e-9, 1e-1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P_forest = predict_members(forest, df, batch_size=7)
        P_list = predict_members(members, df, batch_size=7)
    np.testing.assert_allclose(P_forest.mean(axis=1), forest.predict_proba(df), atol=1e-5)
    for j, est in enumerate(members):
        np.testing.assert_allclose(P_list[:, j], est.predict_proba(df), atol=1e-6)


def test_prediction_does_not_mutate_the_ensemble(iris, forest, soft_voting, bagging):
    X, _, _ = iris
    for ensemble in (forest, soft_voting, bagging):
        before = joblib.hash(ensemble)
        predict_members(ensemble, X, batch_size=50)
        resolve_teacher(ensemble)
        assert joblib.hash(ensemble) == before


def test_teacher_is_passed_through(iris, forest):
    X, _, _ = iris
    teacher = resolve_teacher(forest)
    assert isinstance(teacher, Teacher)
    assert resolve_teacher(teacher) is teacher
    np.testing.assert_array_equal(predict_members(teacher, X), predict_members(forest, X))


# ---------------------------------------------------------------------------
# regression teachers
# ---------------------------------------------------------------------------


def test_forest_regressor_gives_means_and_nan_variances(regression, forest_regressor):
    X, _ = regression
    means, variances = predict_members(forest_regressor, X)
    assert means.shape == variances.shape == (80, 4)
    assert np.isnan(variances).all()
    for j, tree in enumerate(forest_regressor.estimators_):
        np.testing.assert_allclose(means[:, j], tree.predict(X), rtol=1e-6)
    np.testing.assert_allclose(means.mean(axis=1), forest_regressor.predict(X), rtol=1e-6)
    teacher = resolve_teacher(forest_regressor)
    assert not teacher.is_classifier
    assert not teacher.has_variance
    assert teacher.classes_ is None


def test_bagging_regressor_with_feature_subsets(regression):
    X, y = regression
    bag = BaggingRegressor(
        DecisionTreeRegressor(max_depth=3), n_estimators=4, max_features=0.5, random_state=0
    ).fit(X, y)
    means, variances = predict_members(bag, X)
    for j, (est, feats) in enumerate(zip(bag.estimators_, bag.estimators_features_, strict=True)):
        np.testing.assert_allclose(means[:, j], est.predict(X[:, feats]), rtol=1e-6)
    np.testing.assert_allclose(means.mean(axis=1), bag.predict(X), rtol=1e-6)
    assert np.isnan(variances).all()


def test_voting_regressor_weights(regression):
    X, y = regression
    vote = VotingRegressor(
        [("ridge", Ridge()), ("tree", DecisionTreeRegressor(max_depth=2, random_state=0))],
        weights=[1.0, 3.0],
    ).fit(X, y)
    teacher = resolve_teacher(vote)
    np.testing.assert_allclose(teacher.weights, [0.25, 0.75])
    means, _ = predict_members(vote, X)
    np.testing.assert_allclose(
        np.average(means, axis=1, weights=teacher.weights), vote.predict(X), rtol=1e-6
    )


def test_gaussian_members_give_their_variances(regression, gaussian_members):
    X, _ = regression
    means, variances = predict_members(gaussian_members, X)
    assert means.shape == variances.shape == (80, 3)
    assert np.isfinite(variances).all()
    assert (variances > 0).all()
    for j, member in enumerate(gaussian_members):
        mean, std = member.predict(X, return_std=True)
        np.testing.assert_allclose(means[:, j], mean, rtol=1e-6)
        np.testing.assert_allclose(variances[:, j], std**2, rtol=1e-6)
    assert resolve_teacher(gaussian_members).has_variance


def test_gaussian_and_point_members_mixed(regression):
    X, y = regression
    members = [BayesianRidge().fit(X, y), Ridge().fit(X, y)]
    means, variances = predict_members(members, X)
    assert np.isfinite(variances[:, 0]).all()
    assert np.isnan(variances[:, 1]).all()
    np.testing.assert_allclose(means[:, 1], members[1].predict(X), rtol=1e-6)
    assert not resolve_teacher(members).has_variance


class _MeanVariance(nn.Module):
    def __init__(self, seed, shift=0.0, as_tuple=False):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(4, 2)
        self.shift = shift
        self.as_tuple = as_tuple

    def forward(self, x):
        out = self.linear(x)
        mean, variance = out[:, 0], nn.functional.softplus(out[:, 1]) + self.shift
        if self.as_tuple:
            return mean, variance
        return torch.stack([mean, variance], dim=1)


def test_torch_regressors_with_mean_and_variance(regression):
    X, _ = regression
    modules = [_MeanVariance(0), _MeanVariance(1), _MeanVariance(2, as_tuple=True)]
    means, variances = predict_members(modules, X, task="regressor")
    assert means.shape == variances.shape == (80, 3)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    for j, module in enumerate(modules):
        with torch.no_grad():
            mean, variance = module(Xt) if module.as_tuple else module(Xt).unbind(dim=1)
        np.testing.assert_allclose(means[:, j], mean.numpy(), rtol=1e-5)
        np.testing.assert_allclose(variances[:, j], variance.numpy(), rtol=1e-5)
    teacher = resolve_teacher(modules, task="regressor")
    predict_members(teacher, X)
    assert teacher.has_variance is True


def test_torch_regressors_with_mean_only(regression):
    X, _ = regression
    torch.manual_seed(0)
    modules = [nn.Linear(4, 1), nn.Linear(4, 1)]
    means, variances = predict_members(modules, X, task="regressor")
    with torch.no_grad():
        expected = modules[1](torch.as_tensor(X, dtype=torch.float32))[:, 0].numpy()
    np.testing.assert_allclose(means[:, 1], expected, rtol=1e-5)
    assert np.isnan(variances).all()
    teacher = resolve_teacher(modules, task="regressor")
    predict_members(teacher, X)
    assert teacher.has_variance is False


def test_torch_regressor_negative_variance_is_refused(regression):
    X, _ = regression
    modules = [_MeanVariance(0), _MeanVariance(1, shift=-1e3)]
    with pytest.raises(ValueError, match="variance"):
        predict_members(modules, X, task="regressor")


def test_torch_regressor_with_three_outputs_is_refused(regression):
    X, _ = regression
    with pytest.raises(ValueError, match="outputs per row"):
        predict_members([nn.Linear(4, 3)], X, task="regressor")


def test_torch_regressors_with_different_widths_are_refused(regression):
    X, _ = regression
    with pytest.raises(ValueError, match="outputs per row"):
        predict_members([_MeanVariance(0), nn.Linear(4, 1)], X, task="regressor")


# ---------------------------------------------------------------------------
# fit_teacher
# ---------------------------------------------------------------------------


def test_fit_teacher_returns_a_fitted_ensemble_untouched(iris, forest):
    X, _, ys = iris
    fitted, here = fit_teacher(forest, X, ys, task="classifier")
    assert fitted is forest
    assert here is False
    frozen = FrozenEstimator(forest)
    assert fit_teacher(frozen, X, None, task="classifier") == (frozen, False)


def test_fit_teacher_fits_a_clone_of_an_unfitted_ensemble(iris):
    X, _, ys = iris
    unfitted = RandomForestClassifier(n_estimators=3, random_state=0)
    fitted, here = fit_teacher(unfitted, X, ys, task="classifier")
    assert here is True
    assert fitted is not unfitted
    assert not hasattr(unfitted, "estimators_")
    assert len(fitted.estimators_) == 3
    assert predict_members(fitted, X).shape == (150, 3, 3)


def test_fit_teacher_fits_an_unfitted_list(iris):
    X, _, ys = iris
    members = [DecisionTreeClassifier(max_depth=d, random_state=0) for d in (1, 2)]
    fitted, here = fit_teacher(members, X, ys, task="classifier")
    assert here is True
    assert all(f is not m for f, m in zip(fitted, members, strict=True))
    assert all(not hasattr(m, "classes_") for m in members)
    assert [f.get_depth() for f in fitted] == [1, 2]


def test_fit_teacher_passes_sample_weight(iris):
    X, _, ys = iris
    weight = np.where(ys == "setosa", 0.0, 1.0)
    fitted, _ = fit_teacher(
        DecisionTreeClassifier(random_state=0), X, ys, sample_weight=weight, task="classifier"
    )
    reference = DecisionTreeClassifier(random_state=0).fit(X, ys, sample_weight=weight)
    unweighted = DecisionTreeClassifier(random_state=0).fit(X, ys)
    np.testing.assert_array_equal(fitted.predict_proba(X), reference.predict_proba(X))
    assert not np.array_equal(fitted.predict_proba(X), unweighted.predict_proba(X))


def test_fit_teacher_builds_the_default(iris):
    X, _, ys = iris
    calls = []

    def default():
        calls.append(1)
        return RandomForestClassifier(n_estimators=2, random_state=0)

    fitted, here = fit_teacher(None, X, ys, task="classifier", default=default)
    assert calls == [1]
    assert here is True
    assert len(fitted.estimators_) == 2


def test_fit_teacher_needs_y_for_an_unfitted_ensemble(iris):
    X, _, _ = iris
    with pytest.raises(ValueError, match="requires y to be passed"):
        fit_teacher(RandomForestClassifier(), X, None, task="classifier")


def test_fit_teacher_refuses_an_empty_list(iris):
    X, _, ys = iris
    with pytest.raises(ValueError, match="empty"):
        fit_teacher([], X, ys, task="classifier")
