"""The display classes: values from estimators and predictions, and what they draw."""

import importlib
import sys
import warnings

import numpy as np
import pytest
from conftest import TINY
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra.ensembles import predict_members
from skhydra.metrics import expected_calibration_error, ood_auroc, uncertainty_spearman
from skhydra.plotting import (
    ReliabilityDisplay,
    UncertaintyComparisonDisplay,
    UncertaintyShiftDisplay,
)
from skhydra.uncertainty import regression_uncertainty

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def scaled_student(iris):
    """A Pipeline: a scaler, then a student of an unfitted forest fitted on its output."""
    teacher = RandomForestClassifier(n_estimators=5, random_state=0)
    return make_pipeline(StandardScaler(), HydraDistilledClassifier(teacher, **TINY)).fit(*iris)


def _predictions():
    rng = np.random.default_rng(0)
    teacher, student = rng.random(40), rng.random(40)
    return teacher, student


def _make(display, **kwargs):
    """Each display from small synthetic predictions."""
    rng = np.random.default_rng(0)
    if display is UncertaintyComparisonDisplay:
        return display.from_predictions(*_predictions(), **kwargs)
    if display is UncertaintyShiftDisplay:
        return display.from_predictions(rng.random(30), rng.random(20) + 0.5, **kwargs)
    proba = rng.dirichlet(np.ones(3), size=50)
    return display.from_predictions(rng.integers(0, 3, 50), proba, **kwargs)


DISPLAYS = [UncertaintyComparisonDisplay, UncertaintyShiftDisplay, ReliabilityDisplay]


class _RefuseMatplotlib:
    """A meta path finder that records and refuses every import of matplotlib."""

    def __init__(self):
        self.attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "matplotlib":
            self.attempts.append(name)
            raise ImportError(f"{name} was imported while importing skhydra.plotting")
        return None


def test_import_does_not_import_matplotlib():
    # A fresh import of skhydra (its dependencies stay loaded) with matplotlib made
    # unimportable; the modules of this session are put back afterwards.
    def ours(name):
        return name.partition(".")[0] in ("skhydra", "matplotlib")

    saved = {name: module for name, module in sys.modules.items() if ours(name)}
    finder = _RefuseMatplotlib()
    try:
        for name in saved:
            del sys.modules[name]
        sys.meta_path.insert(0, finder)
        fresh = importlib.import_module("skhydra.plotting")
    finally:
        sys.meta_path.remove(finder)
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert finder.attempts == []
    assert fresh is not sys.modules["skhydra.plotting"]  # it really was imported again
    assert hasattr(fresh, "ReliabilityDisplay")


def test_comparison_from_estimator_uses_own_ensemble(iris, forest, hydra):
    X, _ = iris
    disp = UncertaintyComparisonDisplay.from_estimator(hydra, X)
    teacher = predict_uncertainty(forest, X)["epistemic"].to_numpy()
    np.testing.assert_allclose(disp.teacher_uncertainty, teacher)
    np.testing.assert_allclose(disp.student_uncertainty, predict_uncertainty(hydra, X)["epistemic"])
    assert disp.spearman == uncertainty_spearman(teacher, disp.student_uncertainty)
    assert disp.scatter_.get_offsets().shape == (len(X), 2)
    both = np.r_[disp.teacher_uncertainty, disp.student_uncertainty]
    np.testing.assert_allclose(disp.line_.get_xdata(), [both.min(), both.max()])
    np.testing.assert_allclose(disp.line_.get_ydata(), disp.line_.get_xdata())
    labels = disp.ax_.get_legend_handles_labels()[1]
    assert labels[0] == f"HydraDistilledClassifier (Spearman = {disp.spearman:.3f})"
    assert disp.figure_ is disp.ax_.figure


def test_comparison_pipeline_teacher_sees_preprocessed_rows(iris, scaled_student):
    X, _ = iris
    disp = UncertaintyComparisonDisplay.from_estimator(scaled_student, X, kind="total")
    student = scaled_student[-1]
    expected = predict_uncertainty(student.ensemble_, scaled_student[:-1].transform(X))["total"]
    np.testing.assert_allclose(disp.teacher_uncertainty, expected)
    np.testing.assert_allclose(
        disp.student_uncertainty, predict_uncertainty(scaled_student, X)["total"]
    )
    assert disp.ax_.get_xlabel() == "Teacher total uncertainty"


def test_comparison_explicit_teacher(iris, hydra):
    X, _ = iris
    other = RandomForestClassifier(n_estimators=3, random_state=1).fit(*iris)
    disp = UncertaintyComparisonDisplay.from_estimator(hydra, X, teacher=other)
    np.testing.assert_allclose(disp.teacher_uncertainty, predict_uncertainty(other, X)["epistemic"])


def test_comparison_regressor_with_point_members_does_not_warn(diabetes, forest_r, hydra_r):
    X, _ = diabetes
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*predict no variance")
        disp = UncertaintyComparisonDisplay.from_estimator(hydra_r, X)
        shift = UncertaintyShiftDisplay.from_estimator(forest_r, X, X * 3.0)
    np.testing.assert_allclose(
        disp.teacher_uncertainty, regression_uncertainty(*predict_members(forest_r, X))[2]
    )
    assert np.isfinite(disp.spearman)
    assert disp.spearman == uncertainty_spearman(disp.teacher_uncertainty, disp.student_uncertainty)
    assert shift.score_out.shape == (300,)
    with pytest.raises(ValueError, match="NaN"):  # no aleatoric part without variances
        with pytest.warns(UserWarning, match="predict no variance"):
            UncertaintyShiftDisplay.from_estimator(forest_r, X, X, kind="total")


def test_comparison_errors(iris, forest, hydra):
    X, _ = iris
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        UncertaintyComparisonDisplay.from_predictions(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="kind must be one of"):
        UncertaintyComparisonDisplay.from_estimator(hydra, X, kind="mutual")
    with pytest.raises(TypeError, match="pass teacher="):
        UncertaintyComparisonDisplay.from_estimator(forest, X)
    with pytest.raises(ValueError, match="holds no teacher"):
        UncertaintyComparisonDisplay.from_estimator(hydra.without_teacher(), X)


@pytest.mark.parametrize("model", ["forest", "hydra"])
def test_shift_from_estimator(iris, model, request):
    X, _ = iris
    estimator = request.getfixturevalue(model)
    X_out = X[:40] * 3.0 + 2.0
    disp = UncertaintyShiftDisplay.from_estimator(estimator, X, X_out, bins=12)
    score_in = predict_uncertainty(estimator, X)["epistemic"].to_numpy()
    score_out = predict_uncertainty(estimator, X_out)["epistemic"].to_numpy()
    np.testing.assert_allclose(disp.score_in, score_in)
    np.testing.assert_allclose(disp.score_out, score_out)
    assert disp.auroc == ood_auroc(score_in, score_out)
    assert disp.ax_.get_legend().get_title().get_text().endswith(f"(AUROC = {disp.auroc:.3f})")


def test_shift_histograms_share_bins_and_are_densities():
    rng = np.random.default_rng(0)
    score_in, score_out = rng.random(30), rng.random(20) + 0.5
    disp = UncertaintyShiftDisplay.from_predictions(score_in, score_out, bins=10)
    assert disp.auroc == ood_auroc(score_in, score_out)
    assert len(disp.hist_in_.patches) == len(disp.hist_out_.patches) == 10
    for hist in (disp.hist_in_, disp.hist_out_):
        area = sum(p.get_height() * p.get_width() for p in hist.patches)
        assert area == pytest.approx(1.0)
    assert [p.get_x() for p in disp.hist_in_.patches] == [p.get_x() for p in disp.hist_out_]
    assert disp.ax_.get_legend_handles_labels()[1] == ["In-domain", "Out-of-distribution"]


def test_shift_rejects_bad_scores():
    with pytest.raises(ValueError, match="score_in must be 1-D"):
        UncertaintyShiftDisplay.from_predictions(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        UncertaintyShiftDisplay.from_predictions([0.1, np.nan], [0.2])


def test_reliability_hand_computed():
    disp = ReliabilityDisplay.from_predictions([0, 0], [[0.9, 0.1], [0.7, 0.3]])
    # 0.9 * 15 = 13.5 and 0.7 * 15 = 10.5: bins 13 and 10, both right.
    assert disp.counts.tolist() == [0] * 10 + [1, 0, 0, 1, 0]
    assert disp.confidence[[10, 13]].tolist() == [0.7, 0.9]
    assert disp.accuracy[[10, 13]].tolist() == [1.0, 1.0]
    assert np.isnan(disp.accuracy[0])
    assert disp.ece == pytest.approx(0.2)
    np.testing.assert_allclose(disp.line_.get_xdata(), [0.7, 0.9])
    np.testing.assert_allclose(disp.line_.get_ydata(), [1.0, 1.0])


@pytest.mark.parametrize("n_bins", [15, 4])
def test_reliability_matches_ece(iris, hydra, n_bins):
    X, y = iris
    disp = ReliabilityDisplay.from_estimator(hydra, X, y, n_bins=n_bins)
    proba = hydra.predict_proba(X)
    assert disp.counts.sum() == len(X) and disp.counts.shape == (n_bins,)
    assert disp.ece == expected_calibration_error(y, proba, n_bins=n_bins)
    seen = disp.counts > 0
    gap = np.abs(disp.accuracy[seen] - disp.confidence[seen])
    assert np.sum(disp.counts[seen] / len(X) * gap) == pytest.approx(disp.ece)
    assert len(disp.line_.get_xdata()) == seen.sum()


def test_reliability_string_labels_and_ensemble(iris, iris_names):
    X, _ = iris
    labels = iris_names
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, labels)
    disp = ReliabilityDisplay.from_estimator(forest, X, labels)
    proba = forest.predict_proba(X)
    assert disp.ece == expected_calibration_error(labels, proba, classes=forest.classes_)
    with pytest.raises(ValueError, match="not in classes"):
        ReliabilityDisplay.from_predictions(labels, proba)


def test_reliability_errors():
    proba = np.full((4, 2), 0.5)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        ReliabilityDisplay.from_predictions([0, 1, 0], proba)
    with pytest.raises(ValueError, match="n_bins"):
        ReliabilityDisplay.from_predictions([0, 1, 0, 1], proba, n_bins=0)
    with pytest.raises(ValueError, match="2D"):
        ReliabilityDisplay.from_predictions([0, 1], [0.5, 0.5])


@pytest.mark.parametrize("display", DISPLAYS)
def test_plots_on_given_axes(display):
    fig, ax = plt.subplots()
    disp = _make(display, ax=ax)
    assert disp.ax_ is ax and disp.figure_ is fig
    n_lines = len(ax.lines)
    disp.plot(ax=ax)
    assert disp.ax_ is ax and len(plt.get_fignums()) == 1
    if display is ReliabilityDisplay:
        assert len(ax.lines) == n_lines + 1  # the diagonal is drawn once
        assert ax.get_legend_handles_labels()[1].count("Perfectly calibrated") == 1


@pytest.mark.parametrize("display", DISPLAYS)
def test_name_in_legend(display):
    disp = _make(display, name="my model")
    legend = disp.ax_.get_legend()
    texts = [t.get_text() for t in legend.get_texts()] + [legend.get_title().get_text()]
    assert any(t.startswith("my model (") for t in texts)
    disp.plot(name="renamed")
    legend = disp.ax_.get_legend()
    texts = [t.get_text() for t in legend.get_texts()] + [legend.get_title().get_text()]
    assert any(t.startswith("renamed (") for t in texts)


def test_kwargs_reach_the_artists():
    disp = _make(ReliabilityDisplay, color="red", marker="o")
    assert disp.line_.get_color() == "red" and disp.line_.get_marker() == "o"
    disp = _make(UncertaintyComparisonDisplay, s=3)
    assert disp.scatter_.get_sizes().tolist() == [3]
    disp = _make(UncertaintyShiftDisplay, alpha=0.2)
    assert disp.hist_out_.patches[0].get_alpha() == 0.2
