"""Resolution of every supported ensemble into member adapters, refusals, fit_ensemble.

Mirrors ``skhydra/ensembles/_resolve.py`` and ``skhydra/ensembles/_members.py``; the
Teacher's own prediction machinery (chunks, workers, cache) is in test_teacher.py.
"""

import warnings

import joblib
import numpy as np
import pytest
import torch
from conftest import IRIS_NAMES
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    BaggingRegressor,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.linear_model import BayesianRidge, LogisticRegression, Ridge, RidgeClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from torch import nn

from skhydra.ensembles import Teacher, predict_members, resolve_teacher
from skhydra.ensembles._kinds import is_fitted, shared_preprocessing
from skhydra.ensembles._members import (
    GaussianMember,
    PointMember,
    ProbaMember,
    TorchClassifierMember,
    TorchRegressorMember,
    VoteMember,
    supports_return_std,
    torch_forward,
    unwrap_frozen,
)
from skhydra.ensembles._resolve import fit_ensemble


def _mapped(member, X, n_classes):
    """A member's probabilities placed in the teacher's columns (members use encoded labels)."""
    out = np.zeros((len(X), n_classes))
    out[:, np.asarray(member.classes_).astype(int)] = member.predict_proba(X)
    return out


def _kinds(teacher):
    return [type(m) for m in teacher.members]


# ---------------------------------------------------------------------------
# fixtures: ensembles the shared conftest ones do not cover, fitted once per module
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def forest_on_names(iris, iris_names):
    """Trees fitted by their forest on encoded labels 0..2, the forest on names."""
    return RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(
        iris[0], iris_names
    )


@pytest.fixture(scope="module")
def extra_trees_shifted(iris):
    X, y = iris
    # integer labels 1..3 while the trees see the encoded 0..2
    return ExtraTreesClassifier(n_estimators=4, max_depth=3, random_state=0).fit(X, y + 1)


@pytest.fixture(scope="module")
def bagging_on_names(iris, iris_names):
    return BaggingClassifier(
        DecisionTreeClassifier(max_depth=3), n_estimators=5, max_features=0.5, random_state=0
    ).fit(iris[0], iris_names)


@pytest.fixture(scope="module")
def soft_voting(iris, iris_names):
    return VotingClassifier(
        [
            ("lr", LogisticRegression(max_iter=500)),
            ("gone", "drop"),
            ("tree", DecisionTreeClassifier(max_depth=2, random_state=0)),
            ("nb", GaussianNB()),
        ],
        voting="soft",
        weights=[1.0, 5.0, 2.0, 3.0],
    ).fit(iris[0], iris_names)


@pytest.fixture(scope="module")
def hard_voting(iris, iris_names):
    return VotingClassifier(
        [
            ("lr", LogisticRegression(max_iter=500)),
            ("tree", DecisionTreeClassifier(max_depth=1, random_state=0)),
            ("nb", GaussianNB()),
        ],
        voting="hard",
        weights=[1.0, 1.0, 2.0],
    ).fit(iris[0], iris_names)


@pytest.fixture(scope="module")
def gaussian_members(diabetes):
    """Members whose predict takes return_std, bare, in a Pipeline and frozen."""
    X, y = diabetes
    return [
        GaussianProcessRegressor(alpha=1.0, normalize_y=True).fit(X[:100], y[:100]),
        BayesianRidge().fit(X, y),
        make_pipeline(StandardScaler(), BayesianRidge()).fit(X, y),
        FrozenEstimator(BayesianRidge(alpha_init=1e-3).fit(X[::2], y[::2])),
    ]


# ---------------------------------------------------------------------------
# each kind of classification teacher
# ---------------------------------------------------------------------------


def test_forest_members_are_the_trees(iris, forest_on_names):
    X, _ = iris
    P = predict_members(forest_on_names, X)
    assert P.shape == (150, 5, 3)
    assert P.dtype == np.float32
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=1e-6)
    for j, tree in enumerate(forest_on_names.estimators_):
        np.testing.assert_allclose(P[:, j], _mapped(tree, X, 3), atol=1e-6)
    teacher = resolve_teacher(forest_on_names)
    assert teacher.n_members == 5
    assert teacher.is_classifier and teacher.task == "classifier"
    assert teacher.weights is None
    assert teacher.classes_.tolist() == IRIS_NAMES.tolist()
    assert teacher.n_features_in_ == 4
    assert teacher.preprocessor is None
    # the trees take the forest's validated array; their encoded labels map by value
    assert _kinds(teacher) == [ProbaMember] * 5
    for member, tree in zip(teacher.members, forest_on_names.estimators_, strict=True):
        assert member.model is tree
        assert member.as_array and member.features is None
        assert member.columns.tolist() == [0, 1, 2]


def test_extra_trees_with_shifted_integer_labels(iris, extra_trees_shifted):
    X, _ = iris
    P = predict_members(extra_trees_shifted, X)
    assert resolve_teacher(extra_trees_shifted).classes_.tolist() == [1, 2, 3]
    for j, tree in enumerate(extra_trees_shifted.estimators_):
        np.testing.assert_allclose(P[:, j], _mapped(tree, X, 3), atol=1e-6)


def test_bagging_applies_estimators_features(iris, bagging_on_names):
    X, _ = iris
    P = predict_members(bagging_on_names, X)
    assert P.shape == (150, 5, 3)
    # max_features=0.5 really gives the members a subset of the columns
    features = bagging_on_names.estimators_features_
    assert all(len(f) == 2 for f in features)
    for j, (est, feats) in enumerate(zip(bagging_on_names.estimators_, features, strict=True)):
        np.testing.assert_allclose(P[:, j], _mapped(est, X[:, feats], 3), atol=1e-6)
    teacher = resolve_teacher(bagging_on_names)
    for member, feats in zip(teacher.members, features, strict=True):
        np.testing.assert_array_equal(member.features, feats)
        assert member.as_array


def test_bagging_non_tree_members_see_the_input_unchanged(iris, iris_names):
    X, _ = iris
    bag = BaggingClassifier(
        KNeighborsClassifier(3), n_estimators=5, max_samples=10, max_features=0.5, random_state=0
    ).fit(X, iris_names)
    P = predict_members(bag, X)
    for j, (est, feats) in enumerate(zip(bag.estimators_, bag.estimators_features_, strict=True)):
        np.testing.assert_allclose(P[:, j], _mapped(est, X[:, feats], 3), atol=1e-6)
    np.testing.assert_allclose(P.mean(axis=1), bag.predict_proba(X), atol=1e-5)


def test_soft_voting_weights_skip_the_dropped_member(iris, soft_voting):
    X, _ = iris
    teacher = resolve_teacher(soft_voting)
    assert teacher.n_members == 3
    np.testing.assert_allclose(teacher.weights, np.array([1.0, 2.0, 3.0]) / 6.0)
    assert teacher.weights.sum() == pytest.approx(1.0)
    assert _kinds(teacher) == [ProbaMember] * 3
    # voting members take X as the ensemble got it, not a validated array
    assert not any(m.as_array for m in teacher.members)
    P = predict_members(soft_voting, X)
    for j, est in enumerate(soft_voting.estimators_):
        np.testing.assert_allclose(P[:, j], _mapped(est, X, 3), atol=1e-6)


def test_hard_voting_gives_one_hot_votes_and_warns(iris, hard_voting):
    X, _ = iris
    with pytest.warns(UserWarning, match="hard voting"):
        P = predict_members(hard_voting, X)
    assert P.shape == (150, 3, 3)
    assert set(np.unique(P).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(P.sum(axis=2), 1.0)
    for j, est in enumerate(hard_voting.estimators_):
        np.testing.assert_array_equal(P[:, j].argmax(axis=1), est.predict(X))
    with pytest.warns(UserWarning, match="hard voting"):
        teacher = resolve_teacher(hard_voting)
    assert _kinds(teacher) == [VoteMember] * 3
    np.testing.assert_allclose(teacher.weights, [0.25, 0.25, 0.5])
    votes = np.average(P, axis=1, weights=teacher.weights)
    np.testing.assert_array_equal(teacher.classes_[votes.argmax(axis=1)], hard_voting.predict(X))


def test_list_with_string_labels_is_aligned_on_the_union(iris, iris_names):
    X, _ = iris
    no_virginica = iris_names != "virginica"
    no_setosa = iris_names != "setosa"
    members = [
        LogisticRegression(max_iter=500).fit(X[no_virginica], iris_names[no_virginica]),
        DecisionTreeClassifier(max_depth=2, random_state=0).fit(
            X[no_setosa], iris_names[no_setosa]
        ),
    ]
    teacher = resolve_teacher(members)
    # the union is larger than either member's classes
    assert teacher.classes_.tolist() == IRIS_NAMES.tolist()
    assert [m.columns.tolist() for m in teacher.members] == [[0, 1], [1, 2]]
    assert teacher.n_features_in_ == 4
    P = predict_members(members, X)
    assert P.shape == (150, 2, 3)
    np.testing.assert_array_equal(P[:, 0, 2], 0.0)
    np.testing.assert_array_equal(P[:, 1, 0], 0.0)
    np.testing.assert_allclose(P[:, 0, :2], members[0].predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(P[:, 1, 1:], members[1].predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=1e-6)


def test_list_members_without_predict_proba_vote(iris, iris_names):
    X, _ = iris
    members = [RidgeClassifier(alpha=a).fit(X, iris_names) for a in (0.1, 100.0)]
    teacher = resolve_teacher(members)
    assert _kinds(teacher) == [VoteMember, VoteMember]
    P = predict_members(members, X)
    np.testing.assert_array_equal(P.sum(axis=2), 1.0)
    for j, est in enumerate(members):
        np.testing.assert_array_equal(teacher.classes_[P[:, j].argmax(axis=1)], est.predict(X))


def test_members_mixing_numeric_and_string_labels_are_refused(iris, iris_names):
    X, y = iris
    members = [GaussianNB().fit(X, y), GaussianNB().fit(X, iris_names)]
    # Aligning 0, 1, 2 with "setosa", ... has no meaning: the union must not silently
    # become the six strings "0", "1", "2", "setosa", "versicolor", "virginica".
    with pytest.raises(ValueError, match="cannot be aligned"):
        resolve_teacher(members)


def test_tuple_of_members_is_accepted(iris, iris_names):
    X, _ = iris
    members = tuple(
        DecisionTreeClassifier(max_depth=2, random_state=s).fit(X, iris_names) for s in range(3)
    )
    P = predict_members(members, X)
    for j, est in enumerate(members):
        np.testing.assert_allclose(P[:, j], est.predict_proba(X), atol=1e-6)


def test_pipeline_teacher_members_see_transformed_input(iris, iris_names):
    X, _ = iris
    X_shifted = X * 10.0 + 5.0
    pipe = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
    ).fit(X_shifted, iris_names)
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


def test_nested_pipeline_preprocessors_are_composed(iris, iris_names):
    X, _ = iris
    inner = make_pipeline(MinMaxScaler(), RandomForestClassifier(n_estimators=2, random_state=0))
    outer = make_pipeline(StandardScaler(), inner).fit(X, iris_names)
    teacher = resolve_teacher(outer)
    assert teacher.n_members == 2
    expected = outer[-1][0].transform(outer[0].transform(X))
    np.testing.assert_allclose(teacher.transform(X), expected)
    np.testing.assert_allclose(
        predict_members(outer, X).mean(axis=1), outer.predict_proba(X), atol=1e-5
    )


def test_frozen_estimator_is_unwrapped(iris, forest):
    X, _ = iris
    frozen = FrozenEstimator(forest)
    np.testing.assert_array_equal(predict_members(frozen, X), predict_members(forest, X))
    assert resolve_teacher(frozen).n_members == 8
    twice = FrozenEstimator(frozen)
    assert unwrap_frozen(twice) is forest
    assert resolve_teacher(twice).members[0].model is forest.estimators_[0]


def test_frozen_pipeline_teacher(iris):
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=2, random_state=0))
    pipe.fit(*iris)
    X = iris[0]
    np.testing.assert_array_equal(
        predict_members(FrozenEstimator(pipe), X), predict_members(pipe, X)
    )


def test_multi_output_ensemble_is_refused(iris):
    X, y = iris
    two_outputs = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, np.c_[y, y == 0])
    with pytest.raises(ValueError, match="2 outputs; skhydra distils single-output"):
        resolve_teacher(two_outputs)


# ---------------------------------------------------------------------------
# torch classifier members
# ---------------------------------------------------------------------------


def _torch_classifiers(n_members=3, n_features=4, n_classes=3):
    torch.manual_seed(0)
    return [
        nn.Sequential(nn.Linear(n_features, 8), nn.Tanh(), nn.Linear(8, n_classes))
        for _ in range(n_members)
    ]


def test_torch_classifier_members_give_softmax_of_logits(iris):
    X, _ = iris
    modules = _torch_classifiers()
    P = predict_members(modules, X, task="classifier")
    assert P.shape == (150, 3, 3)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    for j, module in enumerate(modules):
        with torch.no_grad():
            expected = torch.softmax(module(Xt), dim=1).numpy()
        np.testing.assert_allclose(P[:, j], expected, atol=1e-6)
    teacher = resolve_teacher(modules, task="classifier", X=X)
    assert teacher.is_classifier
    assert _kinds(teacher) == [TorchClassifierMember] * 3
    # the logits' width found at resolution gives the default classes
    assert teacher.classes_.tolist() == [0, 1, 2]


def test_torch_classifier_runs_in_eval_mode_and_restores_training(iris):
    X, _ = iris
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    module.train()
    P = predict_members([module], X, task="classifier")
    assert module.training
    with torch.no_grad():
        logits = module[0](torch.as_tensor(X, dtype=torch.float32))
    np.testing.assert_allclose(P[:, 0], torch.softmax(logits, dim=1).numpy(), atol=1e-6)


def test_torch_classifier_classes_and_wrong_width(iris):
    X, _ = iris
    modules = _torch_classifiers()
    teacher = resolve_teacher(modules, task="classifier", classes=IRIS_NAMES, X=X)
    assert teacher.classes_.tolist() == IRIS_NAMES.tolist()
    assert predict_members(teacher, X).shape == (150, 3, 3)
    # the classes do not match the first member's logits: refused at resolution
    with pytest.raises(ValueError, match=r"3 logits per row, but 2 classes were given"):
        predict_members(modules, X, task="classifier", classes=["a", "b"])
    # a later member's logits of another width: refused when it predicts
    other = [*modules, *_torch_classifiers(n_members=1, n_classes=2)]
    with pytest.raises(ValueError, match=r"logits of shape \(150, 2\); expected"):
        predict_members(other, X, task="classifier")


def test_torch_members_without_task_or_rows_are_refused(iris):
    X, _ = iris
    with pytest.raises(ValueError, match="task="):
        predict_members(_torch_classifiers(), X)
    with pytest.raises(ValueError, match="task="):
        resolve_teacher(_torch_classifiers(), X=X)
    # one forward pass finds the output width: it needs rows
    with pytest.raises(ValueError, match="needs X"):
        resolve_teacher(_torch_classifiers(), task="classifier")


def test_resolve_teacher_options_are_keyword_only(forest):
    with pytest.raises(TypeError, match="positional"):
        resolve_teacher(forest, "classifier")


# ---------------------------------------------------------------------------
# member adapters' helpers
# ---------------------------------------------------------------------------


class _TwoOutputs(nn.Module):
    """Returns a tuple (mean of shape (n,), variance of shape (n, 1))."""

    def __init__(self, n_features):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(n_features, 2)

    def forward(self, x):
        out = self.linear(x)
        return out[:, 0], nn.functional.softplus(out[:, 1:])


def test_torch_forward_stacks_tuples_and_restores_the_training_flag(iris):
    X, _ = iris
    module = _TwoOutputs(4).train()
    out = torch_forward(module, X)
    assert module.training
    assert out.dtype == np.float32 and out.shape == (150, 2)
    with torch.no_grad():
        mean, variance = module(torch.as_tensor(X, dtype=torch.float32))
    np.testing.assert_allclose(out[:, 0], mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], variance[:, 0].numpy(), rtol=1e-6)
    module.eval()
    torch_forward(module, X)
    assert not module.training


def test_supports_return_std(diabetes, gaussian_members):
    X, y = diabetes
    assert all(supports_return_std(m) for m in gaussian_members)
    assert not supports_return_std(Ridge().fit(X, y))
    assert not supports_return_std(make_pipeline(StandardScaler(), Ridge()))


# ---------------------------------------------------------------------------
# the members' mean is the ensemble's own prediction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["forest", "forest_on_names", "bagging_on_names", "extra_trees_shifted"]
)
def test_member_mean_is_the_ensemble_predict_proba(iris, request, name):
    X, _ = iris
    ensemble = request.getfixturevalue(name)
    P = predict_members(ensemble, X)
    np.testing.assert_allclose(P.mean(axis=1), ensemble.predict_proba(X), atol=1e-5)


def test_weighted_member_mean_is_the_soft_voting_predict_proba(iris, soft_voting):
    X, _ = iris
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
    X, y = iris
    fitted = model.fit(X, y)
    for teacher in (fitted, make_pipeline(StandardScaler(), fitted)):
        with pytest.raises(TypeError, match=f"(?i){word}") as info:
            predict_members(teacher, X)
        # says what to pass instead
        assert "list of independently fitted models" in str(info.value)


def test_a_list_of_boosting_models_is_a_seed_ensemble(iris):
    X, y = iris
    seeds = [
        HistGradientBoostingClassifier(max_iter=10, max_features=0.5, random_state=s).fit(X, y)
        for s in range(3)
    ]
    members = predict_members(seeds, X)
    assert members.shape == (len(X), 3, 3)
    for m, model in enumerate(seeds):
        np.testing.assert_allclose(members[:, m], model.predict_proba(X), rtol=1e-6)
    unfitted = fit_ensemble([GradientBoostingClassifier(n_estimators=3)], X, y)
    assert len(unfitted) == 1 and hasattr(unfitted[0], "estimators_")


def test_lightgbm_seed_ensemble(diabetes):
    lightgbm = pytest.importorskip("lightgbm")
    X, y = diabetes
    params = dict(n_estimators=10, subsample=0.7, subsample_freq=1, verbose=-1)
    seeds = [lightgbm.LGBMRegressor(random_state=s, **params).fit(X, y) for s in range(3)]
    teacher = resolve_teacher(seeds)
    assert teacher.task == "regressor" and not teacher.has_variance
    means, variances = predict_members(seeds, X[:5])
    np.testing.assert_allclose(means[:, 2], seeds[2].predict(X[:5]))
    assert np.isnan(variances).all()
    with pytest.raises(TypeError, match="boosting"):
        resolve_teacher(seeds[0])


@pytest.mark.parametrize(
    "model", [LogisticRegression(max_iter=500), DecisionTreeClassifier(max_depth=2)]
)
def test_single_model_is_refused(iris, model):
    X, y = iris
    model.fit(X, y)
    with pytest.raises(TypeError, match="single model"):
        predict_members(model, X)


def test_single_torch_module_is_refused(iris):
    with pytest.raises(TypeError, match="single model"):
        resolve_teacher(nn.Linear(4, 3), task="classifier", X=iris[0])


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
    with pytest.raises(ValueError, match="empty"):
        predict_members(empty, iris[0])


def test_mixed_classifier_and_regressor_list_is_refused(iris):
    X, y = iris
    members = [GaussianNB().fit(X, y), Ridge().fit(X, y)]
    with pytest.raises(ValueError, match="mixes classifiers and regressors"):
        predict_members(members, X)


def test_members_with_different_n_features_are_refused(iris):
    X, y = iris
    members = [GaussianNB().fit(X, y), GaussianNB().fit(X[:, :3], y)]
    with pytest.raises(ValueError, match=r"different numbers of features \[3, 4\]"):
        predict_members(members, X)


def test_list_mixing_torch_and_sklearn_is_refused(iris):
    X, y = iris
    members = [GaussianNB().fit(X, y), nn.Linear(4, 3)]
    with pytest.raises(TypeError, match="mixes torch modules"):
        predict_members(members, X, task="classifier")


def test_list_mixing_fitted_and_unfitted_is_refused(iris):
    X, y = iris
    members = [GaussianNB().fit(X, y), GaussianNB()]
    with pytest.raises(ValueError, match="mixes fitted and unfitted"):
        predict_members(members, X)


def test_task_mismatch_is_refused(forest, forest_r, iris):
    with pytest.raises(ValueError, match="HydraDistilledClassifier"):
        resolve_teacher(forest, task="regressor")
    with pytest.raises(ValueError, match="HydraDistilledRegressor"):
        resolve_teacher(forest_r, task="classifier")
    members = [GaussianNB().fit(*iris)]
    with pytest.raises(ValueError, match="HydraDistilledClassifier"):
        resolve_teacher(members, task="regressor")


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
    with pytest.raises(NotFittedError):
        predict_members(unfitted, iris[0])


# ---------------------------------------------------------------------------
# no mutation, Teacher passed through
# ---------------------------------------------------------------------------


def test_prediction_does_not_mutate_the_ensemble(
    iris, forest, soft_voting, bagging_on_names, hard_voting
):
    X, _ = iris
    for ensemble in (forest, soft_voting, bagging_on_names, hard_voting):
        before = joblib.hash(ensemble)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # hard voting
            teacher = resolve_teacher(ensemble)
        list(teacher.iter_predictions(X, chunk_rows=50))
        assert joblib.hash(ensemble) == before


def test_teacher_is_passed_through(iris, forest):
    X, _ = iris
    teacher = resolve_teacher(forest)
    assert isinstance(teacher, Teacher)
    assert teacher.ensemble is forest
    assert resolve_teacher(teacher) is teacher
    assert resolve_teacher(teacher, task="regressor") is teacher
    np.testing.assert_array_equal(predict_members(teacher, X), predict_members(forest, X))


# ---------------------------------------------------------------------------
# regression teachers
# ---------------------------------------------------------------------------


def test_forest_regressor_gives_means_and_nan_variances(diabetes, forest_r):
    X, _ = diabetes
    means, variances = predict_members(forest_r, X)
    assert means.shape == variances.shape == (300, 6)
    assert means.dtype == variances.dtype == np.float64
    assert np.isnan(variances).all()
    for j, tree in enumerate(forest_r.estimators_):
        np.testing.assert_allclose(means[:, j], tree.predict(X), rtol=1e-6)
    np.testing.assert_allclose(means.mean(axis=1), forest_r.predict(X), rtol=1e-6)
    teacher = resolve_teacher(forest_r)
    assert not teacher.is_classifier and teacher.task == "regressor"
    assert teacher.has_variance is False
    assert teacher.classes_ is None
    assert _kinds(teacher) == [PointMember] * 6


def test_bagging_regressor_with_feature_subsets(diabetes):
    X, y = diabetes
    bag = BaggingRegressor(
        DecisionTreeRegressor(max_depth=3), n_estimators=4, max_features=0.5, random_state=0
    ).fit(X, y)
    means, variances = predict_members(bag, X)
    for j, (est, feats) in enumerate(zip(bag.estimators_, bag.estimators_features_, strict=True)):
        np.testing.assert_allclose(means[:, j], est.predict(X[:, feats]), rtol=1e-6)
    np.testing.assert_allclose(means.mean(axis=1), bag.predict(X), rtol=1e-6)
    assert np.isnan(variances).all()


def test_voting_regressor_weights(diabetes):
    X, y = diabetes
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


def test_gaussian_members_give_their_variances(diabetes, gaussian_members):
    X, _ = diabetes
    means, variances = predict_members(gaussian_members, X)
    assert means.shape == variances.shape == (300, 4)
    assert np.isfinite(variances).all()
    assert (variances > 0).all()
    for j, member in enumerate(gaussian_members):
        mean, std = member.predict(X, return_std=True)
        np.testing.assert_allclose(means[:, j], mean, rtol=1e-6)
        np.testing.assert_allclose(variances[:, j], std**2, rtol=1e-6)
    teacher = resolve_teacher(gaussian_members)
    assert teacher.has_variance is True
    assert _kinds(teacher) == [GaussianMember] * 4


def test_frozen_pipeline_of_a_gaussian_member_gives_its_variances(diabetes):
    X, y = diabetes
    member = FrozenEstimator(make_pipeline(StandardScaler(), BayesianRidge()).fit(X, y))
    mean, std = member.predict(X, return_std=True)  # the frozen pipeline passes return_std
    assert supports_return_std(member)
    teacher = resolve_teacher([member])
    assert teacher.has_variance is True
    means, variances = predict_members(teacher, X)
    np.testing.assert_allclose(means[:, 0], mean, rtol=1e-6)
    np.testing.assert_allclose(variances[:, 0], std**2, rtol=1e-6)


def test_gaussian_and_point_members_mixed(diabetes):
    X, y = diabetes
    members = [BayesianRidge().fit(X, y), Ridge().fit(X, y)]
    means, variances = predict_members(members, X)
    assert np.isfinite(variances[:, 0]).all()
    assert np.isnan(variances[:, 1]).all()
    np.testing.assert_allclose(means[:, 1], members[1].predict(X), rtol=1e-6)
    teacher = resolve_teacher(members)
    assert teacher.has_variance is False
    assert _kinds(teacher) == [GaussianMember, PointMember]


class _MeanVariance(nn.Module):
    def __init__(self, seed, n_features=10, shift=0.0, as_tuple=False):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(n_features, 2)
        self.shift = shift
        self.as_tuple = as_tuple

    def forward(self, x):
        out = self.linear(x)
        mean, variance = out[:, 0], nn.functional.softplus(out[:, 1]) + self.shift
        if self.as_tuple:
            return mean, variance
        return torch.stack([mean, variance], dim=1)


def test_torch_regressors_with_mean_and_variance(diabetes):
    X, _ = diabetes
    modules = [_MeanVariance(0), _MeanVariance(1), _MeanVariance(2, as_tuple=True)]
    means, variances = predict_members(modules, X, task="regressor")
    assert means.shape == variances.shape == (300, 3)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    for j, module in enumerate(modules):
        with torch.no_grad():
            mean, variance = module(Xt) if module.as_tuple else module(Xt).unbind(dim=1)
        np.testing.assert_allclose(means[:, j], mean.numpy(), rtol=1e-5)
        np.testing.assert_allclose(variances[:, j], variance.numpy(), rtol=1e-5)
    teacher = resolve_teacher(modules, task="regressor", X=X)
    assert teacher.has_variance is True
    assert _kinds(teacher) == [TorchRegressorMember] * 3
    assert all(m.n_outputs == 2 for m in teacher.members)


@pytest.mark.parametrize("squeeze", [False, True], ids=["n_by_1", "n"])
def test_torch_regressors_with_mean_only(diabetes, squeeze):
    X, _ = diabetes
    torch.manual_seed(0)
    modules = [nn.Linear(10, 1), nn.Linear(10, 1)]
    if squeeze:
        modules = [nn.Sequential(m, nn.Flatten(0)) for m in modules]
    means, variances = predict_members(modules, X, task="regressor")
    with torch.no_grad():
        expected = modules[1](torch.as_tensor(X, dtype=torch.float32)).reshape(-1).numpy()
    np.testing.assert_allclose(means[:, 1], expected, rtol=1e-5)
    assert np.isnan(variances).all()
    teacher = resolve_teacher(modules, task="regressor", X=X)
    assert teacher.has_variance is False
    assert all(m.n_outputs == 1 for m in teacher.members)


def test_torch_regressor_negative_variance_is_refused(diabetes):
    X, _ = diabetes
    modules = [_MeanVariance(0), _MeanVariance(1, shift=-1e3)]
    with pytest.raises(ValueError, match="non-positive second column; it must be the variance"):
        predict_members(modules, X, task="regressor")


def test_torch_regressor_with_three_outputs_is_refused(diabetes):
    X, _ = diabetes
    with pytest.raises(ValueError, match="3 outputs per row"):
        predict_members([nn.Linear(10, 3)], X, task="regressor")


def test_torch_regressors_with_different_widths_are_refused(diabetes):
    X, _ = diabetes
    with pytest.raises(ValueError, match="1 outputs per row where the ensemble's first"):
        predict_members([_MeanVariance(0), nn.Linear(10, 1)], X, task="regressor")


# ---------------------------------------------------------------------------
# fit_ensemble and is_fitted
# ---------------------------------------------------------------------------


def test_fit_ensemble_returns_a_fitted_ensemble_untouched(iris, iris_names, forest):
    X, _ = iris
    assert fit_ensemble(forest, X, iris_names) is forest
    frozen = FrozenEstimator(forest)
    assert fit_ensemble(frozen, X, None) is frozen
    modules = _torch_classifiers()
    assert fit_ensemble(modules, X, None) is modules


def test_fit_ensemble_fits_a_clone_of_an_unfitted_ensemble(iris, iris_names):
    X, _ = iris
    unfitted = RandomForestClassifier(n_estimators=3, random_state=0)
    fitted = fit_ensemble(unfitted, X, iris_names)
    assert fitted is not unfitted
    assert not hasattr(unfitted, "estimators_")
    assert len(fitted.estimators_) == 3
    assert predict_members(fitted, X).shape == (150, 3, 3)


def test_fit_ensemble_fits_an_unfitted_list(iris, iris_names):
    X, _ = iris
    members = [DecisionTreeClassifier(max_depth=d, random_state=0) for d in (1, 2)]
    fitted = fit_ensemble(members, X, iris_names)
    assert isinstance(fitted, list)
    assert all(f is not m for f, m in zip(fitted, members, strict=True))
    assert all(not hasattr(m, "classes_") for m in members)
    assert [f.get_depth() for f in fitted] == [1, 2]


def test_fit_ensemble_passes_sample_weight(iris, iris_names):
    X, _ = iris
    weight = np.where(iris_names == "setosa", 0.0, 1.0)
    fitted = fit_ensemble(DecisionTreeClassifier(random_state=0), X, iris_names, weight)
    reference = DecisionTreeClassifier(random_state=0).fit(X, iris_names, sample_weight=weight)
    unweighted = DecisionTreeClassifier(random_state=0).fit(X, iris_names)
    np.testing.assert_array_equal(fitted.predict_proba(X), reference.predict_proba(X))
    assert not np.array_equal(fitted.predict_proba(X), unweighted.predict_proba(X))


def test_fit_ensemble_needs_y_for_an_unfitted_ensemble(iris):
    with pytest.raises(ValueError, match="requires y to be passed"):
        fit_ensemble(RandomForestClassifier(), iris[0], None)


def test_fit_ensemble_refuses_an_empty_list(iris):
    with pytest.raises(ValueError, match="empty"):
        fit_ensemble([], *iris)


def test_unfitted_boosting_is_refused_by_fit_ensemble(iris):
    X, y = iris
    with pytest.raises(TypeError, match="cannot be distilled"):
        fit_ensemble(GradientBoostingClassifier(), X, y)


def test_is_fitted(iris, forest):
    assert is_fitted(forest)
    assert not is_fitted(RandomForestClassifier())
    assert is_fitted(FrozenEstimator(RandomForestClassifier()))  # frozen means fitted
    assert is_fitted(nn.Linear(4, 3))
    assert is_fitted([GaussianNB().fit(*iris)]) and not is_fitted((GaussianNB(),))
    with pytest.raises(ValueError, match="mixes fitted and unfitted"):
        is_fitted([forest, RandomForestClassifier()])


def test_shared_preprocessing_of_a_list_of_pipelines(iris):
    X, y = iris
    same = [make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(X, y) for c in (0.1, 1.0)]
    front = shared_preprocessing(same)
    np.testing.assert_allclose(front.transform(X), same[1][:-1].transform(X))
    teacher = resolve_teacher(same)
    assert teacher.preprocessor is not None
    assert all(isinstance(m.model, LogisticRegression) for m in teacher.members)
    np.testing.assert_allclose(
        teacher.predict_members(teacher.transform(X))[:, 1], same[1].predict_proba(X), rtol=1e-6
    )
    other = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[::2], y[::2])
    assert shared_preprocessing([same[0], other]) is None  # scaled by other rows
    assert shared_preprocessing([same[0][-1], same[1][-1]]) is None  # not Pipelines
