"""Hydra students inside scikit-learn workflows: searches, scorers, pipelines, pandas,
persistence, bad input, and property-based checks of the prediction shapes."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor, predict_uncertainty
from skhydra.metrics import epistemic_fidelity_score

# Tiny students: these tests check plumbing, not distillation quality.
TINY = dict(body_layer_sizes=(8,), phase1_epochs=2, max_epochs=3, batch_size=128, random_state=0)
TINY_C = dict(TINY, temperature=1.0)
# Enough budget to imitate the teacher (agreement checks).
FIT_C = dict(
    body_layer_sizes=(32,), phase1_epochs=10, max_epochs=20, temperature=1.0, random_state=0
)

# Enough for five heads to pick up the ensemble's disagreement (fidelity scorer).
FIDELITY = dict(lr=1e-2, phase1_epochs=5, max_epochs=10, batch_size=32)

# The search spaces of the issue: body, heads, number of heads and learning rate.
GRID = [
    {"body_layer_sizes": [(4,), (8,)], "head_layer_sizes": [(4,)]},
    {"n_heads": [1, 3], "lr": [1e-2]},
]
DISTRIBUTIONS = {
    "body_layer_sizes": [(4,), (8,), (8, 4)],
    "head_layer_sizes": [(), (4,)],
    "n_heads": [1, 2, 3],
    "lr": loguniform(1e-3, 1e-1),
}


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


# ---------------------------------------------------------------------------
# fixtures: small data and ensembles, fitted once per module
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X[:150], y[:150]


@pytest.fixture(scope="module")
def forest(iris):
    return CountingForest(n_estimators=5, random_state=0).fit(*iris)


@pytest.fixture(scope="module")
def forest_r(diabetes):
    return CountingForestRegressor(n_estimators=5, random_state=0).fit(*diabetes)


@pytest.fixture(scope="module")
def hydra(iris, forest):
    return HydraDistilledClassifier(forest, **TINY_C).fit(iris[0])


@pytest.fixture(scope="module")
def hydra_r(diabetes, forest_r):
    return HydraDistilledRegressor(forest_r, **TINY).fit(*diabetes)


@pytest.fixture(scope="module")
def mixed():
    """A raw DataFrame of numbers and a string category, and a fitted Pipeline teacher."""
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "city": rng.choice(["paris", "rome", "oslo"], size=n),
            "age": rng.integers(18, 80, size=n),
        },
        index=pd.RangeIndex(5000, 5000 + n),
    )
    y = ((frame["size"] > 0) ^ (frame["city"] == "rome")).astype(int).to_numpy()
    teacher = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        RandomForestClassifier(n_estimators=6, random_state=0),
    ).fit(frame, y)
    return frame, y, teacher


@pytest.fixture(scope="module")
def mixed_hydra(mixed):
    frame, _, teacher = mixed
    return HydraDistilledClassifier(teacher, **FIT_C).fit(frame)


def _task(name, iris, diabetes, forest, forest_r):
    """(estimator class, kwargs, X, y, fitted forest) of one task."""
    if name == "classifier":
        return HydraDistilledClassifier, TINY_C, *iris, forest
    return HydraDistilledRegressor, TINY, *diabetes, forest_r


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


# ---------------------------------------------------------------------------
# 1. searches and cross-validation never refit or mutate a fitted ensemble
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("frozen", [False, True], ids=["bare", "frozen"])
@pytest.mark.parametrize("kind", ["grid", "random", "cross_validate"])
@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_fitted_ensemble_is_shared_in_process(task, kind, frozen, iris, diabetes, forest, forest_r):
    Est, params, X, y, teacher = _task(task, iris, diabetes, forest, forest_r)
    ensemble = FrozenEstimator(teacher) if frozen else teacher
    snapshot = _snapshot(teacher)
    result, fitted = _run(kind, Est(ensemble, **params), X, y, n_jobs=1)
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
    task, frozen, iris, diabetes, forest, forest_r
):
    Est, params, X, y, teacher = _task(task, iris, diabetes, forest, forest_r)
    ensemble = FrozenEstimator(teacher) if frozen else teacher
    digest, ensemble_digest = joblib.hash(teacher), joblib.hash(ensemble)
    result, fitted = _run("cross_validate", Est(ensemble, **params), X, y, n_jobs=2)
    assert len(fitted) == 3
    # Each fold's student got a copy of the ensemble, bit for bit: not refit on its fold.
    assert all(joblib.hash(est.ensemble_) == ensemble_digest for est in fitted)
    assert joblib.hash(teacher) == digest
    search, (best,) = _run("grid", Est(ensemble, **params), X, y, n_jobs=2)
    assert joblib.hash(teacher) == digest
    # The refit of the best candidate runs in this process and shares the ensemble.
    assert best.ensemble_ is ensemble
    assert np.all(np.isfinite(best.predict(X)))
    assert np.isfinite(search.best_score_)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_unfitted_ensemble_is_fitted_per_fold(iris, n_jobs):
    X, y = iris
    unfitted = CountingForest(n_estimators=3, random_state=0)
    calls = CountingForest.fit_calls
    result = cross_validate(
        HydraDistilledClassifier(unfitted, **TINY_C),
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
    if n_jobs == 1:
        assert CountingForest.fit_calls == calls + 3


# ---------------------------------------------------------------------------
# 2. epistemic_fidelity_score as a scorer
# ---------------------------------------------------------------------------


def _split_scores(search, key="score"):
    n_splits = search.n_splits_
    return np.array([search.cv_results_[f"split{i}_test_{key}"] for i in range(n_splits)]).T


@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_fidelity_scorer_in_grid_search(task, iris, diabetes, forest, forest_r):
    Est, params, X, y, teacher = _task(task, iris, diabetes, forest, forest_r)
    # A little more training than TINY, so that five heads learn the members' spread.
    search = GridSearchCV(
        Est(teacher, **{**params, **FIDELITY}),
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
        # The trees' spread on diabetes is clear enough to be tracked on every fold
        # (the iris forest agrees on most rows, so its ranking is mostly ties).
        assert np.all(scores[heads.index(5)] > 0)
        assert search.best_params_ == {"n_heads": 5}
    direct = epistemic_fidelity_score(search.best_estimator_, X)
    assert epistemic_fidelity_score(search, X) == direct
    assert -1 <= direct <= 1


def test_fidelity_scorer_in_multimetric_search(iris, forest):
    X, y = iris
    search = GridSearchCV(
        HydraDistilledClassifier(forest, **TINY_C),
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
    pipe = make_pipeline(StandardScaler(), HydraDistilledClassifier(teacher, **TINY_C))
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
    pipe = make_pipeline(StandardScaler(), HydraDistilledClassifier(teacher, **FIT_C)).fit(X)
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
        make_pipeline(StandardScaler(), HydraDistilledClassifier(forest, **TINY_C)),
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


def test_pipeline_predict_return_std(diabetes, forest_r):
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


@pytest.fixture(scope="module")
def iris_frame(iris):
    X, y = iris
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    index = pd.Index([f"row{i}" for i in range(len(X))], name="id")
    return pd.DataFrame(X, columns=columns, index=index), y


@pytest.fixture(scope="module")
def frame_hydra(iris_frame):
    frame, y = iris_frame
    teacher = RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, y)
    return HydraDistilledClassifier(teacher, **TINY_C).fit(frame)


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
        HydraDistilledClassifier(teacher, **TINY_C),
    ).fit(frame)
    step = pipe[-1]
    np.testing.assert_array_equal(step.feature_names_in_, frame.columns)
    transformed = pipe[:-1].transform(frame)
    assert isinstance(transformed, pd.DataFrame)
    assert step.predict_uncertainty(transformed).index.equals(frame.index)
    u = predict_uncertainty(pipe, frame)
    assert u.index.equals(frame.index)
    np.testing.assert_array_equal(pipe.predict(frame), step.predict(transformed))


# ---------------------------------------------------------------------------
# 5. persistence
# ---------------------------------------------------------------------------


def _roundtrip(model, how, tmp_path):
    if how == "pickle":
        return pickle.loads(pickle.dumps(model))
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    return joblib.load(path)


@pytest.mark.parametrize("how", ["pickle", "joblib"])
def test_classifier_roundtrip(how, tmp_path, iris, hydra):
    X, _ = iris
    loaded = _roundtrip(hydra, how, tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(X), hydra.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), hydra.predict(X))
    pd.testing.assert_frame_equal(loaded.predict_uncertainty(X), hydra.predict_uncertainty(X))


@pytest.mark.parametrize("how", ["pickle", "joblib"])
def test_regressor_roundtrip(how, tmp_path, diabetes, hydra_r):
    X, _ = diabetes
    loaded = _roundtrip(hydra_r, how, tmp_path)
    for got, expected in zip(
        loaded.predict(X, return_std=True), hydra_r.predict(X, return_std=True), strict=True
    ):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_without_teacher_is_smaller_and_predicts_the_same(task, iris, diabetes, hydra, hydra_r):
    model, X = (hydra, iris[0]) if task == "classifier" else (hydra_r, diabetes[0])
    student = model.without_teacher()
    assert student.ensemble_ is None and student.ensemble is None
    assert model.ensemble_ is not None  # the original keeps its teacher
    full, stripped = pickle.dumps(model), pickle.dumps(student)
    assert len(stripped) < len(full)
    served = pickle.loads(stripped)
    if task == "classifier":
        np.testing.assert_array_equal(served.predict_proba(X), model.predict_proba(X))
    else:
        for got, expected in zip(
            served.predict(X, return_std=True), model.predict(X, return_std=True), strict=True
        ):
            np.testing.assert_array_equal(got, expected)
    pd.testing.assert_frame_equal(served.predict_uncertainty(X), model.predict_uncertainty(X))


def test_without_teacher_keeps_pipeline_preprocessing(tmp_path, mixed, mixed_hydra):
    frame, _, _ = mixed
    path = tmp_path / "student.joblib"
    joblib.dump(mixed_hydra.without_teacher(), path)
    served = joblib.load(path)
    assert served.ensemble_ is None
    np.testing.assert_array_equal(served.predict(frame), mixed_hydra.predict(frame))
    pd.testing.assert_frame_equal(
        served.predict_uncertainty(frame), mixed_hydra.predict_uncertainty(frame)
    )
    with pytest.raises(ValueError, match="feature names"):
        served.predict(frame[["age", "city", "size"]])


def test_skorch_params_save_and_load(tmp_path, iris, forest, hydra):
    X, _ = iris
    other = clone(hydra).set_params(random_state=1).fit(X)
    Xf = X.astype(np.float32)
    before = other.net_.forward(Xf).numpy()
    assert np.abs(before - hydra.net_.forward(Xf).numpy()).max() > 1e-4
    hydra.net_.save_params(f_params=tmp_path / "w.pt")
    other.net_.load_params(f_params=tmp_path / "w.pt")
    np.testing.assert_array_equal(other.net_.forward(Xf).numpy(), hydra.net_.forward(Xf).numpy())
    np.testing.assert_array_equal(other.predict_proba(X), hydra.predict_proba(X))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback of 'auto'")
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_device_is_recorded(device, iris, forest):
    model = HydraDistilledClassifier(forest, device=device, **TINY_C).fit(iris[0])
    assert model.device_ == "cpu"
    assert model.net_.device == "cpu"
    assert all(p.device.type == "cpu" for p in model.net_.module_.parameters())


# ---------------------------------------------------------------------------
# 6. bad input
# ---------------------------------------------------------------------------


def _with(X, i, j, value):
    X = X.astype(np.float64, copy=True)
    X[i, j] = value
    return X


def _bad_cases():
    """(id, action(ctx), exception type, message pattern)."""
    clf = HydraDistilledClassifier
    reg = HydraDistilledRegressor
    invalid = InvalidParameterError
    return [
        ("nan_fit", lambda c: clf(c.forest, **TINY_C).fit(_with(c.X, 0, 0, np.nan)),
         ValueError, "Input X contains NaN"),
        ("inf_fit", lambda c: clf(c.forest, **TINY_C).fit(_with(c.X, 3, 1, np.inf)),
         ValueError, "Input X contains infinity"),
        ("nan_predict", lambda c: c.hydra.predict(_with(c.X, 0, 0, np.nan)),
         ValueError, "Input X contains NaN"),
        ("inf_predict", lambda c: c.hydra.predict_proba(_with(c.X, 0, 0, -np.inf)),
         ValueError, "Input X contains infinity"),
        ("nan_regressor_predict", lambda c: c.hydra_r.predict(_with(c.Xd, 0, 0, np.nan)),
         ValueError, "Input X contains NaN"),
        ("nan_through_pipeline_teacher",
         lambda c: c.mixed_hydra.predict(c.frame.assign(size=np.nan)),
         ValueError, "preprocessing must produce finite numbers"),
        ("too_few_features_predict", lambda c: c.hydra.predict(c.X[:, :3]),
         ValueError, "X has 3 features, but HydraDistilledClassifier is expecting 4"),
        ("too_few_features_fit", lambda c: clf(c.forest, **TINY_C).fit(c.X[:, :3]),
         ValueError, "X has 3 features, but the ensemble's members were fitted on 4"),
        ("non_numeric_dataframe", lambda c: clf(c.pipe_last, **TINY_C).fit(c.frame),
         ValueError, r"non-numeric columns \['city'\].*Pipeline"),
        ("non_numeric_dataframe_unfitted",
         lambda c: clf(LogisticRegression(), **TINY_C).fit(c.frame, c.y_frame),
         ValueError, r"non-numeric columns \['city'\].*Pipeline"),
        ("empty_X", lambda c: clf(c.forest, **TINY_C).fit(c.X[:0]),
         ValueError, r"0 sample\(s\)"),
        ("empty_dataframe_pipeline_teacher",
         lambda c: clf(c.mixed_teacher, **TINY_C).fit(c.frame.iloc[:0]),
         ValueError, "X is empty"),
        ("empty_X_predict", lambda c: c.hydra.predict(c.X[:0]),
         ValueError, r"0 sample\(s\)"),
        ("one_sample_unfitted", lambda c: clf(**TINY_C).fit(c.X[:1], c.y[:1]),
         ValueError, "only one class"),
        ("unseen_labels", lambda c: clf(c.forest, **TINY_C).fit(c.X, np.where(c.y == 2, 7, c.y)),
         ValueError, r"labels the ensemble never saw: \[7\]"),
        ("single_class_unfitted",
         lambda c: clf(RandomForestClassifier(n_estimators=3), **TINY_C).fit(c.X, np.ones(150)),
         ValueError, "only one class"),
        ("empty_ensemble_list", lambda c: clf([], **TINY_C).fit(c.X, c.y),
         ValueError, "ensemble list is empty"),
        ("mixed_classifier_regressor",
         lambda c: clf([c.logreg, c.linreg], **TINY_C).fit(c.X),
         ValueError, "mixes classifiers and regressors"),
        ("mixed_classifier_regressor_regressor",
         lambda c: reg([c.linreg, c.logreg], **TINY).fit(c.X, c.y),
         ValueError, "mixes classifiers and regressors"),
        ("different_feature_counts",
         lambda c: clf([c.logreg, c.logreg3], **TINY_C).fit(c.X),
         ValueError, r"different numbers of features \[3, 4\]"),
        ("n_heads=0", lambda c: clf(c.forest, **{**TINY_C, "n_heads": 0}).fit(c.X),
         invalid, "'n_heads' parameter"),
        ("lr=-1", lambda c: clf(c.forest, **{**TINY_C, "lr": -1}).fit(c.X),
         invalid, "'lr' parameter"),
        ("augmentation=bogus",
         lambda c: clf(c.forest, **{**TINY_C, "augmentation": "bogus"}).fit(c.X),
         invalid, "'augmentation' parameter"),
        ("batch_size=0", lambda c: clf(c.forest, **{**TINY_C, "batch_size": 0}).fit(c.X),
         invalid, "'batch_size' parameter"),
        ("validation_fraction=1.5",
         lambda c: reg(c.forest_r, **{**TINY, "validation_fraction": 1.5}).fit(c.Xd, c.yd),
         invalid, "'validation_fraction' parameter"),
    ]  # fmt: skip


class _Context:
    pass


@pytest.fixture(scope="module")
def ctx(iris, diabetes, forest, forest_r, hydra, hydra_r, mixed, mixed_hydra):
    c = _Context()
    c.X, c.y = iris
    c.Xd, c.yd = diabetes
    c.forest, c.forest_r, c.hydra, c.hydra_r = forest, forest_r, hydra, hydra_r
    c.frame, c.y_frame, c.mixed_teacher = mixed
    c.pipe_last = c.mixed_teacher[-1]
    c.mixed_hydra = mixed_hydra
    c.logreg = LogisticRegression(max_iter=500).fit(c.X, c.y)
    c.logreg3 = LogisticRegression(max_iter=500).fit(c.X[:, :3], c.y)
    c.linreg = LinearRegression().fit(c.X, c.y)
    return c


BAD_CASES = _bad_cases()


@pytest.mark.parametrize(
    "action, error, match", [case[1:] for case in BAD_CASES], ids=[case[0] for case in BAD_CASES]
)
def test_bad_input(ctx, action, error, match):
    with pytest.raises(error, match=match) as info:
        action(ctx)
    # Refused by the estimator's own checks, never deep inside torch.
    assert "torch" not in type(info.value).__module__


def test_empty_ensemble_list_without_y_says_empty(iris):
    with pytest.raises(ValueError, match="empty"):
        HydraDistilledClassifier([], **TINY_C).fit(iris[0])


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")
def test_array_handed_to_torch_is_writable(monkeypatch, iris_frame):
    frame, y = iris_frame
    frame = frame.astype(np.float32)
    teacher = RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, y)
    model = HydraDistilledClassifier(teacher, **TINY_C).fit(frame)
    seen = []
    forward_iter = model.net_.forward_iter

    def spy(X, *args, **kwargs):
        seen.append(np.asarray(X).flags.writeable)
        return forward_iter(X, *args, **kwargs)

    # torch warns only once per process, so look at what it is given instead.
    monkeypatch.setattr(model.net_, "forward_iter", spy)
    model.predict(frame)
    assert seen == [True]


def test_single_class_message_shows_the_plain_label(iris):
    X, y = iris
    with pytest.raises(ValueError, match="only one class") as info:
        HydraDistilledClassifier(**TINY_C).fit(X[:10], y[:10])
    assert "np.int64" not in str(info.value)


def test_one_sample_regressor_with_unfitted_ensemble(diabetes):
    # A forest fits one row, so this is accepted (unlike a one-class classifier):
    # the student is fitted and predicts finite values.
    X, y = diabetes
    model = HydraDistilledRegressor(**TINY).fit(X[:1], y[:1])
    mean, std = model.predict(X[:5], return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(iris, forest):
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        HydraDistilledClassifier(forest, device="cuda", **TINY_C).fit(iris[0])


@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_diverging_training_is_a_clear_error(task, iris, diabetes, forest, forest_r):
    Est, params, X, y, teacher = _task(task, iris, diabetes, forest, forest_r)
    model = Est(teacher, lr=1e12, skorch_params={"optimizer": torch.optim.SGD}, **params)
    with pytest.raises(FloatingPointError, match="diverged"):
        model.fit(X, y)


def test_integer_input_matches_float64(iris):
    X, y = iris
    X_int = np.round(X * 10).astype(np.int64)
    teacher = RandomForestClassifier(n_estimators=5, random_state=0).fit(X_int, y)
    from_int = HydraDistilledClassifier(teacher, **FIT_C).fit(X_int, y)
    from_float = HydraDistilledClassifier(teacher, **FIT_C).fit(X_int.astype(np.float64), y)
    np.testing.assert_array_equal(from_int.predict_proba(X_int), from_float.predict_proba(X_int))
    np.testing.assert_array_equal(
        from_int.predict_proba(X_int), from_int.predict_proba(X_int.astype(np.float64))
    )
    assert from_int.score(X_int, y) > 0.6


def test_float64_and_bool_inputs(diabetes):
    X, y = diabetes
    model = HydraDistilledRegressor(**TINY).fit(X.astype(np.float64), y)
    assert model.predict(X).dtype == np.float64 and np.all(np.isfinite(model.predict(X)))
    rng = np.random.default_rng(0)
    X_bool = rng.random((120, 4)) > 0.5
    y_bool = X_bool[:, 0] ^ X_bool[:, 1]
    teacher = RandomForestClassifier(n_estimators=5, random_state=0).fit(X_bool, y_bool)
    clf = HydraDistilledClassifier(teacher, **TINY_C).fit(X_bool, y_bool)
    np.testing.assert_array_equal(clf.classes_, [False, True])
    assert clf.predict(X_bool).dtype == bool
    frame = pd.DataFrame(X_bool, columns=list("abcd"))
    HydraDistilledClassifier(
        RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, y_bool), **TINY_C
    ).fit(frame).predict(frame)


# ---------------------------------------------------------------------------
# 7. property-based: shapes and normalisation of predict_members
# ---------------------------------------------------------------------------

N_FEATURES = 3
PROPERTY = dict(
    body_layer_sizes=(4,),
    phase1_epochs=1,
    max_epochs=1,
    early_stopping=False,
    augmentation=None,
    random_state=0,
)


@pytest.fixture(scope="module")
def tiny_models():
    """Fitted tiny students keyed by (task, n_classes, n_heads), built on demand."""
    cache = {}
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, N_FEATURES))

    def get(task, n_heads, n_classes=None):
        key = (task, n_classes, n_heads)
        if key not in cache:
            if task == "classifier":
                y = np.arange(len(X)) % n_classes
                teacher = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0)
                model = HydraDistilledClassifier(
                    teacher.fit(X, y), n_heads=n_heads, temperature=1.0, **PROPERTY
                )
            else:
                y = X @ np.arange(1, N_FEATURES + 1) + rng.normal(size=len(X))
                teacher = RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0)
                model = HydraDistilledRegressor(teacher.fit(X, y), n_heads=n_heads, **PROPERTY)
            cache[key] = model.fit(X, y)
        return cache[key]

    return get


def _head_weights(n_heads, n_members=5):
    """Documented mapping: member m goes to head m % n_heads; a head weighs its members."""
    return np.bincount(np.arange(n_members) % n_heads, minlength=n_heads) / n_members


def _rows(n_samples):
    return hnp.arrays(
        np.float64,
        (n_samples, N_FEATURES),
        elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False),
    )


@settings(max_examples=15, deadline=None)
@given(
    n_samples=st.integers(1, 20),
    n_heads=st.integers(1, 5),
    n_classes=st.integers(2, 6),
    data=st.data(),
)
def test_property_classifier_members(tiny_models, n_samples, n_heads, n_classes, data):
    model = tiny_models("classifier", n_heads, n_classes)
    X = data.draw(_rows(n_samples))
    members = model.predict_members(X)
    assert members.shape == (n_samples, n_heads, n_classes)
    assert np.all(members >= 0) and np.all(members <= 1)
    np.testing.assert_allclose(members.sum(axis=-1), 1.0, atol=1e-5)
    proba = model.predict_proba(X)
    assert proba.shape == (n_samples, n_classes)
    weighted = np.einsum("nhc,h->nc", members, _head_weights(n_heads))
    np.testing.assert_allclose(proba, weighted, atol=1e-6)
    assert set(model.predict(X)) <= set(model.classes_)
    u = model.predict_uncertainty(X)
    assert u.shape == (n_samples, 3) and np.all(u["epistemic"] >= 0)


@settings(max_examples=15, deadline=None)
@given(n_samples=st.integers(1, 20), n_heads=st.integers(1, 5), data=st.data())
def test_property_regressor_members(tiny_models, n_samples, n_heads, data):
    model = tiny_models("regressor", n_heads)
    X = data.draw(_rows(n_samples))
    means, variances = model.predict_members(X)
    assert means.shape == variances.shape == (n_samples, n_heads)
    assert np.all(np.isfinite(means)) and np.all(variances > 0)
    mean, std = model.predict(X, return_std=True)
    assert mean.shape == std.shape == (n_samples,)
    np.testing.assert_allclose(mean, means @ _head_weights(n_heads), rtol=1e-10, atol=1e-8)
    assert np.all(std > 0)
