"""What skhydra/_base.py owns: the device, the options fit checks, persistence,
bad input, and the shapes and normalisation of the student's predictions."""

import pickle
import warnings
from types import SimpleNamespace

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import TINY
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import clone
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor, predict_uncertainty
from skhydra._base import resolve_device

ESTIMATORS = [HydraDistilledClassifier, HydraDistilledRegressor]
# Enough budget to imitate the teacher (agreement checks).
IMITATE = dict(
    body_layer_sizes=(32,), phase1_epochs=10, max_epochs=30, temperature=1.0, random_state=0
)
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def coloured(iris):
    """Iris as a DataFrame plus a string column, and a fitted Pipeline teacher that
    one-hot encodes it."""
    X, y = iris
    frame = pd.DataFrame(X, columns=IRIS_COLUMNS, index=np.arange(len(X)) + 100)
    frame["colour"] = np.where(X[:, 1] > 3.0, "red", "blue")
    encoder = make_column_transformer((OneHotEncoder(), ["colour"]), remainder="passthrough")
    forest = RandomForestClassifier(n_estimators=6, random_state=0)
    return frame, y, make_pipeline(encoder, forest).fit(frame, y)


@pytest.fixture(scope="module")
def coloured_hydra(coloured):
    frame, _, teacher = coloured
    return HydraDistilledClassifier(teacher, **TINY).fit(frame)


# ---------------------------------------------------------------------------
# device
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("device, expected", [("cpu", "cpu"), ("auto", "cpu")], ids=["cpu", "auto"])
def test_resolve_device_without_gpu(monkeypatch, device, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(device) == expected


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_resolve_device_refuses_cuda_without_gpu(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = f"device='{device}' was requested but no CUDA GPU is available"
    with pytest.raises(ValueError, match=message):
        resolve_device(device)


def test_resolve_device_with_two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"'cuda:2' names no available GPU.* has 2 \(cuda:0 to"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_device_is_recorded(monkeypatch, device, iris, forest):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # 'auto' falls back
    model = HydraDistilledClassifier(forest, device=device, **TINY).fit(iris[0])
    assert model.device_ == "cpu"
    assert model.net_.device == "cpu"
    assert all(p.device.type == "cpu" for p in model.net_.module_.parameters())


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_cuda_without_gpu(monkeypatch, Est, iris, diabetes, forest, forest_r):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ensemble, (X, y) = (forest, iris) if Est is HydraDistilledClassifier else (forest_r, diabetes)
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        Est(ensemble, device="cuda", **TINY).fit(X, y)


# ---------------------------------------------------------------------------
# parameters: memory= is now cache=
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_memory_keyword_is_gone(Est, tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'memory'"):
        Est(memory=str(tmp_path))
    params = Est().get_params()
    assert "cache" in params and params["cache"] is None
    assert "memory" not in params


def test_cache_is_accepted_and_reused(tmp_path, iris, forest, hydra):
    X, _ = iris
    cached = HydraDistilledClassifier(forest, cache=str(tmp_path), **TINY).fit(X)
    outputs = sorted(tmp_path.rglob("output.pkl"))
    assert outputs, "the teacher's predictions were not cached"
    # The cache changes nothing in what the student learns (hydra: same fit, no cache).
    np.testing.assert_array_equal(cached.predict_proba(X), hydra.predict_proba(X))
    # A joblib.Memory on the same folder finds them: no new entries.
    memory = joblib.Memory(str(tmp_path), verbose=0)
    again = HydraDistilledClassifier(forest, cache=memory, **TINY)
    again.fit(X)
    assert sorted(tmp_path.rglob("output.pkl")) == outputs
    np.testing.assert_array_equal(again.predict_proba(X), hydra.predict_proba(X))


# ---------------------------------------------------------------------------
# persistence
# ---------------------------------------------------------------------------


def _roundtrip(model, how, tmp_path):
    if how == "pickle":
        return pickle.loads(pickle.dumps(model))
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    return joblib.load(path)


def _assert_same_regression(got, expected, X):
    for a, b in zip(
        got.predict(X, return_std=True), expected.predict(X, return_std=True), strict=True
    ):
        np.testing.assert_array_equal(a, b)


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
    _assert_same_regression(_roundtrip(hydra_r, how, tmp_path), hydra_r, X)


@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_without_teacher_is_smaller_and_predicts_the_same(task, iris, diabetes, hydra, hydra_r):
    model, X = (hydra, iris[0]) if task == "classifier" else (hydra_r, diabetes[0])
    student = model.without_teacher()
    assert student.ensemble_ is None and student.ensemble is None
    assert student.teacher_.ensemble is None and student.teacher_.members == ()
    # The original keeps its teacher.
    assert model.ensemble_ is not None and model.teacher_.n_members == model.n_members_
    full, stripped = pickle.dumps(model), pickle.dumps(student)
    assert len(stripped) < len(full)
    served = pickle.loads(stripped)
    if task == "classifier":
        np.testing.assert_array_equal(served.predict_proba(X), model.predict_proba(X))
    else:
        _assert_same_regression(served, model, X)
    pd.testing.assert_frame_equal(served.predict_uncertainty(X), model.predict_uncertainty(X))


def test_without_teacher_keeps_pipeline_preprocessing(tmp_path, coloured, coloured_hydra):
    frame, _, _ = coloured
    path = tmp_path / "student.joblib"
    joblib.dump(coloured_hydra.without_teacher(), path)
    served = joblib.load(path)
    assert served.ensemble_ is None
    np.testing.assert_array_equal(served.predict(frame), coloured_hydra.predict(frame))
    pd.testing.assert_frame_equal(
        served.predict_uncertainty(frame), coloured_hydra.predict_uncertainty(frame)
    )
    with pytest.raises(ValueError, match="feature names"):
        served.predict(frame[frame.columns[::-1]])


# ---------------------------------------------------------------------------
# bad input
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
        ("inf_fit", lambda c: clf(c.forest, **TINY).fit(_with(c.X, 3, 1, np.inf)),
         ValueError, "Input X contains infinity"),
        ("inf_predict", lambda c: c.hydra.predict_proba(_with(c.X, 0, 0, -np.inf)),
         ValueError, "Input X contains infinity"),
        ("inf_through_pipeline_teacher",
         lambda c: c.coloured_hydra.predict(c.frame.assign(sepal_width=np.inf)),
         ValueError, "preprocessing must produce finite numbers"),
        ("too_few_features_predict", lambda c: c.hydra.predict(c.X[:, :3]),
         ValueError, "X has 3 features, but HydraDistilledClassifier is expecting 4"),
        ("too_few_features_fit", lambda c: clf(c.forest, **TINY).fit(c.X[:, :3]),
         ValueError, "X has 3 features, but the ensemble's members were fitted on 4"),
        ("non_numeric_dataframe", lambda c: clf(c.pipe_last, **TINY).fit(c.frame),
         ValueError, r"non-numeric columns \['colour'\].*Pipeline"),
        ("non_numeric_dataframe_unfitted",
         lambda c: clf(LogisticRegression(), **TINY).fit(c.frame, c.y),
         ValueError, r"non-numeric columns \['colour'\].*Pipeline"),
        ("empty_X", lambda c: clf(c.forest, **TINY).fit(c.X[:0]),
         ValueError, r"0 sample\(s\)"),
        ("empty_dataframe_pipeline_teacher",
         lambda c: clf(c.frame_teacher, **TINY).fit(c.frame.iloc[:0]),
         ValueError, "X is empty"),
        ("empty_X_predict", lambda c: c.hydra.predict(c.X[:0]),
         ValueError, r"0 sample\(s\)"),
        ("one_sample_unfitted", lambda c: clf(**TINY).fit(c.X[:1], c.y[:1]),
         ValueError, "only one class"),
        ("unseen_labels", lambda c: clf(c.forest, **TINY).fit(c.X, np.where(c.y == 2, 7, c.y)),
         ValueError, r"labels the ensemble never saw: \[7\]"),
        ("single_class_unfitted",
         lambda c: clf(RandomForestClassifier(n_estimators=3), **TINY).fit(c.X, np.ones(150)),
         ValueError, "only one class"),
        ("empty_ensemble_list", lambda c: clf([], **TINY).fit(c.X, c.y),
         ValueError, "ensemble list is empty"),
        ("mixed_classifier_regressor",
         lambda c: clf([c.logreg, c.linreg], **TINY).fit(c.X),
         ValueError, "mixes classifiers and regressors"),
        ("mixed_classifier_regressor_regressor",
         lambda c: reg([c.linreg, c.logreg], **TINY).fit(c.X, c.y),
         ValueError, "mixes classifiers and regressors"),
        ("different_feature_counts",
         lambda c: clf([c.logreg, c.logreg3], **TINY).fit(c.X),
         ValueError, r"different numbers of features \[3, 4\]"),
        ("phase1_epochs>max_epochs",
         lambda c: clf(c.forest, **{**TINY, "phase1_epochs": 7, "max_epochs": 5}).fit(c.X),
         ValueError, "phase1_epochs=7 exceeds max_epochs=5"),
        ("n_heads=0", lambda c: clf(c.forest, **{**TINY, "n_heads": 0}).fit(c.X),
         invalid, "'n_heads' parameter"),
        ("lr=-1", lambda c: clf(c.forest, **{**TINY, "lr": -1}).fit(c.X),
         invalid, "'lr' parameter"),
        ("augmentation=bogus",
         lambda c: clf(c.forest, **{**TINY, "augmentation": "bogus"}).fit(c.X),
         invalid, "'augmentation' parameter"),
        ("batch_size=0", lambda c: clf(c.forest, **{**TINY, "batch_size": 0}).fit(c.X),
         invalid, "'batch_size' parameter"),
        ("validation_fraction=1.5",
         lambda c: reg(c.forest_r, **{**TINY, "validation_fraction": 1.5}).fit(c.Xd, c.yd),
         invalid, "'validation_fraction' parameter"),
        ("device=gpu", lambda c: clf(c.forest, **{**TINY, "device": "gpu"}).fit(c.X),
         invalid, "The 'device' parameter of HydraDistilledClassifier must be"),
        ("device=cuda:one",
         lambda c: reg(c.forest_r, **{**TINY, "device": "cuda:one"}).fit(c.Xd, c.yd),
         invalid, "The 'device' parameter of HydraDistilledRegressor must be"),
        ("memory_budget=lots",
         lambda c: clf(c.forest, **{**TINY, "memory_budget": "lots"}).fit(c.X),
         invalid, "The 'memory_budget' parameter of HydraDistilledClassifier must be"),
        ("body_layer_sizes=(0,)",
         lambda c: clf(c.forest, **{**TINY, "body_layer_sizes": (0,)}).fit(c.X),
         invalid, "The 'body_layer_sizes' parameter of HydraDistilledClassifier must be"),
        ("head_layer_sizes=(4,-1)",
         lambda c: reg(c.forest_r, **{**TINY, "head_layer_sizes": (4, -1)}).fit(c.Xd, c.yd),
         invalid, "The 'head_layer_sizes' parameter of HydraDistilledRegressor must be"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ctx(iris, diabetes, forest, forest_r, hydra, hydra_r, coloured, coloured_hydra):
    X, y = iris
    frame, _, frame_teacher = coloured
    return SimpleNamespace(
        X=X,
        y=y,
        Xd=diabetes[0],
        yd=diabetes[1],
        forest=forest,
        forest_r=forest_r,
        hydra=hydra,
        hydra_r=hydra_r,
        frame=frame,
        frame_teacher=frame_teacher,
        pipe_last=frame_teacher[-1],
        coloured_hydra=coloured_hydra,
        logreg=LogisticRegression(max_iter=500).fit(X, y),
        logreg3=LogisticRegression(max_iter=500).fit(X[:, :3], y),
        linreg=LinearRegression().fit(X, y),
    )


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
        HydraDistilledClassifier([], **TINY).fit(iris[0])


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")
def test_array_handed_to_torch_is_writable(monkeypatch, iris):
    X, y = iris
    frame = pd.DataFrame(X.astype(np.float32), columns=IRIS_COLUMNS)
    # pandas (copy-on-write) hands out read-only arrays of a one-dtype frame.
    assert not np.asarray(frame).flags.writeable
    teacher = RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, y)
    model = HydraDistilledClassifier(teacher, **TINY).fit(frame)
    seen = []
    as_tensor = torch.as_tensor

    def spy(data, *args, **kwargs):
        if isinstance(data, np.ndarray) and data.ndim == 2:
            seen.append((data.shape, data.flags.writeable))
        return as_tensor(data, *args, **kwargs)

    # torch warns only once per process, so look at what it is given instead.
    monkeypatch.setattr(torch, "as_tensor", spy)
    model.predict(frame)
    assert seen == [((150, 4), True)]


def test_single_class_message_shows_the_plain_label(iris):
    X, y = iris
    with pytest.raises(ValueError, match="only one class") as info:
        HydraDistilledClassifier(**TINY).fit(X[:10], y[:10])
    assert "np.int64" not in str(info.value)
    assert "(0)" in str(info.value)


def test_one_sample_regressor_with_unfitted_ensemble(diabetes):
    # A forest fits one row, so this is accepted (unlike a one-class classifier):
    # the student is fitted and predicts finite values.
    X, y = diabetes
    model = HydraDistilledRegressor(**TINY).fit(X[:1], y[:1])
    mean, std = model.predict(X[:5], return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))


def test_integer_input_matches_float64(iris):
    X, y = iris
    X_int = np.round(X * 10).astype(np.int64)
    teacher = RandomForestClassifier(n_estimators=5, random_state=0).fit(X_int, y)
    # Equality of the two fits, not quality, is the point: a small batch is enough.
    from_int = HydraDistilledClassifier(teacher, batch_size=64, **IMITATE).fit(X_int, y)
    from_float = HydraDistilledClassifier(teacher, batch_size=64, **IMITATE)
    from_float.fit(X_int.astype(np.float64), y)
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
    clf = HydraDistilledClassifier(teacher, **TINY).fit(X_bool, y_bool)
    np.testing.assert_array_equal(clf.classes_, [False, True])
    assert clf.predict(X_bool).dtype == bool
    frame = pd.DataFrame(X_bool, columns=list("abcd"))
    from_frame = HydraDistilledClassifier(
        RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, y_bool), **TINY
    ).fit(frame)
    assert from_frame.predict(frame).dtype == bool


# ---------------------------------------------------------------------------
# property-based: shapes and normalisation of predict_members
# ---------------------------------------------------------------------------

N_FEATURES = 3
N_MEMBERS = 5
PROPERTY = dict(
    body_layer_sizes=(4,),
    phase1_epochs=1,
    max_epochs=2,
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
                teacher = RandomForestClassifier(N_MEMBERS, max_depth=3, random_state=0)
                model = HydraDistilledClassifier(
                    teacher.fit(X, y), n_heads=n_heads, temperature=1.0, **PROPERTY
                )
            else:
                y = X @ np.arange(1, N_FEATURES + 1) + rng.normal(size=len(X))
                teacher = RandomForestRegressor(N_MEMBERS, max_depth=3, random_state=0)
                model = HydraDistilledRegressor(teacher.fit(X, y), n_heads=n_heads, **PROPERTY)
            cache[key] = model.fit(X, y)
        return cache[key]

    return get


def _head_weights(model, n_heads):
    """Documented mapping: member m goes to head m % n_heads, or with rank matching
    (the forests here), rank r to head r * n_heads // n_members; a head weighs its members."""
    assert model.head_matching_ == "rank"
    member_heads = np.arange(N_MEMBERS) * n_heads // N_MEMBERS
    np.testing.assert_array_equal(model.member_heads_, member_heads)
    expected = np.bincount(member_heads, minlength=n_heads) / N_MEMBERS
    np.testing.assert_allclose(model.head_weights_, expected, rtol=1e-12)
    return expected


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
    weighted = np.einsum("nhc,h->nc", members, _head_weights(model, n_heads))
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
    weights = _head_weights(model, n_heads)
    np.testing.assert_allclose(mean, means @ weights, rtol=1e-10, atol=1e-8)
    assert np.all(std > 0)


# ---------------------------------------------------------------------------
# sparse preprocessing: members see the sparse matrix, the student a dense one
# ---------------------------------------------------------------------------


def _sparse_teachers():
    """(id, X, y, encoder with sparse output, student class, forest) cases."""
    rng = np.random.default_rng(0)
    n = 160
    cities = rng.choice(["paris", "rome", "oslo", "lima", "kyiv"], n)
    frame = pd.DataFrame({"city": cities, "size": rng.normal(size=n)})
    y_reg = (cities == "rome") * 3.0 + frame["size"].to_numpy() + rng.normal(scale=0.3, size=n)
    # sparse_threshold=1: the ColumnTransformer returns a sparse matrix.
    columns = make_column_transformer(
        (OneHotEncoder(), ["city"]), remainder="passthrough", sparse_threshold=1.0
    )
    words = np.array(["good", "bad", "film", "movie", "plot", "acting"])
    docs = [" ".join(rng.choice(words, 3)) for _ in range(n)]
    labels = np.array(["pos" if "good" in d else "neg" for d in docs])
    forest = RandomForestClassifier(8, random_state=0)
    return [
        (
            "onehot-regressor",
            frame[["city"]],
            y_reg,
            OneHotEncoder(),
            HydraDistilledRegressor,
            RandomForestRegressor(8, random_state=0),
        ),
        (
            "columns-classifier",
            frame,
            (y_reg > 1).astype(int),
            columns,
            HydraDistilledClassifier,
            forest,
        ),
        ("tfidf-classifier", docs, labels, TfidfVectorizer(), HydraDistilledClassifier, forest),
    ]


SPARSE = _sparse_teachers()


@pytest.mark.parametrize(
    "X, y, encoder, Est, forest", [c[1:] for c in SPARSE], ids=[c[0] for c in SPARSE]
)
def test_sparse_preprocessing_teacher(X, y, encoder, Est, forest):
    teacher = make_pipeline(encoder, forest).fit(X, y)
    assert sp.issparse(teacher[:-1].transform(X))
    params = {**TINY, "lr": 1e-2, "max_epochs": 40, "phase1_epochs": 20}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # point regressors: no aleatoric part
        t = predict_uncertainty(teacher, X)
        student = Est(teacher, **params).fit(X, y)
        s = predict_uncertainty(student, X)
    assert t.shape == s.shape == (len(y), 3)
    assert np.isfinite(t["epistemic"]).all() and np.isfinite(s["epistemic"]).all()
    assert student.input_shape_ == (teacher[:-1].transform(X[:2]).shape[1],)
    if Est is HydraDistilledClassifier:
        assert np.mean(student.predict(X) == teacher.predict(X)) > 0.85
    else:
        assert np.corrcoef(student.predict(X), teacher.predict(X))[0, 1] > 0.85


# ---------------------------------------------------------------------------
# missing values: the student takes NaN when its teacher does
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gappy():
    """Wine with 20% of the values missing, and a forest fitted on it (forests take NaN)."""
    X, y = load_wine(return_X_y=True)
    X = X.copy()
    X[np.random.default_rng(0).random(X.shape) < 0.2] = np.nan
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    student = HydraDistilledClassifier(forest, random_state=0, max_epochs=150).fit(X)
    return X, y, forest, student


def test_student_takes_missing_values_when_its_teacher_does(gappy):
    X, _, forest, student = gappy
    assert student.__sklearn_tags__().input_tags.allow_nan
    assert student.teacher_.allows_nan
    gaps = np.isnan(X).any(axis=1)
    assert np.mean(student.predict(X[gaps]) == forest.predict(X[gaps])) > 0.9
    u = student.predict_uncertainty(X)
    assert np.isfinite(u.to_numpy()).all()
    # Missing everywhere: the learned fills and the indicators still give a prediction.
    assert np.isfinite(student.predict_proba(np.full((2, X.shape[1]), np.nan))).all()
    # Every feature was missing somewhere: one indicator column each.
    module = student.net_.module_
    assert module.fill.missing.tolist() == list(range(X.shape[1]))


def test_forest_students_predict_rows_with_missing_values(
    diabetes, hydra, hydra_r, coloured, coloured_hydra
):
    X, _ = diabetes
    # Teachers that take NaN: a forest regressor, and a Pipeline passing a numeric column
    # through to a forest. Without NaN in training, a missing value is filled (the mean).
    assert hydra_r.teacher_.allows_nan and coloured_hydra.teacher_.allows_nan
    assert np.isfinite(hydra_r.predict(_with(X[:3], 0, 0, np.nan))).all()
    frame = coloured[0].head(3).assign(sepal_width=np.nan)
    assert np.isfinite(coloured_hydra.predict_proba(frame)).all()


def test_missing_values_refused_when_the_teacher_does_not_take_them(iris):
    X, y = iris
    members = [LogisticRegression(C=c, max_iter=500).fit(X, y) for c in (0.1, 1.0)]
    student = HydraDistilledClassifier(members, **TINY)
    assert not student.__sklearn_tags__().input_tags.allow_nan
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        student.fit(X_nan)
    fitted = student.fit(X)
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(X_nan)


# ---------------------------------------------------------------------------
# a list of Pipelines that share their preprocessing (a seed ensemble on a raw table)
# ---------------------------------------------------------------------------


def test_seed_ensemble_of_pipelines_on_a_raw_dataframe(coloured):
    frame, y, _ = coloured
    encoder = make_column_transformer((OneHotEncoder(), ["colour"]), remainder="passthrough")
    members = [
        make_pipeline(clone(encoder), RandomForestClassifier(n_estimators=4, random_state=s)).fit(
            frame, y
        )
        for s in range(3)
    ]
    student = HydraDistilledClassifier(members, **TINY).fit(frame)
    # One shared preprocessing: the student learns from its numeric output.
    assert student.teacher_.preprocessor is not None and student.n_heads_ == 3
    assert student.input_shape_ == (6,)  # 2 one-hot columns + 4 numbers
    assert student.predict_uncertainty(frame.head()).index.equals(frame.index[:5])


def test_pipelines_with_different_preprocessing_say_how_to_share_it(coloured):
    frame, y, _ = coloured
    encoder = make_column_transformer(
        (OneHotEncoder(), ["colour"]), (StandardScaler(), ["sepal_length"]), remainder="drop"
    )
    # Fitted on different rows: the scalers differ.
    members = [
        make_pipeline(clone(encoder), LogisticRegression(max_iter=500)).fit(frame[i::2], y[i::2])
        for i in range(2)
    ]
    with pytest.raises(ValueError, match=r"do not share one preprocessing.*FrozenEstimator\(pre\)"):
        HydraDistilledClassifier(members, **TINY).fit(frame)
