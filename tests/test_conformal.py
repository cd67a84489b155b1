"""Split-conformal intervals and sets: coverage, widths, hand-computed quantiles, errors.

One tiny student per task is fitted once on a training part; the coverage
tests then recalibrate it on many random splits of the remaining rows, which
only costs predictions.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.datasets import make_blobs
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor, predict_uncertainty
from skhydra.conformal import ConformalClassifier, ConformalRegressor, conformal_quantile

LEVEL = 0.9
N_SPLITS = 40
N_CALIBRATION = 500
TINY = {"body_layer_sizes": (16,), "phase1_epochs": 5, "max_epochs": 15, "random_state": 0}


def heteroscedastic(n, seed=0):
    """1-D data whose noise std grows from 0.05 at x = 0 to 2.05 at x = 4."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 4, n)
    y = 0.5 * x + (0.05 + 0.5 * x) * rng.standard_normal(n)
    return x.reshape(-1, 1), y


@pytest.fixture(scope="module")
def regression():
    X, y = heteroscedastic(2000)
    forest = RandomForestRegressor(n_estimators=10, min_samples_leaf=10, random_state=0)
    forest.fit(X[:400], y[:400])
    # Enough epochs for the heads' variances to learn the noise (15 leave the student
    # with the forest's split-point encoding short of it).
    student = HydraDistilledRegressor(forest, **{**TINY, "max_epochs": 60}).fit(X[:400], y[:400])
    return student, X[400:], y[400:]


@pytest.fixture(scope="module")
def classification():
    X, y = make_blobs(n_samples=2000, centers=3, cluster_std=2.5, random_state=0)
    forest = RandomForestClassifier(n_estimators=10, min_samples_leaf=5, random_state=0)
    forest.fit(X[:400], y[:400])
    student = HydraDistilledClassifier(forest, **TINY).fit(X[:400])
    return student, X[400:], y[400:]


def splits(n):
    """Random calibration / test splits of n rows."""
    for seed in range(N_SPLITS):
        order = np.random.default_rng(seed).permutation(n)
        yield seed, order[:N_CALIBRATION], order[N_CALIBRATION:]


def interval_coverage_and_width(student, X, y, **params):
    coverage, width = [], []
    for _, calib, test in splits(len(X)):
        conformal = ConformalRegressor(student, confidence_level=LEVEL, **params)
        interval = conformal.fit(X[calib], y[calib]).predict_interval(X[test])
        inside = (interval[:, 0] <= y[test]) & (y[test] <= interval[:, 1])
        coverage.append(inside.mean())
        width.append(np.mean(interval[:, 1] - interval[:, 0]))
    return np.mean(coverage), np.mean(width)


def set_coverage_and_size(student, X, y, **params):
    coverage, size = [], []
    for seed, calib, test in splits(len(X)):
        conformal = ConformalClassifier(
            student, confidence_level=LEVEL, random_state=seed, **params
        )
        sets = conformal.fit(X[calib], y[calib]).predict_set(X[test])
        coverage.append(sets[np.arange(len(test)), y[test]].mean())
        size.append(sets.sum(axis=1).mean())
    return np.mean(coverage), np.mean(size)


# -- the quantile ------------------------------------------------------------------


def test_quantile_has_the_finite_sample_correction():
    scores = np.arange(1.0, 11.0)
    # k = ceil(11 * 0.8) = 9; the plain 0.8-quantile would be 8.2 and ceil(10 * 0.8) = 8.
    assert conformal_quantile(scores, 0.8) == 9.0
    assert conformal_quantile(scores[::-1], 0.85) == 10.0  # k = ceil(9.35) = 10
    # (99 + 1) * 0.55 is 55.00000000000001 in floats; the rank is exactly 55.
    assert conformal_quantile(np.arange(1.0, 100.0), 0.55) == 55.0


@pytest.mark.parametrize("level, smallest", [(0.8, 4), (0.9, 9), (0.95, 19)])
def test_smallest_calibration_set(level, smallest):
    assert conformal_quantile(np.ones(smallest), level) == 1.0
    with pytest.raises(ValueError, match=f"needs at least {smallest} rows"):
        conformal_quantile(np.ones(smallest - 1), level)


# -- regression --------------------------------------------------------------------


class StubRegressor(RegressorMixin, BaseEstimator):
    """Predicts mean X[:, 0] with std X[:, 1] (NaN where X[:, 1] is NaN)."""

    def fit(self, X, y=None):
        self.is_fitted_ = True
        return self

    def predict(self, X, return_std=False):
        X = np.asarray(X, dtype=np.float64)
        return (X[:, 0], X[:, 1]) if return_std else X[:, 0]


def test_regression_quantile_and_interval_by_hand():
    std = np.arange(1.0, 11.0)
    X = np.column_stack([np.zeros(10), std])
    y = std * np.arange(0.5, 5.5, 0.5) * np.array([1, -1] * 5)  # |y| / std = 0.5, 1, ..., 5
    stub = StubRegressor().fit(X)

    normalized = ConformalRegressor(stub, confidence_level=0.8).fit(X, y)
    np.testing.assert_allclose(normalized.conformity_scores_, np.arange(0.5, 5.5, 0.5))
    assert normalized.quantile_ == pytest.approx(4.5)  # the 9th of 10 scores
    assert normalized.n_calibration_ == 10
    interval = normalized.predict_interval([[1.0, 2.0], [-1.0, 0.5]])
    np.testing.assert_allclose(interval, [[1.0 - 9.0, 1.0 + 9.0], [-1.0 - 2.25, -1.0 + 2.25]])
    np.testing.assert_allclose(normalized.predict([[1.0, 2.0]]), [1.0])

    absolute = ConformalRegressor(stub, confidence_level=0.8, score="absolute").fit(X, y)
    assert absolute.quantile_ == pytest.approx(40.5)  # |y| = 0.5, 2, 4.5, ..., 50
    np.testing.assert_allclose(absolute.predict_interval([[1.0, 2.0]]), [[-39.5, 41.5]])


def test_regression_coverage(regression):
    coverage, _ = interval_coverage_and_width(*regression)
    assert abs(coverage - LEVEL) <= 0.02


def test_normalized_intervals_are_narrower_on_heteroscedastic_data(regression):
    normalized = interval_coverage_and_width(*regression, score="normalized")
    absolute = interval_coverage_and_width(*regression, score="absolute")
    assert abs(normalized[0] - LEVEL) <= 0.02 and abs(absolute[0] - LEVEL) <= 0.02
    # The student's std grows with the noise: intervals narrow at small x, wide at large x.
    assert normalized[1] < 0.92 * absolute[1]


def test_normalized_intervals_follow_the_noise(regression):
    student, X, y = regression
    conformal = ConformalRegressor(student).fit(X[:500], y[:500])
    width = np.diff(conformal.predict_interval([[0.5], [3.5]]), axis=1)[:, 0]
    assert width[1] > 2 * width[0]


def test_epistemic_normalisation_keeps_coverage(regression):
    student, X, y = regression
    coverage, _ = interval_coverage_and_width(student, X, y, uncertainty="epistemic")
    assert abs(coverage - LEVEL) <= 0.02
    conformal = ConformalRegressor(student, uncertainty="epistemic").fit(X[:500], y[:500])
    mean = student.predict(X[500:510])
    epistemic = student.predict_uncertainty(X[500:510])["epistemic"].to_numpy()
    half_width = conformal.quantile_ * np.sqrt(epistemic)
    np.testing.assert_allclose(
        conformal.predict_interval(X[500:510]),
        np.column_stack([mean - half_width, mean + half_width]),
    )


def test_pipeline_and_dataframe():
    X, y = heteroscedastic(300, seed=1)
    frame = pd.DataFrame({"x": X[:, 0], "noise": np.random.default_rng(1).normal(size=300)})
    pipe = make_pipeline(StandardScaler(), GaussianProcessRegressor(alpha=0.5))
    pipe.fit(frame[:100], y[:100])
    conformal = ConformalRegressor(pipe).fit(frame[100:200], pd.Series(y[100:200]))
    assert list(conformal.feature_names_in_) == ["x", "noise"]
    assert conformal.n_features_in_ == 2
    mean, std = pipe.predict(frame[200:], return_std=True)
    expected = np.column_stack([mean - conformal.quantile_ * std, mean + conformal.quantile_ * std])
    np.testing.assert_allclose(conformal.predict_interval(frame[200:]), expected)


def test_student_in_a_pipeline_on_a_dataframe():
    X, y = heteroscedastic(600, seed=2)
    frame = pd.DataFrame({"x": X[:, 0], "z": np.random.default_rng(2).normal(size=600)})
    forest = RandomForestRegressor(n_estimators=5, min_samples_leaf=10, random_state=0)
    pipe = make_pipeline(StandardScaler(), HydraDistilledRegressor(forest, **TINY))
    pipe.fit(frame[:200], y[:200])
    for estimator in (pipe, FrozenEstimator(pipe)):
        conformal = ConformalRegressor(estimator, uncertainty="epistemic")
        conformal.fit(frame[200:400], y[200:400])
        epistemic = predict_uncertainty(pipe, frame[400:])["epistemic"].to_numpy()
        mean = pipe.predict(frame[400:])
        half_width = conformal.quantile_ * np.sqrt(epistemic)
        expected = np.column_stack([mean - half_width, mean + half_width])
        np.testing.assert_allclose(conformal.predict_interval(frame[400:]), expected)
        assert list(conformal.feature_names_in_) == ["x", "z"]


# -- classification ----------------------------------------------------------------


class StubClassifier(ClassifierMixin, BaseEstimator):
    """predict_proba returns X: each row is already a probability vector."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.asarray(X, dtype=np.float64)

    def predict(self, X):
        return self.classes_[np.argmax(X, axis=1)]


PROBA = np.array([[0.6, 0.3, 0.1], [0.5, 0.2, 0.3], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
LABELS = np.array(["a", "c", "a", "c"])
NEW = [[0.35, 0.4, 0.25], [0.9, 0.05, 0.05]]
EXPECTED_SETS = [[True, True, False], [True, False, False]]


def test_lac_by_hand():
    stub = StubClassifier().fit(PROBA, ["a", "b", "c", "a"])
    conformal = ConformalClassifier(stub, confidence_level=0.6, score="lac").fit(PROBA, LABELS)
    # Scores 1 - p(true) = 0.4, 0.7, 0.8, 0.2; k = ceil(5 * 0.6) = 3 -> 0.7.
    np.testing.assert_allclose(conformal.conformity_scores_, [0.4, 0.7, 0.8, 0.2])
    assert conformal.quantile_ == pytest.approx(0.7)
    np.testing.assert_array_equal(
        conformal.predict_set(NEW), [[True, True, False], [True] + [False] * 2]
    )
    np.testing.assert_array_equal(conformal.classes_, ["a", "b", "c"])


def test_deterministic_aps_by_hand():
    stub = StubClassifier().fit(PROBA, ["a", "b", "c", "a"])
    conformal = ConformalClassifier(stub, confidence_level=0.6, randomized=False)
    conformal.fit(PROBA, LABELS)
    # Mass of the labels ranked above the true one, plus its own: 0.6, 0.8, 0.9, 0.8.
    np.testing.assert_allclose(conformal.conformity_scores_, [0.6, 0.8, 0.9, 0.8])
    assert conformal.quantile_ == pytest.approx(0.8)
    # Row 1: b (0.4) then a (0.75) fit under 0.8, c (1.0) does not. Row 2: a alone
    # (0.9) is over 0.8, but the most probable label is always kept.
    np.testing.assert_array_equal(
        conformal.predict_set(NEW), [[True, True, False], [True] + [False] * 2]
    )


def test_randomized_aps_lies_between_its_bounds():
    stub = StubClassifier().fit(PROBA, ["a", "b", "c", "a"])
    conformal = ConformalClassifier(stub, confidence_level=0.6, random_state=0).fit(PROBA, LABELS)
    # Each score is the mass above the true label plus a uniform fraction of its own.
    above = np.array([0.0, 0.5, 0.7, 0.0])
    own = PROBA[np.arange(4), [0, 2, 0, 2]]
    fraction = (conformal.conformity_scores_ - above) / own
    assert np.all((fraction >= 0) & (fraction <= 1)) and np.ptp(fraction) > 0
    again = clone(conformal).fit(PROBA, LABELS)
    np.testing.assert_array_equal(again.conformity_scores_, conformal.conformity_scores_)
    np.testing.assert_array_equal(again.predict_set(NEW * 50), conformal.predict_set(NEW * 50))


@pytest.mark.parametrize("score", ["aps", "lac"])
def test_classification_coverage(classification, score):
    coverage, size = set_coverage_and_size(*classification, score=score)
    assert abs(coverage - LEVEL) <= 0.02
    assert 1 < size < 3


def test_deterministic_aps_is_conservative(classification):
    randomized = set_coverage_and_size(*classification, score="aps")
    deterministic = set_coverage_and_size(*classification, score="aps", randomized=False)
    assert deterministic[0] >= LEVEL - 0.02
    assert deterministic[0] >= randomized[0] and deterministic[1] >= randomized[1]


def test_aps_sets_grow_with_the_students_uncertainty(classification):
    student, X, y = classification
    conformal = ConformalClassifier(student, random_state=0).fit(X[:500], y[:500])
    size = conformal.predict_set(X[500:]).sum(axis=1)
    uncertain = student.predict_uncertainty(X[500:])["total"].to_numpy()
    high = uncertain > np.median(uncertain)
    assert size[high].mean() > size[~high].mean() + 0.5


def test_classifier_pipeline_with_string_labels():
    X, y = make_blobs(n_samples=300, centers=3, cluster_std=3.0, random_state=1)
    names = np.array(["cat", "dog", "emu"])[y]
    frame = pd.DataFrame(X, columns=["u", "v"])
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame[:100], names[:100])
    conformal = ConformalClassifier(pipe, score="lac").fit(frame[100:200], names[100:200])
    sets = conformal.predict_set(frame[200:])
    np.testing.assert_array_equal(conformal.classes_, ["cat", "dog", "emu"])
    proba = pipe.predict_proba(frame[200:])
    np.testing.assert_array_equal(sets, 1 - proba <= conformal.quantile_)
    np.testing.assert_array_equal(conformal.predict(frame[200:]), pipe.predict(frame[200:]))


# -- errors and scikit-learn conventions -------------------------------------------


@pytest.mark.parametrize(
    "wrapper, estimator",
    [
        (ConformalRegressor, HydraDistilledRegressor()),
        (ConformalRegressor, LinearRegression()),
        (ConformalClassifier, LogisticRegression()),
    ],
)
def test_estimator_must_be_fitted(wrapper, estimator):
    with pytest.raises(NotFittedError, match="calibrates a fitted estimator and never fits it"):
        wrapper(estimator).fit(np.zeros((20, 2)), np.arange(20) % 2)


def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        ConformalRegressor(StubRegressor().fit(None)).predict_interval([[0.0, 1.0]])


def test_too_small_calibration_set():
    stub = StubRegressor().fit(None)
    X = np.column_stack([np.zeros(8), np.ones(8)])
    with pytest.raises(ValueError, match="8 rows, too few for confidence_level=0.9.*at least 9"):
        ConformalRegressor(stub).fit(X, np.ones(8))
    ConformalRegressor(stub, confidence_level=0.8).fit(X, np.ones(8))


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, "high"])
def test_wrong_confidence_level(level):
    with pytest.raises(InvalidParameterError, match="confidence_level"):
        ConformalRegressor(StubRegressor().fit(None), confidence_level=level).fit(
            np.ones((20, 2)), np.ones(20)
        )


def test_estimator_without_return_std():
    X, y = heteroscedastic(50)
    linear = LinearRegression().fit(X, y)
    with pytest.raises(TypeError, match=r"return_std=True.*score=\"absolute\""):
        ConformalRegressor(linear).fit(X, y)
    with pytest.raises(TypeError, match="skhydra.predict_uncertainty supports"):
        ConformalRegressor(linear, uncertainty="epistemic").fit(X, y)
    conformal = ConformalRegressor(linear, score="absolute").fit(X, y)
    assert conformal.predict_interval(X).shape == (50, 2)


def test_nan_std_is_refused():
    X = np.column_stack([np.zeros(20), np.r_[np.ones(19), np.nan]])
    with pytest.raises(ValueError, match="standard deviation is NaN"):
        ConformalRegressor(StubRegressor().fit(None)).fit(X, np.ones(20))


def test_unknown_labels_are_refused():
    stub = StubClassifier().fit(PROBA, ["a", "b", "c", "a"])
    with pytest.raises(ValueError, match=r"not in the estimator's classes_.*\['z'\]"):
        ConformalClassifier(stub, confidence_level=0.6).fit(PROBA, ["a", "b", "z", "a"])


def test_clone_keeps_a_fitted_estimator(regression):
    student = regression[0]
    conformal = ConformalRegressor(student, confidence_level=0.8, score="absolute")
    copy = clone(conformal)
    assert copy.estimator is student
    assert copy.get_params()["confidence_level"] == 0.8
    assert "estimator__body_layer_sizes" in copy.get_params()
    copy.set_params(confidence_level=0.95)
    assert copy.confidence_level == 0.95 and conformal.confidence_level == 0.8
    unfitted = LinearRegression()
    assert clone(ConformalRegressor(unfitted)).estimator is not unfitted
    fitted = ConformalRegressor(student).fit(*regression[1:])
    assert not hasattr(clone(fitted), "quantile_")
    assert fitted.estimator_ is student


# -- MAPIE -------------------------------------------------------------------------


def test_mapie_computes_the_same_intervals_and_sets(regression, classification):
    pytest.importorskip("mapie")
    from mapie.classification import SplitConformalClassifier
    from mapie.conformity_scores import AbsoluteConformityScore, StdConformityScore
    from mapie.regression import SplitConformalRegressor

    student, X, y = regression
    n = 500
    pairs = [("normalized", StdConformityScore()), ("absolute", AbsoluteConformityScore())]
    for score, mapie_score in pairs:
        reference = SplitConformalRegressor(
            student, confidence_level=LEVEL, conformity_score=mapie_score, prefit=True
        ).conformalize(X[:n], y[:n])
        _, interval = reference.predict_interval(X[n:])
        conformal = ConformalRegressor(student, confidence_level=LEVEL, score=score)
        ours = conformal.fit(X[:n], y[:n]).predict_interval(X[n:])
        np.testing.assert_allclose(ours[:, 1], interval[:, 1, 0])
        if score == "absolute":
            np.testing.assert_allclose(ours[:, 0], interval[:, 0, 0])
        else:
            # MAPIE 1.6's StdConformityScore puts the lower bound at the
            # ceil(0.1 * (n + 1)) = 51st largest score, one rank below the
            # ceil(0.9 * (n + 1)) = 451st smallest used for the upper bound.
            mean, std = student.predict(X[n:], return_std=True)
            lower = np.sort(conformal.conformity_scores_)[n - 51]
            np.testing.assert_allclose(interval[:, 0, 0], mean - lower * std)

    student, X, y = classification
    reference = SplitConformalClassifier(
        student, confidence_level=LEVEL, conformity_score="lac", prefit=True
    ).conformalize(X[:n], y[:n])
    _, sets = reference.predict_set(X[n:])
    conformal = ConformalClassifier(student, confidence_level=LEVEL, score="lac").fit(X[:n], y[:n])
    np.testing.assert_array_equal(conformal.predict_set(X[n:]), sets[:, :, 0])
