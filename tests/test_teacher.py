"""The resolved Teacher: immutable and complete, chunked predictions, workers, cache.

Mirrors ``skhydra/ensembles/_teacher.py``; how each kind of ensemble resolves is in
test_ensembles.py.
"""

import collections
import dataclasses
import os
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import TINY
from joblib import parallel_config
from sklearn.ensemble import BaggingRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import BayesianRidge, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from torch import nn

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra.ensembles import predict_members, resolve_teacher
from skhydra.ensembles._members import PointMember
from skhydra.ensembles._teacher import CHUNK_ROWS, _member_groups

# Calls made by the counting members below. Counted outside the members so that
# joblib's hash of a member (the cache key) does not change as it is called.
CALLS = collections.Counter()


class CountingLogistic(LogisticRegression):
    """A logistic regression that counts its predict_proba calls in CALLS."""

    def predict_proba(self, X):
        CALLS["predict_proba"] += 1
        return super().predict_proba(X)


class CountingMLP(nn.Module):
    """A torch member that counts its forward calls and the rows they saw in CALLS."""

    def __init__(self, n_features, n_outputs, seed, gaussian=False):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(n_features, 8), nn.Tanh(), nn.Linear(8, n_outputs))
        self.gaussian = gaussian

    def forward(self, x):
        CALLS["forward"] += 1
        CALLS["rows"] += len(x)
        out = self.net(x)
        if self.gaussian:
            return torch.stack([out[:, 0], nn.functional.softplus(out[:, 1]) + 0.1], dim=1)
        return out if out.shape[1] > 1 else out[:, 0]


class PidLogistic(LogisticRegression):
    """Leaves a file named after the process that computed its probabilities."""

    def predict_proba(self, X):
        open(os.path.join(self.pid_folder, str(os.getpid())), "w").close()
        return super().predict_proba(X)


@pytest.fixture(autouse=True)
def _reset_counters():
    CALLS.clear()


@pytest.fixture(scope="module")
def mixed_classifiers(iris):
    """Members of several kinds (one in a Pipeline) predicting probabilities."""
    X, y = iris
    return [
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
        DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y),
        KNeighborsClassifier().fit(X, y),
        GaussianNB().fit(X, y),
    ]


@pytest.fixture(scope="module")
def mixed_regressors(diabetes):
    """Point members around a Gaussian one."""
    X, y = diabetes
    return [
        Ridge().fit(X, y),
        BayesianRidge().fit(X, y),
        DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, y),
    ]


@pytest.fixture(scope="module")
def counting_members(iris):
    X, y = iris
    return [CountingLogistic(C=c, max_iter=1000).fit(X, y) for c in (0.1, 1.0, 10.0)]


KINDS = ["forest", "forest_r", "mixed_classifiers", "mixed_regressors", "torch_c", "torch_r"]


@pytest.fixture
def teacher_and_rows(request, iris, diabetes):
    """``(teacher, X)`` for one of KINDS (request.param)."""
    kind = request.param
    X = iris[0] if kind in ("forest", "mixed_classifiers", "torch_c") else diabetes[0]
    if kind == "torch_c":
        members = [CountingMLP(4, 3, seed) for seed in range(3)]
        return resolve_teacher(members, task="classifier", X=X), X
    if kind == "torch_r":
        members = [CountingMLP(10, 2, seed, gaussian=True) for seed in range(3)]
        return resolve_teacher(members, task="regressor", X=X), X
    return resolve_teacher(request.getfixturevalue(kind)), X


def _assert_same_predictions(a, b, rtol=0.0):
    """Equal predictions (shapes and dtypes too), to ``rtol`` when it is not 0."""
    pairs = zip(a, b, strict=True) if isinstance(a, tuple) else [(a, b)]
    assert isinstance(b, tuple) == isinstance(a, tuple)
    for p, q in pairs:
        assert p.shape == q.shape and p.dtype == q.dtype
        assert p.dtype == (np.float64 if isinstance(a, tuple) else np.float32)
        if rtol:
            np.testing.assert_allclose(p, q, rtol=rtol, atol=rtol / 10)
        else:
            np.testing.assert_array_equal(p, q)


def _joined(teacher, X, **options):
    """The chunks of ``iter_predictions`` joined again, after checking their bounds."""
    chunk_rows = options.get("chunk_rows", CHUNK_ROWS)
    chunks = list(teacher.iter_predictions(X, **options))
    bounds = [(start, stop) for start, stop, _ in chunks]
    starts = list(range(0, len(X), chunk_rows))
    assert bounds == [(s, min(s + chunk_rows, len(X))) for s in starts]
    parts = [p for _, _, p in chunks]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(ps) for ps in zip(*parts, strict=True))
    return np.concatenate(parts)


# ---------------------------------------------------------------------------
# immutable and complete when built
# ---------------------------------------------------------------------------


def test_teacher_is_immutable(forest):
    teacher = resolve_teacher(forest)
    assert isinstance(teacher.members, tuple)
    for field, value in [("task", "regressor"), ("classes_", None), ("members", ())]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(teacher, field, value)
    with pytest.raises(dataclasses.FrozenInstanceError):
        teacher.members[0].model = None


def test_sklearn_teacher_is_complete_before_any_prediction(counting_members):
    teacher = resolve_teacher(counting_members)
    assert CALLS["predict_proba"] == 0  # resolution predicted nothing
    assert teacher.task == "classifier" and teacher.n_members == 3
    assert teacher.classes_.tolist() == [0, 1, 2]
    assert teacher.weights is None and teacher.has_variance is False
    assert teacher.n_features_in_ == 4


@pytest.mark.parametrize(
    "task, n_outputs, gaussian, expected",
    [
        ("classifier", 3, False, dict(classes_=[0, 1, 2], has_variance=False)),
        ("regressor", 2, True, dict(classes_=None, has_variance=True)),
        ("regressor", 1, False, dict(classes_=None, has_variance=False)),
    ],
    ids=["classifier", "gaussian_regressor", "point_regressor"],
)
def test_torch_teacher_is_complete_after_one_row(iris, task, n_outputs, gaussian, expected):
    X, _ = iris
    members = [CountingMLP(4, n_outputs, seed, gaussian) for seed in range(3)]
    teacher = resolve_teacher(members, task=task, X=X)
    # one forward pass of the first member on one row found the output width ...
    assert (CALLS["forward"], CALLS["rows"]) == (1, 1)
    # ... and with it the classes or whether the members give variances
    classes = None if teacher.classes_ is None else teacher.classes_.tolist()
    assert classes == expected["classes_"]
    assert teacher.has_variance is expected["has_variance"]
    assert teacher.task == task and teacher.n_members == 3
    predictions = teacher.predict_members(X)
    if gaussian:
        assert np.isfinite(predictions[1]).all()
    elif task == "regressor":
        assert np.isnan(predictions[1]).all()


# ---------------------------------------------------------------------------
# chunks equal whole predictions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [7, 150, 1000])
@pytest.mark.parametrize("teacher_and_rows", KINDS, indirect=True)
def test_chunks_equal_the_whole_predictions(teacher_and_rows, chunk_rows):
    teacher, X = teacher_and_rows
    whole = teacher.predict_members(X)
    # BLAS and torch may sum products in another order for another number of rows
    torch_members = isinstance(teacher.members[0].model, nn.Module)
    rtol = 1e-5 if torch_members else 0.0 if teacher.is_classifier else 1e-10
    _assert_same_predictions(_joined(teacher, X, chunk_rows=chunk_rows), whole, rtol)
    _assert_same_predictions(predict_members(teacher, X), whole)


def test_chunks_default_to_chunk_rows(forest, iris):
    X = np.repeat(iris[0], 60, axis=0)  # 9000 rows: one full chunk and a rest
    teacher = resolve_teacher(forest)
    chunks = [(start, stop) for start, stop, _ in teacher.iter_predictions(X)]
    assert CHUNK_ROWS == 8192
    assert chunks == [(0, 8192), (8192, 9000)]


@pytest.mark.parametrize("chunk_rows", [0, -3, 2.5, "7"])
def test_bad_chunk_rows_is_refused(forest, iris, chunk_rows):
    teacher = resolve_teacher(forest)
    with pytest.raises(ValueError, match="chunk_rows must be a positive integer"):
        list(teacher.iter_predictions(iris[0], chunk_rows=chunk_rows))


def test_dataframe_rows_keep_feature_names_quiet(iris, iris_names):
    X, _ = iris
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"], index=np.arange(150) * 3)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(df, iris_names)
    members = [GaussianNB(var_smoothing=v).fit(df, iris_names) for v in (1e-9, 1e-1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P_forest = _joined(resolve_teacher(forest), df, chunk_rows=7)
        P_list = _joined(resolve_teacher(members), df, chunk_rows=7)
    np.testing.assert_allclose(P_forest.mean(axis=1), forest.predict_proba(df), atol=1e-5)
    for j, est in enumerate(members):
        np.testing.assert_allclose(P_list[:, j], est.predict_proba(df), atol=1e-6)


# ---------------------------------------------------------------------------
# n_jobs over members
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_members, n_jobs", [(5, 1), (5, 2), (5, 3), (3, 16), (8, -1)])
def test_member_groups_split_the_members_in_order(n_members, n_jobs):
    groups = _member_groups(n_members, n_jobs)
    assert len(groups) == min(n_members, joblib.effective_n_jobs(n_jobs))
    assert groups[0][0] == 0 and groups[-1][1] == n_members
    assert all(a < b for a, b in groups)
    assert all(b == c for (_, b), (c, _) in zip(groups, groups[1:], strict=False))


@pytest.mark.parametrize("n_jobs", [2, 3, -1, 16])
@pytest.mark.parametrize("teacher_and_rows", KINDS, indirect=True)
def test_predict_members_n_jobs(teacher_and_rows, n_jobs):
    teacher, X = teacher_and_rows
    serial = teacher.predict_members(X, n_jobs=None)
    parallel = predict_members(teacher, X, n_jobs=n_jobs)
    _assert_same_predictions(serial, parallel)
    # Several chunks of rows, and the members of each chunk over workers.
    _assert_same_predictions(serial, _joined(teacher, X, chunk_rows=40, n_jobs=n_jobs))
    if not teacher.is_classifier:
        # Point members give NaN variances, Gaussian members finite ones.
        point = np.array([isinstance(m, PointMember) for m in teacher.members])
        assert np.isnan(parallel[1][:, point]).all()
        assert np.isfinite(parallel[1][:, ~point]).all()


def test_predict_members_under_a_process_backend(iris, tmp_path):
    # joblib.parallel_config chooses the backend (multiprocessing here, which forks
    # quickly; loky, dask or ray likewise).
    X, y = iris
    members = [PidLogistic(C=c, max_iter=1000).fit(X, y) for c in (0.1, 1.0, 10.0, 100.0)]
    for member in members:
        member.pid_folder = str(tmp_path)
    with parallel_config(backend="multiprocessing"):
        parallel = predict_members(members, X, n_jobs=2)
    # the members predicted in other processes ...
    assert {int(name) for name in os.listdir(tmp_path)} - {os.getpid()}
    # ... and gave what they give here
    _assert_same_predictions(parallel, predict_members(members, X))


def test_students_with_n_jobs_predict_identically(iris, diabetes, forest, forest_r, hydra, hydra_r):
    # the shared students were fitted with n_jobs=None
    two = HydraDistilledClassifier(forest, n_jobs=2, **TINY).fit(iris[0])
    np.testing.assert_array_equal(two.predict_proba(iris[0]), hydra.predict_proba(iris[0]))
    Xr, yr = diabetes
    two = HydraDistilledRegressor(forest_r, n_jobs=2, **TINY).fit(Xr, yr)
    for a, b in zip(
        two.predict(Xr, return_std=True), hydra_r.predict(Xr, return_std=True), strict=True
    ):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# the prediction cache: on the Teacher ...
# ---------------------------------------------------------------------------


def test_teacher_cache_hits_on_the_same_rows(iris, counting_members, tmp_path):
    X, _ = iris
    teacher = resolve_teacher(counting_members)
    memory = joblib.Memory(tmp_path / "cache", verbose=0)
    first = teacher.predict_members(X, cache=memory)
    assert CALLS["predict_proba"] == 3
    _assert_same_predictions(first, teacher.predict_members(X))
    CALLS.clear()
    # n_jobs is not part of the key; another Teacher of the same members is
    again = resolve_teacher(counting_members).predict_members(X, n_jobs=2, cache=memory)
    chunked = _joined(teacher, X, chunk_rows=40, cache=memory)
    assert CALLS["predict_proba"] == 0
    _assert_same_predictions(np.asarray(again), first)
    _assert_same_predictions(chunked, first)
    # other rows are predicted again
    teacher.predict_members(X[:100], cache=memory)
    assert CALLS["predict_proba"] == 3


def test_teacher_cache_of_a_regressor(diabetes, mixed_regressors, tmp_path):
    X, _ = diabetes
    teacher = resolve_teacher(mixed_regressors)
    memory = joblib.Memory(tmp_path / "cache", mmap_mode="r", verbose=0)
    teacher.predict_members(X, cache=memory)
    cached = _joined(teacher, X, chunk_rows=64, cache=memory)  # read back from disk
    _assert_same_predictions(tuple(np.asarray(a) for a in cached), teacher.predict_members(X))


# ---------------------------------------------------------------------------
# ... and through the estimators' `cache` parameter
# ---------------------------------------------------------------------------


def _search(members, X, y, cache):
    search = GridSearchCV(
        HydraDistilledClassifier(members, cache=cache, **TINY),
        {"body_layer_sizes": [(8,), (16,)]},
        cv=2,
    )
    return search.fit(X, y)


def test_search_without_cache_predicts_in_every_fit(iris, counting_members):
    X, y = iris
    # One fit: each member predicts the real rows and the synthetic rows once.
    HydraDistilledClassifier(counting_members, **TINY).fit(X)
    assert CALLS["predict_proba"] == 2 * len(counting_members)
    CALLS.clear()
    _search(counting_members, X, y, cache=None)
    # 2 candidates x 2 folds, and the refit
    assert CALLS["predict_proba"] == 5 * 2 * len(counting_members)


@pytest.mark.parametrize("cache_kind", ["path", "joblib"])
def test_memory_cache_in_a_search(iris, counting_members, tmp_path, cache_kind):
    X, y = iris
    per_fit = 2 * len(counting_members)  # see test_search_without_cache_predicts_in_every_fit
    location = tmp_path / "cache"
    cache = str(location) if cache_kind == "path" else joblib.Memory(location, verbose=0)
    search = _search(counting_members, X, y, cache=cache)
    # Once per distinct X: the two training folds and the whole X of the refit.
    assert CALLS["predict_proba"] == 3 * per_fit
    assert any(location.iterdir())

    # A refit on the same X hits the cache, and gives the same student.
    CALLS.clear()
    refit = HydraDistilledClassifier(counting_members, cache=cache, **TINY)
    refit.set_params(**search.best_params_).fit(X, y)
    assert CALLS["predict_proba"] == 0
    np.testing.assert_array_equal(refit.predict_proba(X), search.best_estimator_.predict_proba(X))
    uncached_model = HydraDistilledClassifier(counting_members, **TINY)
    uncached_model.set_params(**search.best_params_).fit(X, y)
    np.testing.assert_array_equal(refit.predict_proba(X), uncached_model.predict_proba(X))


def test_memory_cache_misses_on_other_rows(iris, counting_members, tmp_path):
    X, _ = iris
    cache = str(tmp_path / "cache")
    HydraDistilledClassifier(counting_members, cache=cache, **TINY).fit(X)
    first = CALLS["predict_proba"]
    assert first > 0
    # Another random_state draws other synthetic rows: those are predicted again.
    HydraDistilledClassifier(counting_members, cache=cache, **{**TINY, "random_state": 1}).fit(X)
    assert CALLS["predict_proba"] == first + len(counting_members)
    HydraDistilledClassifier(counting_members, cache=cache, **TINY).fit(X[:100])
    assert CALLS["predict_proba"] == first + len(counting_members) + first


@pytest.fixture(scope="module")
def iris_float32(iris):
    return StandardScaler().fit_transform(iris[0]).astype(np.float32)


def test_memory_cache_torch_classifier_teacher(iris_float32, tmp_path):
    X = iris_float32
    members = [CountingMLP(4, 3, seed) for seed in range(3)]
    cache = str(tmp_path / "cache")
    first = HydraDistilledClassifier(members, cache=cache, **TINY).fit(X)
    assert CALLS["forward"] > 0
    CALLS.clear()
    second = HydraDistilledClassifier(members, cache=cache, **TINY).fit(X)
    # A cache hit: no member predicted the rows; only the first member's forward
    # pass on one row that finds the width of the logits ran.
    assert (CALLS["forward"], CALLS["rows"]) == (1, 1)
    np.testing.assert_array_equal(second.classes_, [0, 1, 2])
    assert second.predict_proba(X).shape == (len(X), 3)
    np.testing.assert_array_equal(second.predict_proba(X), first.predict_proba(X))
    plain = HydraDistilledClassifier(members, **TINY).fit(X)
    np.testing.assert_array_equal(second.predict_proba(X), plain.predict_proba(X))


@pytest.mark.parametrize("gaussian", [True, False])
def test_memory_cache_torch_regressor_teacher(diabetes, tmp_path, gaussian):
    X = diabetes[0].astype(np.float32)
    members = [CountingMLP(X.shape[1], 2 if gaussian else 1, s, gaussian) for s in range(3)]
    cache = str(tmp_path / "cache")
    with warnings.catch_warnings():
        # Mean-only members and no y: the aleatoric part is unknown, with a warning.
        warnings.simplefilter("ignore", UserWarning)
        first = HydraDistilledRegressor(members, cache=cache, **TINY).fit(X)
        CALLS.clear()
        second = HydraDistilledRegressor(members, cache=cache, **TINY).fit(X)
        hit = (CALLS["forward"], CALLS["rows"])
        plain = HydraDistilledRegressor(members, **TINY).fit(X)
        u_first, u_second = first.predict_uncertainty(X), second.predict_uncertainty(X)
        u_plain = plain.predict_uncertainty(X)
    # Whether the members give variances is known on the cache hit too.
    assert np.isfinite(u_second["aleatoric"]).all() == gaussian
    pd.testing.assert_frame_equal(u_second, u_first)
    pd.testing.assert_frame_equal(u_second, u_plain)
    # A cache hit: only the forward pass on one row that finds the output width ran.
    assert hit == (1, 1)


# ---------------------------------------------------------------------------
# sparse inputs: members get the sparse matrix they were fitted on
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cities():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"city": rng.choice(["paris", "rome", "oslo", "lima"], 120)})
    y = (frame["city"] == "rome") * 3.0 + rng.normal(size=len(frame))
    return frame, y.to_numpy()


@pytest.mark.parametrize(
    "ensemble",
    [
        RandomForestRegressor(n_estimators=4, random_state=0),
        BaggingRegressor(n_estimators=3, max_features=0.5, random_state=0),
    ],
    ids=["forest", "bagging"],
)
def test_members_of_a_sparse_pipeline_predict_on_the_sparse_matrix(cities, ensemble):
    frame, y = cities
    pipeline = make_pipeline(OneHotEncoder(), ensemble).fit(frame, y)
    teacher = resolve_teacher(pipeline)
    assert sp.issparse(teacher.transform(frame))
    means, _ = teacher.predict_members(teacher.transform(frame))
    np.testing.assert_allclose(means.mean(axis=1), pipeline.predict(frame))
    chunks = [p[0] for _, _, p in teacher.iter_predictions(teacher.transform(frame), chunk_rows=50)]
    np.testing.assert_array_equal(np.concatenate(chunks), means)
