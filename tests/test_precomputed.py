"""Precomputed member predictions as a teacher (skhydra/ensembles/_precomputed.py).

A student fitted on :class:`MemberPredictions` stored in a NumPy array, a
memmap, a zarr or a Dask array predicts exactly like one fitted on the live
ensemble; the arrays are read chunk by chunk, never whole; bad predictions and
rows they were not computed on are refused with messages that say which.
"""

import numpy as np
import pytest
from conftest import TINY
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import BayesianRidge, LogisticRegression
from sklearn.naive_bayes import GaussianNB

import skhydra
from skhydra import HydraDistilledClassifier, HydraDistilledRegressor, predict_uncertainty
from skhydra.ensembles import MemberPredictions, predict_members, resolve_teacher
from skhydra.ensembles._kinds import accepts_nan, is_fitted
from skhydra.ensembles._precomputed import PrecomputedTeacher
from skhydra.ensembles._teacher import CHUNK_ROWS

#: Synthetic rows have no precomputed predictions: until "auto" knows it, say so.
# Stored predictions carry no trees: no split points to encode at, no bootstrap samples
# for out-of-bag views. The live students compared with them go without both.
SETTINGS = dict(TINY, augmentation=None, feature_encoding=None, out_of_bag=False)

STORAGES = ["numpy", "memmap", "zarr", "dask"]


def _stored(kind, values, path):
    """``values`` written to (and read back from) the storage ``kind`` under ``path``."""
    if kind == "numpy":
        return values
    if kind == "memmap":
        out = np.memmap(path.with_suffix(".dat"), dtype=values.dtype, mode="w+", shape=values.shape)
        out[:] = values
        out.flush()
        return np.memmap(path.with_suffix(".dat"), dtype=values.dtype, mode="r", shape=values.shape)
    chunks = (64,) + values.shape[1:]
    if kind == "zarr":
        zarr = pytest.importorskip("zarr")
        store = str(path.with_suffix(".zarr"))
        out = zarr.open_array(
            store=store, mode="w", shape=values.shape, dtype=values.dtype, chunks=chunks
        )
        out[:] = values
        return zarr.open_array(store=store, mode="r")
    da = pytest.importorskip("dask.array")
    return da.from_array(values, chunks=chunks)


class Recording:
    """An array-like that records every read and refuses to be converted whole."""

    def __init__(self, values):
        self.values = values
        self.shape, self.dtype = values.shape, values.dtype
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.values[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was loaded")


def _assert_read_in_chunks(recording, n_rows, chunk_rows):
    """Every read is a slice of at most ``chunk_rows`` rows; together they cover the rows once."""
    assert recording.reads, "nothing was read"
    assert all(isinstance(key, slice) and key.step is None for key in recording.reads)
    bounds = sorted((key.start, key.stop) for key in recording.reads)
    assert all(stop - start <= chunk_rows for start, stop in bounds)
    assert [start for start, _ in bounds] == [0] + [stop for _, stop in bounds[:-1]]
    assert bounds[-1][1] == n_rows


@pytest.fixture(scope="module")
def live_student(iris, forest):
    return HydraDistilledClassifier(forest, **SETTINGS).fit(iris[0])


@pytest.fixture(scope="module")
def live_student_r(diabetes, forest_r):
    return HydraDistilledRegressor(forest_r, **SETTINGS).fit(*diabetes)


@pytest.fixture(scope="module")
def gaussian_members(diabetes):
    """Three Bayesian ridges on bootstrap samples: members that predict a variance."""
    X, y = diabetes
    rng = np.random.default_rng(0)
    rows = [rng.integers(len(X), size=len(X)) for _ in range(3)]
    return [BayesianRidge().fit(X[r], y[r]) for r in rows]


@pytest.fixture(scope="module")
def live_student_gaussian(diabetes, gaussian_members):
    # Without y, the target scale comes from the first chunk of predictions.
    return HydraDistilledRegressor(gaussian_members, **SETTINGS).fit(diabetes[0])


# -- the student predicts exactly like the live teacher's -------------------------


@pytest.mark.parametrize("storage", STORAGES)
def test_classifier_matches_the_live_teacher(iris, forest, live_student, storage, tmp_path):
    X = iris[0]
    probabilities = _stored(storage, predict_members(forest, X), tmp_path / "p")
    labels = MemberPredictions(probabilities, classes=forest.classes_, tree_based=True)
    student = HydraDistilledClassifier(labels, **SETTINGS).fit(X)
    np.testing.assert_array_equal(student.predict_proba(X), live_student.predict_proba(X))
    np.testing.assert_array_equal(student.predict(X), live_student.predict(X))
    np.testing.assert_array_equal(
        student.predict_uncertainty(X).to_numpy(), live_student.predict_uncertainty(X).to_numpy()
    )
    assert student.ensemble_ is labels
    assert student.n_members_ == forest.n_estimators
    assert student.head_matching_ == live_student.head_matching_ == "rank"
    np.testing.assert_array_equal(student.classes_, forest.classes_)


@pytest.mark.parametrize("storage", STORAGES)
def test_point_regressor_matches_the_live_teacher(
    diabetes, forest_r, live_student_r, storage, tmp_path
):
    X, y = diabetes
    means, variances = predict_members(forest_r, X)
    assert np.isnan(variances).all()
    labels = MemberPredictions(_stored(storage, means, tmp_path / "m"), tree_based=True)
    # y gives point members their variance (the residuals), as for the live forest.
    student = HydraDistilledRegressor(labels, **SETTINGS).fit(X, y)
    for got, expected in zip(
        student.predict(X, return_std=True), live_student_r.predict(X, return_std=True), strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        student.predict_uncertainty(X).to_numpy(),
        live_student_r.predict_uncertainty(X).to_numpy(),
    )


@pytest.mark.parametrize("storage", STORAGES)
def test_gaussian_regressor_matches_the_live_teacher(
    diabetes, gaussian_members, live_student_gaussian, storage, tmp_path
):
    X = diabetes[0]
    # A live teacher's members see X as the student validates it: float32.
    means, variances = predict_members(gaussian_members, X.astype(np.float32))
    labels = MemberPredictions(
        _stored(storage, means[:, :, None], tmp_path / "m"),
        variances=_stored(storage, variances[:, :, None], tmp_path / "v"),
    )
    student = HydraDistilledRegressor(labels, **SETTINGS).fit(X)
    for got, expected in zip(
        student.predict(X, return_std=True),
        live_student_gaussian.predict(X, return_std=True),
        strict=True,
    ):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        student.predict_uncertainty(X).to_numpy(),
        live_student_gaussian.predict_uncertainty(X).to_numpy(),
    )
    assert student.head_matching_ == "member"


def test_students_with_nan_in_X_match(iris):
    X, y = iris[0].copy(), iris[1]
    X[::7, 1] = np.nan
    forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    live = HydraDistilledClassifier(forest, **SETTINGS).fit(X)
    labels = MemberPredictions(
        predict_members(forest, X), classes=forest.classes_, tree_based=True, allow_nan=True
    )
    student = HydraDistilledClassifier(labels, **SETTINGS).fit(X)
    np.testing.assert_array_equal(student.predict_proba(X), live.predict_proba(X))
    refusing = MemberPredictions(predict_members(forest, X), classes=forest.classes_)
    with pytest.raises(ValueError, match="NaN"):
        HydraDistilledClassifier(refusing, **SETTINGS).fit(X)


@pytest.mark.parametrize("storage", ["memmap", "zarr"])
def test_rows_and_predictions_both_on_disk(diabetes, forest_r, storage, tmp_path):
    """X read from disk block by block, labelled by predictions read from disk."""
    X, y = diabetes
    X_disk = _stored(storage, X.astype(np.float32), tmp_path / "X")
    live = HydraDistilledRegressor(forest_r, **SETTINGS).fit(X_disk, y)
    means = _stored(storage, predict_members(forest_r, X)[0], tmp_path / "m")
    labels = MemberPredictions(means, tree_based=True, allow_nan=True)
    student = HydraDistilledRegressor(labels, **SETTINGS).fit(X_disk, y)
    np.testing.assert_array_equal(student.predict(X), live.predict(X))
    with pytest.raises(ValueError, match="only label the rows they were computed on"):
        HydraDistilledRegressor(labels, **SETTINGS).fit(X_disk[:100], y[:100])


# -- teacher-side functions ------------------------------------------------------


def test_predict_members_and_uncertainty_match_the_live_ensemble(iris, forest):
    X = iris[0]
    live = predict_members(forest, X)
    labels = MemberPredictions(live, classes=forest.classes_)
    got = predict_members(labels, X)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, live)
    np.testing.assert_array_equal(
        predict_uncertainty(labels, X).to_numpy(), predict_uncertainty(forest, X).to_numpy()
    )


def test_regression_layout_and_uncertainty_match(diabetes, gaussian_members, forest_r):
    X = diabetes[0]
    means, variances = predict_members(gaussian_members, X)
    for shape in (means.shape, means.shape + (1,)):
        stored = MemberPredictions(means.reshape(shape), variances=variances.reshape(shape))
        got = predict_members(stored, X)
        for a, b in zip(got, (means, variances), strict=True):
            assert a.dtype == np.float64 and a.shape == means.shape
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        predict_uncertainty(MemberPredictions(means, variances=variances), X).to_numpy(),
        predict_uncertainty(gaussian_members, X).to_numpy(),
    )
    point = MemberPredictions(predict_members(forest_r, X)[0])
    assert np.isnan(predict_members(point, X)[1]).all()
    with pytest.warns(UserWarning, match="no variance"):
        got, expected = predict_uncertainty(point, X), predict_uncertainty(forest_r, X)
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())


def test_unsorted_classes_are_reordered(iris, forest):
    """Columns in any class order give the teacher's sorted classes_ and columns."""
    X = iris[0]
    live = predict_members(forest, X)
    labels = MemberPredictions(live[:, :, ::-1], classes=forest.classes_[::-1])
    teacher = resolve_teacher(labels, X=X)
    np.testing.assert_array_equal(teacher.classes_, forest.classes_)
    np.testing.assert_array_equal(teacher.predict_members(X), live)


def test_string_classes(iris, iris_names, forest):
    X = iris[0]
    names = np.array(["setosa", "versicolor", "virginica"])
    labels = MemberPredictions(predict_members(forest, X), classes=names)
    student = HydraDistilledClassifier(labels, **SETTINGS).fit(X, iris_names)
    assert set(student.predict(X)) <= set(names)
    with pytest.raises(ValueError, match="labels the ensemble never saw"):
        HydraDistilledClassifier(labels, **SETTINGS).fit(X, np.where(iris[1] == 0, "x", "y"))


def test_weights_are_normalised_and_used(iris):
    X, y = iris
    voting = VotingClassifier(
        [("lr", LogisticRegression(max_iter=500)), ("nb", GaussianNB())],
        voting="soft",
        weights=[1.0, 3.0],
    ).fit(X, y)
    labels = MemberPredictions(predict_members(voting, X), classes=[0, 1, 2], weights=[1, 3])
    teacher = resolve_teacher(labels, X=X)
    np.testing.assert_allclose(teacher.weights, [0.25, 0.75])
    np.testing.assert_allclose(
        predict_uncertainty(labels, X).to_numpy(), predict_uncertainty(voting, X).to_numpy()
    )


def test_teacher_describes_the_predictions(iris, forest):
    X = iris[0]
    labels = MemberPredictions(
        predict_members(forest, X), classes=forest.classes_, tree_based=True, allow_nan=True
    )
    teacher = resolve_teacher(labels)
    assert isinstance(teacher, PrecomputedTeacher)
    assert teacher.ensemble is labels
    assert (teacher.task, teacher.n_members, teacher.labels_new_rows) == ("classifier", 8, False)
    assert teacher.tree_based and teacher.allows_nan and not teacher.has_variance
    assert resolve_teacher(teacher) is teacher
    assert is_fitted(labels) and accepts_nan(labels)
    assert not accepts_nan(MemberPredictions(np.zeros((3, 2))))
    assert resolve_teacher(forest).labels_new_rows


def test_clone_shares_the_predictions(iris, forest):
    labels = MemberPredictions(predict_members(forest, iris[0]), classes=forest.classes_)
    student = HydraDistilledClassifier(labels, **SETTINGS)
    assert clone(student).ensemble is labels
    assert "MemberPredictions(n_rows=150, n_members=8, classes=[0, 1, 2])" in repr(student)


def test_served_and_saved_students_predict_alike(iris, forest, tmp_path):
    X = iris[0]
    labels = MemberPredictions(predict_members(forest, X), classes=forest.classes_)
    student = HydraDistilledClassifier(labels, **SETTINGS).fit(X)
    served = student.without_teacher()
    np.testing.assert_array_equal(served.predict_proba(X), student.predict_proba(X))
    skhydra.dump(student, tmp_path / "student.skhydra")
    loaded = skhydra.load(tmp_path / "student.skhydra")
    np.testing.assert_array_equal(loaded.predict_proba(X), student.predict_proba(X))
    assert not loaded.teacher_.labels_new_rows


# -- read chunk by chunk, never whole ------------------------------------------------


def test_iter_predictions_reads_one_chunk_at_a_time(diabetes, gaussian_members):
    X = diabetes[0]
    means, variances = predict_members(gaussian_members, X)
    stored_means, stored_variances = Recording(means), Recording(variances)
    teacher = resolve_teacher(MemberPredictions(stored_means, variances=stored_variances))
    chunks = list(teacher.iter_predictions(X, chunk_rows=70))
    assert [(a, b) for a, b, _ in chunks] == [
        (0, 70),
        (70, 140),
        (140, 210),
        (210, 280),
        (280, 300),
    ]
    for recording in (stored_means, stored_variances):
        _assert_read_in_chunks(recording, len(X), 70)
    np.testing.assert_array_equal(np.concatenate([c[2][0] for c in chunks]), means)


def test_fit_reads_in_chunks(iris, forest, live_student, monkeypatch):
    X = iris[0]
    # Chunks of 40 rows: iris fits in one chunk of the default size.
    defaults = PrecomputedTeacher.iter_predictions.__kwdefaults__
    monkeypatch.setitem(defaults, "chunk_rows", 40)
    stored = Recording(predict_members(forest, X))
    labels = MemberPredictions(stored, classes=forest.classes_, tree_based=True)
    student = HydraDistilledClassifier(labels, **SETTINGS).fit(X)
    _assert_read_in_chunks(stored, len(X), 40)
    assert len(stored.reads) == 4
    np.testing.assert_array_equal(student.predict_proba(X), live_student.predict_proba(X))


def test_default_chunks_are_the_live_teachers(iris, forest):
    X = np.repeat(iris[0], 60, axis=0)  # 9000 rows: two chunks
    stored = Recording(np.repeat(predict_members(forest, iris[0]), 60, axis=0))
    teacher = resolve_teacher(MemberPredictions(stored, classes=forest.classes_))
    assert [(a, b) for a, b, _ in teacher.iter_predictions(X)] == [
        (0, CHUNK_ROWS),
        (CHUNK_ROWS, len(X)),
    ]
    _assert_read_in_chunks(stored, len(X), CHUNK_ROWS)


# -- rows without predictions --------------------------------------------------------


def test_fit_on_other_rows_is_refused(iris, forest):
    X = iris[0]
    labels = MemberPredictions(predict_members(forest, X), classes=forest.classes_)
    with pytest.raises(ValueError, match="only label the rows they were computed on.*150.*100"):
        HydraDistilledClassifier(labels, **SETTINGS).fit(X[:100])
    with pytest.raises(ValueError, match="only label the rows they were computed on"):
        predict_uncertainty(labels, X[:10])
    with pytest.raises(ValueError, match="only label the rows they were computed on"):
        predict_members(labels, np.vstack([X, X]))


def test_other_rows_of_the_same_number_are_refused(iris, forest):
    X = iris[0]
    labels = MemberPredictions(predict_members(forest, X), classes=forest.classes_)
    teacher = resolve_teacher(labels, X=X)
    np.testing.assert_array_equal(teacher.predict_members(X.astype(np.float32)), labels.predictions)
    synthetic = X + np.random.default_rng(0).normal(scale=0.1, size=X.shape)
    with pytest.raises(ValueError, match="only label the rows they were computed on.*not the X"):
        teacher.predict_members(synthetic)
    with pytest.raises(ValueError, match="only label the rows they were computed on"):
        teacher.iter_predictions(X[::-1])
    # Zero rows (no synthetic rows) ask for nothing.
    assert list(teacher.iter_predictions(X[:0])) == []


def test_stripped_teacher_says_it_holds_nothing(iris, forest):
    labels = MemberPredictions(predict_members(forest, iris[0]), classes=forest.classes_)
    student = HydraDistilledClassifier(labels, **SETTINGS).fit(iris[0])
    with pytest.raises(ValueError, match="holds no predictions"):
        student.without_teacher().teacher_.predict_members(iris[0])


@pytest.mark.parametrize("augmentation", ["noise", "mixup", "munge"])
def test_explicit_augmentation_is_refused(iris, forest, augmentation):
    labels = MemberPredictions(predict_members(forest, iris[0]), classes=forest.classes_)
    student = HydraDistilledClassifier(labels, **dict(SETTINGS, augmentation=augmentation))
    with pytest.raises(ValueError, match=f"augmentation='{augmentation}' needs a teacher that"):
        student.fit(iris[0])


def test_auto_augmentation_adds_no_rows(iris, forest, live_student):
    X = iris[0]
    stored = Recording(predict_members(forest, X))
    labels = MemberPredictions(stored, classes=forest.classes_, tree_based=True)
    student = HydraDistilledClassifier(labels, **dict(SETTINGS, augmentation="auto")).fit(X)
    # Only the real rows are labelled, so the student is the one fitted without augmentation.
    _assert_read_in_chunks(stored, len(X), CHUNK_ROWS)
    np.testing.assert_array_equal(student.predict_proba(X), live_student.predict_proba(X))


# -- bad predictions -------------------------------------------------------------------


def _probabilities(n_rows=20, n_members=3, n_classes=3):
    return np.full((n_rows, n_members, n_classes), 1.0 / n_classes, np.float32)


@pytest.mark.parametrize(
    "value, match",
    [
        (np.nan, "Member 2's precomputed probabilities for row 17 are NaN or infinite"),
        (np.inf, "Member 2's precomputed probabilities for row 17 are NaN or infinite"),
        (-0.5, "Member 2's precomputed probabilities for row 17 include a negative"),
        (0.9, "Member 2's precomputed probabilities for row 17 sum to 1.56667, not 1"),
    ],
)
def test_bad_probabilities_name_member_and_row(value, match):
    p = _probabilities()
    p[17, 2, 1] = value
    teacher = resolve_teacher(MemberPredictions(p, classes=[0, 1, 2]))
    with pytest.raises(ValueError, match=match):
        teacher.predict_members(np.zeros((20, 4)))
    # Within the tolerance of float32 rounding, probabilities pass.
    p[17, 2] = [0.3335, 0.3335, 0.333]
    teacher = resolve_teacher(MemberPredictions(p, classes=[0, 1, 2]))
    assert teacher.predict_members(np.zeros((20, 4))).shape == (20, 3, 3)


@pytest.mark.parametrize(
    "which, value, match",
    [
        ("means", np.nan, "Member 1's precomputed mean for row 5 is NaN or infinite"),
        ("means", -np.inf, "Member 1's precomputed mean for row 5 is NaN or infinite"),
        ("variances", -1.0, "Member 1's precomputed variance for row 5 is -1.0"),
        ("variances", np.nan, "Member 1's precomputed variance for row 5 is nan"),
    ],
)
def test_bad_regression_values_name_member_and_row(which, value, match):
    values = {"means": np.zeros((8, 2)), "variances": np.ones((8, 2))}
    values[which][5, 1] = value
    teacher = resolve_teacher(MemberPredictions(values["means"], variances=values["variances"]))
    with pytest.raises(ValueError, match=match):
        teacher.predict_members(np.zeros((8, 1)))


def test_values_are_checked_when_read_not_when_wrapped():
    p = _probabilities()
    p[0, 0, 0] = np.nan
    labels = MemberPredictions(Recording(p), classes=[0, 1, 2])
    assert labels.predictions.reads == []
    teacher = resolve_teacher(labels)
    with pytest.raises(ValueError, match="row 0"):
        teacher.predict_members(np.zeros((20, 1)))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(predictions=np.zeros(5)), ValueError, r"got shape \(5,\)"),
        (dict(predictions=np.zeros((2, 2, 2, 2))), ValueError, "got shape"),
        (dict(predictions=np.zeros((0, 3))), ValueError, "at least one row"),
        (dict(predictions=_probabilities()), ValueError, "no classes were given"),
        (dict(predictions=_probabilities(), classes=[0, 1]), ValueError, "2 labels"),
        (dict(predictions=_probabilities(), classes=[0, 1, 1]), ValueError, "repeated"),
        (dict(predictions=np.zeros((4, 3)), classes=[0, 1, 2]), ValueError, "classification"),
        (
            dict(predictions=_probabilities(), classes=[0, 1, 2], variances=_probabilities()),
            ValueError,
            "variances are for regression",
        ),
        (
            dict(predictions=np.zeros((4, 3)), variances=np.zeros((4, 2))),
            ValueError,
            "variances must have the shape",
        ),
        (dict(predictions=np.zeros((4, 3)), weights=[1, 2]), ValueError, "one weight per"),
        (dict(predictions=np.zeros((4, 3)), weights=[1, -1, 2]), ValueError, "non-negative"),
        (dict(predictions=np.zeros((4, 3)), weights=[0, 0, 0]), ValueError, "not all zero"),
        (dict(predictions=np.array([["a", "b"]])), TypeError, "must hold numbers"),
    ],
)
def test_bad_member_predictions_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        MemberPredictions(**kwargs)


def test_students_refuse_the_other_task(iris, forest, diabetes):
    labels = MemberPredictions(predict_members(forest, iris[0]), classes=forest.classes_)
    with pytest.raises(ValueError, match="use HydraDistilledClassifier"):
        HydraDistilledRegressor(labels, **SETTINGS).fit(iris[0])
    means = MemberPredictions(np.zeros((len(diabetes[0]), 3)))
    with pytest.raises(ValueError, match="pass classes="):
        HydraDistilledClassifier(means, **SETTINGS).fit(diabetes[0])
