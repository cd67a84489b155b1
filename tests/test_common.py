"""scikit-learn citizenship: the estimator checks, searches and cross-validation,
epistemic_fidelity_score as a scorer, pipelines and pandas input."""

import gc
import multiprocessing

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import TINY
from scipy.stats import loguniform
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor, predict_uncertainty
from skhydra.metrics import epistemic_fidelity_score

# ---------------------------------------------------------------------------
# scikit-learn's own estimator checks, on both estimators with ensemble=None
# ---------------------------------------------------------------------------

# Small students keep the ~100 fits of the checks fast; ensemble stays None.
# max_epochs counts both phases: 10 epochs of phase 1, then 15 of phase 2.
SMALL = dict(
    body_layer_sizes=(32,),
    phase1_epochs=10,
    max_epochs=25,
    n_iter_no_change=5,
    batch_size=32,
    random_state=0,
)

ESTIMATORS = [HydraDistilledClassifier(**SMALL), HydraDistilledRegressor(**SMALL)]

_WEIGHTS_REASON = (
    "A weight of 2 and a duplicated row give the same loss in expectation, but not the "
    "same mini-batches, validation split and augmentation draws, so a stochastically "
    "trained network cannot give identical predictions."
)
EXPECTED_FAILED = {
    name: {"check_sample_weight_equivalence_on_dense_data": _WEIGHTS_REASON}
    for name in ("HydraDistilledClassifier", "HydraDistilledRegressor")
}


def expected_failed_checks(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------
# local constants and fixtures
# ---------------------------------------------------------------------------

# Enough budget to imitate the teacher (agreement checks).
IMITATE = dict(
    body_layer_sizes=(32,), phase1_epochs=10, max_epochs=30, temperature=1.0, random_state=0
)
# Plumbing only (searches run ~100 fits): the cheapest student that trains both phases.
PLUMBING = dict(TINY, phase1_epochs=1, max_epochs=2, batch_size=128)
# Enough for five heads to pick up the ensemble's disagreement (fidelity scorer).
FIDELITY = dict(TINY, lr=1e-2, phase1_epochs=5, max_epochs=15)

# The search spaces: body, heads, number of heads and learning rate.
GRID = [
    {"body_layer_sizes": [(4,), (8,)], "head_layer_sizes": [(4,)], "head_rank": [2]},
    {"n_heads": [1, 3], "lr": [1e-2]},
]
DISTRIBUTIONS = {
    "body_layer_sizes": [(4,), (8,), (8, 4)],
    "head_layer_sizes": [(), (4,)],
    "n_heads": [1, 2, 3],
    "lr": loguniform(1e-3, 1e-1),
}

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class CountingForest(RandomForestClassifier):
    """A random forest that counts calls to ``fit`` across all instances."""

    fit_calls = 0

    def fit(self, X, y, sample_weight=None):
        type(self).fit_calls += 1
        return super().fit(X, y, sample_weight=sample_weight)


class CountingForestRegressor(RandomForestRegressor):
    """A random forest regressor that counts calls to ``fit`` across all instances."""

    fit_calls = 0

    def fit(self, X, y, sample_weight=None):
        type(self).fit_calls += 1
        return super().fit(X, y, sample_weight=sample_weight)


@pytest.fixture(scope="module")
def counting_forest(iris):
    return CountingForest(n_estimators=5, random_state=0).fit(*iris)


@pytest.fixture(scope="module")
def counting_forest_r(diabetes):
    return CountingForestRegressor(n_estimators=5, random_state=0).fit(*diabetes)


@pytest.fixture
def forked_workers():
    """Process workers forked from this one, for the tests with ``n_jobs=2``.

    Estimators still travel to the workers and back pickled, as with joblib's
    default loky backend, but a forked worker starts in milliseconds where a
    loky worker spends seconds importing torch again. Freezing the objects
    that exist (as the gc docs advise before forking) also makes the full
    collection that joblib runs before each fork quick.
    """
    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover
        yield
        return
    context = multiprocessing.get_context("fork")
    gc.freeze()
    try:
        with joblib.parallel_config(backend="multiprocessing", context=context):
            yield
    finally:
        gc.unfreeze()


@pytest.fixture(scope="module")
def noisy_half():
    """Regression data noisy only where x0 > 0, and a 5-tree forest fitted on it.

    The trees disagree where y is noisy and agree elsewhere: a spread that five
    tiny heads learn on every fold, whatever the seeds (the diabetes forests'
    spread is too faint for that: its sign on a fold depends on the seeds).
    """
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(200, 2))
    y = np.sin(X[:, 0]) + rng.normal(size=len(X)) * (X[:, 0] > 0)
    forest = RandomForestRegressor(n_estimators=5, min_samples_leaf=5, random_state=0)
    return X, y, forest.fit(X, y)


@pytest.fixture(scope="module")
def mixed():
    """A raw DataFrame (a float, a string category, an int) with its own index, its
    labels, and a fitted Pipeline teacher that one-hot encodes the category."""
    rng = np.random.default_rng(0)
    n = 300
    columns = {
        "size": rng.normal(size=n),
        "city": rng.choice(["paris", "rome", "oslo"], size=n),
        "age": rng.integers(18, 80, size=n),
    }
    frame = pd.DataFrame(columns, index=pd.RangeIndex(5000, 5000 + n))
    y = ((frame["size"] > 0) ^ (frame["city"] == "rome")).astype(int).to_numpy()
    teacher = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        RandomForestClassifier(n_estimators=6, random_state=0),
    ).fit(frame, y)
    return frame, y, teacher


@pytest.fixture(scope="module")
def mixed_hydra(mixed):
    frame, _, teacher = mixed
    return HydraDistilledClassifier(teacher, **IMITATE).fit(frame)


@pytest.fixture(scope="module")
def iris_frame(iris):
    """Iris as a DataFrame with named columns and a named string index."""
    X, y = iris
    index = pd.Index([f"row{i}" for i in range(len(X))], name="id")
    return pd.DataFrame(X, columns=IRIS_COLUMNS, index=index), y


@pytest.fixture(scope="module")
def frame_hydra(iris_frame):
    frame, y = iris_frame
    teacher = RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, y)
    return HydraDistilledClassifier(teacher, **TINY).fit(frame)


def _task(task, iris, diabetes, classifier, regressor):
    """(estimator class, X, y, ensemble) of one task."""
    if task == "classifier":
        return HydraDistilledClassifier, *iris, classifier
    return HydraDistilledRegressor, *diabetes, regressor


# ---------------------------------------------------------------------------
# 1. searches and cross-validation never refit or mutate a fitted ensemble
# ---------------------------------------------------------------------------


def _snapshot(forest):
    return (
        type(forest).fit_calls,
        forest.estimators_,
        list(forest.estimators_),
        [tree.tree_.node_count for tree in forest.estimators_],
        joblib.hash(forest),
    )


def _assert_untouched(forest, snapshot):
    calls, estimators, trees, node_counts, digest = snapshot
    assert type(forest).fit_calls == calls, "the fitted ensemble was refit"
    assert forest.estimators_ is estimators
    assert all(a is b for a, b in zip(forest.estimators_, trees, strict=True))
    assert [tree.tree_.node_count for tree in forest.estimators_] == node_counts
    assert joblib.hash(forest) == digest, "the fitted ensemble was mutated"


def _run(kind, estimator, X, y, n_jobs):
    """Run one search or cross-validation; return (fitted result, fitted estimators)."""
    if kind == "grid":
        search = GridSearchCV(estimator, GRID, cv=2, n_jobs=n_jobs, error_score="raise")
        search.fit(X, y)
        return search, [search.best_estimator_]
    if kind == "random":
        search = RandomizedSearchCV(
            estimator,
            DISTRIBUTIONS,
            n_iter=4,
            cv=2,
            n_jobs=n_jobs,
            random_state=0,
            error_score="raise",
        )
        search.fit(X, y)
        return search, [search.best_estimator_]
    result = cross_validate(
        estimator, X, y, cv=3, n_jobs=n_jobs, return_estimator=True, error_score="raise"
    )
    return result, list(result["estimator"])


@pytest.mark.parametrize("frozen", [False, True], ids=["bare", "frozen"])
@pytest.mark.parametrize("kind", ["grid", "random", "cross_validate"])
@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_fitted_ensemble_is_shared_in_process(
    task, kind, frozen, iris, diabetes, counting_forest, counting_forest_r
):
    Est, X, y, teacher = _task(task, iris, diabetes, counting_forest, counting_forest_r)
    ensemble = FrozenEstimator(teacher) if frozen else teacher
    snapshot = _snapshot(teacher)
    result, fitted = _run(kind, Est(ensemble, **PLUMBING), X, y, n_jobs=1)
    _assert_untouched(teacher, snapshot)
    # In-process clones share the very same ensemble object.
    assert all(est.ensemble_ is ensemble for est in fitted)
    assert all(est.ensemble is ensemble for est in fitted)
    assert fitted[0].predict(X[:5]).shape == (5,)
    if kind != "cross_validate":
        assert len(result.cv_results_["params"]) == 4


@pytest.mark.parametrize("frozen", [False, True], ids=["bare", "frozen"])
@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_fitted_ensemble_is_copied_not_refit_by_workers(
    task, frozen, iris, diabetes, counting_forest, counting_forest_r, forked_workers
):
    Est, X, y, teacher = _task(task, iris, diabetes, counting_forest, counting_forest_r)
    ensemble = FrozenEstimator(teacher) if frozen else teacher
    digest, ensemble_digest = joblib.hash(teacher), joblib.hash(ensemble)
    result, fitted = _run("cross_validate", Est(ensemble, **PLUMBING), X, y, n_jobs=2)
    assert len(fitted) == 3
    # Each fold's student got a copy of the ensemble, bit for bit: not refit on its fold.
    assert all(est.ensemble_ is not ensemble for est in fitted)
    assert all(joblib.hash(est.ensemble_) == ensemble_digest for est in fitted)
    assert joblib.hash(teacher) == digest
    search, (best,) = _run("grid", Est(ensemble, **PLUMBING), X, y, n_jobs=2)
    assert joblib.hash(teacher) == digest
    # The refit of the best candidate runs in this process and shares the ensemble.
    assert best.ensemble_ is ensemble
    assert np.all(np.isfinite(best.predict(X)))
    assert np.isfinite(search.best_score_)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_unfitted_ensemble_is_fitted_per_fold(iris, n_jobs, forked_workers):
    X, y = iris
    unfitted = CountingForest(n_estimators=3, random_state=0)
    calls = CountingForest.fit_calls
    result = cross_validate(
        HydraDistilledClassifier(unfitted, **PLUMBING),
        X,
        y,
        cv=3,
        n_jobs=n_jobs,
        return_estimator=True,
        error_score="raise",
    )
    ensembles = [est.ensemble_ for est in result["estimator"]]
    assert not hasattr(unfitted, "estimators_"), "the original ensemble was fitted"
    assert len({id(e) for e in ensembles}) == 3 and all(e is not unfitted for e in ensembles)
    assert all(len(e.estimators_) == 3 for e in ensembles)
    # Different folds give different trees: each fold fitted its own clone.
    assert len({joblib.hash(e) for e in ensembles}) == 3
    # One fit per fold, here or in the workers.
    assert CountingForest.fit_calls == calls + (3 if n_jobs == 1 else 0)


# ---------------------------------------------------------------------------
# 2. epistemic_fidelity_score as a scorer
# ---------------------------------------------------------------------------


def _split_scores(search, key="score"):
    n_splits = search.n_splits_
    return np.array([search.cv_results_[f"split{i}_test_{key}"] for i in range(n_splits)]).T


@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_fidelity_scorer_in_grid_search(task, iris, forest, noisy_half):
    X_r, y_r, forest_r = noisy_half
    Est, X, y, teacher = _task(task, iris, (X_r, y_r), forest, forest_r)
    # A little more training than TINY, so that five heads learn the members' spread.
    search = GridSearchCV(
        Est(teacher, **FIDELITY),
        {"n_heads": [1, 5]},
        scoring=epistemic_fidelity_score,
        cv=2,
        error_score="raise",
    ).fit(X, y)
    scores = _split_scores(search)
    assert np.all(np.isfinite(scores)) and np.all((scores >= -1) & (scores <= 1))
    heads = [p["n_heads"] for p in search.cv_results_["params"]]
    # One head carries no epistemic uncertainty: exactly 0.0 on every split.
    np.testing.assert_array_equal(scores[heads.index(1)], 0.0)
    # Five heads do carry a ranking of the rows by disagreement.
    assert np.all(scores[heads.index(5)] != 0)
    if task == "regressor":
        # The trees' spread is clear enough to be tracked on every fold (the iris
        # forest agrees on most rows, so its ranking is mostly ties).
        assert np.all(scores[heads.index(5)] > 0)
        assert search.best_params_ == {"n_heads": 5}
    direct = epistemic_fidelity_score(search.best_estimator_, X)
    assert epistemic_fidelity_score(search, X) == direct
    assert -1 <= direct <= 1


def test_fidelity_scorer_in_multimetric_search(iris, forest):
    X, y = iris
    search = GridSearchCV(
        HydraDistilledClassifier(forest, **TINY),
        {"n_heads": [1, 5], "lr": [1e-4, 1e-2]},
        scoring={"accuracy": "accuracy", "fidelity": epistemic_fidelity_score},
        refit="accuracy",
        cv=2,
        error_score="raise",
    ).fit(X, y)
    results = search.cv_results_
    fidelity = np.asarray(results["mean_test_fidelity"])
    assert np.all((fidelity >= -1) & (fidelity <= 1))
    heads = np.array([p["n_heads"] for p in results["params"]])
    np.testing.assert_array_equal(fidelity[heads == 1], 0.0)
    assert search.best_index_ == int(np.argmax(results["mean_test_accuracy"]))
    assert results["rank_test_accuracy"][search.best_index_] == 1
    assert search.best_score_ == results["mean_test_accuracy"][search.best_index_]
    assert 0 <= search.score(X, y) <= 1  # scores with the refit metric, accuracy


def test_fidelity_scorer_on_pipeline(iris):
    X, y = iris
    scaler = StandardScaler().fit(X)
    teacher = RandomForestClassifier(n_estimators=5, random_state=0).fit(scaler.transform(X), y)
    pipe = make_pipeline(StandardScaler(), HydraDistilledClassifier(teacher, **TINY))
    search = GridSearchCV(
        pipe,
        {"hydradistilledclassifier__n_heads": [1, 5]},
        scoring=epistemic_fidelity_score,
        cv=2,
        error_score="raise",
    ).fit(X, y)
    scores = _split_scores(search)
    assert np.all((scores >= -1) & (scores <= 1))
    np.testing.assert_array_equal(scores[0], 0.0)
    best = search.best_estimator_
    # The teacher is scored on the pipeline's transformed rows, like the student.
    expected = epistemic_fidelity_score(best[-1], best[:-1].transform(X))
    assert epistemic_fidelity_score(best, X) == expected != 0.0


def test_fidelity_scorer_refuses_stripped_student(iris, hydra):
    with pytest.raises(ValueError, match="stripped of its teacher"):
        epistemic_fidelity_score(hydra.without_teacher(), iris[0])
    with pytest.raises(TypeError, match="needs a fitted Hydra estimator"):
        epistemic_fidelity_score(hydra.ensemble_, iris[0])


def test_fidelity_scorer_refuses_pipeline_without_hydra(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3)).fit(X, y)
    with pytest.raises(TypeError, match="needs a fitted Hydra estimator"):
        epistemic_fidelity_score(pipe, X)


# ---------------------------------------------------------------------------
# 3. pipelines
# ---------------------------------------------------------------------------


def test_student_behind_a_scaler(iris):
    X, y = iris
    scaler = StandardScaler().fit(X)
    X_scaled = scaler.transform(X)
    teacher = RandomForestClassifier(n_estimators=8, random_state=0).fit(X_scaled, y)
    pipe = make_pipeline(StandardScaler(), HydraDistilledClassifier(teacher, **IMITATE)).fit(X)
    assert np.mean(pipe.predict(X) == teacher.predict(X_scaled)) >= 0.9
    step = pipe[-1]
    np.testing.assert_array_equal(pipe.predict_proba(X), step.predict_proba(X_scaled))
    pd.testing.assert_frame_equal(
        predict_uncertainty(pipe, X), step.predict_uncertainty(pipe[:-1].transform(X))
    )


def test_pipeline_teacher_on_raw_mixed_dataframe(mixed, mixed_hydra):
    frame, y, teacher = mixed
    assert list(mixed_hydra.feature_names_in_) == ["size", "city", "age"]
    assert np.mean(mixed_hydra.predict(frame) == teacher.predict(frame)) >= 0.9
    student = predict_uncertainty(mixed_hydra, frame)
    assert list(student.index) == list(frame.index)
    # The teacher's decomposition comes from the same call, on the same raw rows.
    teacher_u = predict_uncertainty(teacher, frame)
    assert list(teacher_u.index) == list(frame.index)
    assert np.all(np.isfinite(student.to_numpy())) and np.all(student["epistemic"] >= 0)


def test_predict_uncertainty_on_searches(iris, diabetes, forest, forest_r):
    X, y = iris
    search = GridSearchCV(
        make_pipeline(StandardScaler(), HydraDistilledClassifier(forest, **TINY)),
        {"hydradistilledclassifier__n_heads": [2, 3]},
        cv=2,
        error_score="raise",
    ).fit(X, y)
    pd.testing.assert_frame_equal(
        predict_uncertainty(search, X), predict_uncertainty(search.best_estimator_, X)
    )
    Xd, yd = diabetes
    search_r = RandomizedSearchCV(
        HydraDistilledRegressor(forest_r, **TINY),
        {"n_heads": [2, 3], "lr": loguniform(1e-3, 1e-2)},
        n_iter=2,
        cv=2,
        random_state=0,
        error_score="raise",
    ).fit(Xd, yd)
    u = predict_uncertainty(search_r, Xd)
    pd.testing.assert_frame_equal(u, search_r.best_estimator_.predict_uncertainty(Xd))
    np.testing.assert_allclose(u["total"], u["aleatoric"] + u["epistemic"])


def test_pipeline_predict_return_std(diabetes):
    X, y = diabetes
    scaler = StandardScaler().fit(X)
    teacher = RandomForestRegressor(n_estimators=4, random_state=0).fit(scaler.transform(X), y)
    pipe = make_pipeline(StandardScaler(), HydraDistilledRegressor(teacher, **TINY)).fit(X, y)
    mean, std = pipe.predict(X, return_std=True)
    step_mean, step_std = pipe[-1].predict(pipe[:-1].transform(X), return_std=True)
    np.testing.assert_array_equal(mean, step_mean)
    np.testing.assert_array_equal(std, step_std)
    assert mean.shape == std.shape == (len(X),) and np.all(std > 0)
    np.testing.assert_array_equal(pipe.predict(X), mean)


# ---------------------------------------------------------------------------
# 4. pandas
# ---------------------------------------------------------------------------


def test_dataframe_sets_feature_names(iris_frame, frame_hydra, hydra):
    frame, _ = iris_frame
    np.testing.assert_array_equal(frame_hydra.feature_names_in_, frame.columns)
    assert frame_hydra.n_features_in_ == 4
    assert not hasattr(hydra, "feature_names_in_")  # fitted on an array


def test_reordered_or_renamed_columns_are_refused(iris_frame, frame_hydra, mixed, mixed_hydra):
    frame, _ = iris_frame
    with pytest.raises(ValueError, match="feature names") as reordered:
        frame_hydra.predict(frame[frame.columns[::-1]])
    assert "same order" in str(reordered.value)
    with pytest.raises(ValueError, match="feature names") as renamed:
        frame_hydra.predict_uncertainty(frame.rename(columns={"sepal_length": "sl"}))
    assert "sl" in str(renamed.value)
    raw, _, _ = mixed
    with pytest.raises(ValueError, match="feature names"):
        mixed_hydra.predict(raw[["age", "city", "size"]])


def test_uncertainty_keeps_the_index(iris_frame, frame_hydra, diabetes, forest_r):
    frame, _ = iris_frame
    u = frame_hydra.predict_uncertainty(frame.iloc[::-1])
    assert u.index.equals(frame.index[::-1]) and u.index.name == "id"
    pd.testing.assert_frame_equal(predict_uncertainty(frame_hydra, frame.iloc[::-1]), u)
    X, y = diabetes
    frame_r = pd.DataFrame(X, index=pd.RangeIndex(1000, 1000 + len(X), 1)).add_prefix("x")
    model = HydraDistilledRegressor(forest_r, **TINY).fit(frame_r, y)
    assert list(model.predict_uncertainty(frame_r).index) == list(frame_r.index)


def test_pandas_output_scaler_in_front(iris_frame):
    frame, y = iris_frame
    teacher = RandomForestClassifier(n_estimators=5, random_state=0).fit(
        StandardScaler().fit_transform(frame), y
    )
    pipe = make_pipeline(
        StandardScaler().set_output(transform="pandas"),
        HydraDistilledClassifier(teacher, **TINY),
    ).fit(frame)
    step = pipe[-1]
    np.testing.assert_array_equal(step.feature_names_in_, frame.columns)
    transformed = pipe[:-1].transform(frame)
    assert isinstance(transformed, pd.DataFrame)
    assert step.predict_uncertainty(transformed).index.equals(frame.index)
    u = predict_uncertainty(pipe, frame)
    assert u.index.equals(frame.index)
    np.testing.assert_array_equal(pipe.predict(frame), step.predict(transformed))
