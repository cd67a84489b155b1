"""Display classes: student versus teacher uncertainty, OOD shift, reliability.

They follow scikit-learn's visualisation API (as in
:class:`~sklearn.calibration.CalibrationDisplay`): build one with
``from_estimator`` or ``from_predictions``, which compute the values, store
them on the display and call :meth:`plot`. matplotlib is imported only inside
``plot``, so importing this module does not need it.
"""

import warnings
from numbers import Integral

import numpy as np
from sklearn.utils import check_array, check_consistent_length, check_scalar

from .metrics import (
    expected_calibration_error,
    ood_auroc,
    reliability_bins,
    uncertainty_spearman,
)
from .uncertainty import COLUMNS, predict_uncertainty, teacher_view

__all__ = ["ReliabilityDisplay", "UncertaintyComparisonDisplay", "UncertaintyShiftDisplay"]


def _axes(ax):
    """``(ax, figure)``, creating both when ``ax`` is None."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("skhydra.plotting needs matplotlib: pip install matplotlib") from exc
    if ax is None:
        _, ax = plt.subplots()
    return ax, ax.figure


class _Display:
    """The scaffolding every display's ``plot`` starts with."""

    def _start_plot(self, ax, name, metric):
        """Create or take the axes; return the legend label ``name (metric)``."""
        self.ax_, self.figure_ = _axes(ax)
        name = self.name if name is None else name
        return metric if name is None else f"{name} ({metric})"


def _scores(values, name):
    values = check_array(values, ensure_2d=False, dtype=np.float64, input_name=name)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per row), got shape {values.shape}.")
    return values


def _check_kind(kind):
    if kind not in COLUMNS:
        raise ValueError(f"kind must be one of {COLUMNS}, got {kind!r}.")


def _uncertainty(model, X, kind):
    with warnings.catch_warnings():
        if kind == "epistemic":
            # Point-prediction regressors lack only the aleatoric part, which is not shown.
            warnings.filterwarnings("ignore", message=".*predict no variance", category=UserWarning)
        return predict_uncertainty(model, X)[kind].to_numpy()


def _teacher_uncertainty(student, X, kind):
    """The uncertainty of the student's own fitted ensemble on ``X``."""
    return _uncertainty(*teacher_view(student, X, hint="; pass teacher="), kind)


class UncertaintyComparisonDisplay(_Display):
    """Scatter of a student's uncertainty against its teacher's, row by row.

    Points on the line ``y = x`` are rows where the student reports exactly the
    teacher's uncertainty; the Spearman correlation in the legend measures
    whether it at least ranks the rows like the teacher.

    Parameters
    ----------
    teacher_uncertainty : ndarray of shape (n_samples,)
        The teacher's (ensemble's) uncertainty per row.
    student_uncertainty : ndarray of shape (n_samples,)
        The student's uncertainty on the same rows.
    spearman : float
        Their Spearman correlation, :func:`skhydra.metrics.uncertainty_spearman`.
    kind : {"epistemic", "aleatoric", "total"}, default="epistemic"
        Which part of the uncertainty, for the axis labels.
    name : str, default=None
        Name of the student in the legend.

    Attributes
    ----------
    scatter_ : matplotlib PathCollection
        One point per row.
    line_ : matplotlib Line2D
        The line ``y = x`` over the range of both scores.
    ax_ : matplotlib Axes
        Axes of the plot.
    figure_ : matplotlib Figure
        Figure containing the axes.

    See Also
    --------
    skhydra.metrics.uncertainty_spearman : The correlation in the legend.
    skhydra.metrics.epistemic_fidelity_score : The same correlation as a scorer.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra import HydraDistilledClassifier
    >>> from skhydra.plotting import UncertaintyComparisonDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    >>> hydra = HydraDistilledClassifier(
    ...     forest, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=5, random_state=0
    ... ).fit(X)
    >>> disp = UncertaintyComparisonDisplay.from_estimator(hydra, X)
    >>> disp.student_uncertainty.shape, -1 <= disp.spearman <= 1
    ((150,), True)
    """

    def __init__(
        self, teacher_uncertainty, student_uncertainty, spearman, *, kind="epistemic", name=None
    ):
        self.teacher_uncertainty = teacher_uncertainty
        self.student_uncertainty = student_uncertainty
        self.spearman = spearman
        self.kind = kind
        self.name = name

    def plot(self, *, ax=None, name=None, **kwargs):
        """Plot the scatter and the line ``y = x``.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to plot on; ``None`` creates a figure and axes.
        name : str, default=None
            Name in the legend; ``None`` uses the display's ``name``.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.scatter`.

        Returns
        -------
        display : UncertaintyComparisonDisplay
            ``self``, with the artists set.
        """
        label = self._start_plot(ax, name, f"Spearman = {self.spearman:.3f}")
        style = {"s": 10, "label": label, **kwargs}
        teacher, student = self.teacher_uncertainty, self.student_uncertainty
        self.scatter_ = self.ax_.scatter(teacher, student, **style)
        both = np.r_[teacher, student]
        lo, hi = both.min(), both.max()
        ref_label = "y = x"
        if ref_label in self.ax_.get_legend_handles_labels()[1]:
            ref_label = "_nolegend_"
        self.line_ = self.ax_.plot([lo, hi], [lo, hi], "k:", label=ref_label)[0]
        self.ax_.set(
            xlabel=f"Teacher {self.kind} uncertainty", ylabel=f"Student {self.kind} uncertainty"
        )
        self.ax_.legend(loc="upper left")
        return self

    @classmethod
    def from_estimator(
        cls, student, X, *, teacher=None, kind="epistemic", name=None, ax=None, **kwargs
    ):
        """Compare a fitted student's uncertainty with its teacher's on ``X``.

        Parameters
        ----------
        student : estimator
            Anything :func:`skhydra.predict_uncertainty` takes; with
            ``teacher=None`` a fitted Hydra student, or a Pipeline or fitted
            search ending in one.
        X : array-like or DataFrame of shape (n_samples, n_features)
            Rows to compare on.
        teacher : estimator, default=None
            The reference, evaluated on ``X`` as given. ``None`` uses the
            student's own fitted ensemble (``ensemble_``), after the Pipeline's
            preprocessing when the student sits in one.
        kind : {"epistemic", "aleatoric", "total"}, default="epistemic"
            Which part of :func:`skhydra.predict_uncertainty` to compare.
        name : str, default=None
            Name in the legend; ``None`` uses the student's class name.
        ax : matplotlib Axes, default=None
            Axes to plot on; ``None`` creates a figure and axes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.scatter`.

        Returns
        -------
        display : UncertaintyComparisonDisplay
        """
        _check_kind(kind)
        student_u = _uncertainty(student, X, kind)
        if teacher is None:
            teacher_u = _teacher_uncertainty(student, X, kind)
        else:
            teacher_u = _uncertainty(teacher, X, kind)
        name = type(student).__name__ if name is None else name
        return cls.from_predictions(teacher_u, student_u, kind=kind, name=name, ax=ax, **kwargs)

    @classmethod
    def from_predictions(
        cls,
        teacher_uncertainty,
        student_uncertainty,
        *,
        kind="epistemic",
        name=None,
        ax=None,
        **kwargs,
    ):
        """Compare two per-row uncertainty scores.

        Parameters
        ----------
        teacher_uncertainty : array-like of shape (n_samples,)
            The teacher's uncertainty per row.
        student_uncertainty : array-like of shape (n_samples,)
            The student's uncertainty on the same rows.
        kind : {"epistemic", "aleatoric", "total"}, default="epistemic"
            Which part of the uncertainty, for the axis labels.
        name : str, default=None
            Name in the legend.
        ax : matplotlib Axes, default=None
            Axes to plot on; ``None`` creates a figure and axes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.scatter`.

        Returns
        -------
        display : UncertaintyComparisonDisplay
        """
        teacher_u = _scores(teacher_uncertainty, "teacher_uncertainty")
        student_u = _scores(student_uncertainty, "student_uncertainty")
        check_consistent_length(teacher_u, student_u)
        spearman = uncertainty_spearman(teacher_u, student_u)
        disp = cls(teacher_u, student_u, spearman, kind=kind, name=name)
        return disp.plot(ax=ax, **kwargs)


class UncertaintyShiftDisplay(_Display):
    """Histograms of an uncertainty score on in-domain and out-of-distribution rows.

    A model that knows what it does not know reports more (epistemic)
    uncertainty off its training distribution; the AUROC in the legend is how
    well the score tells the two sets apart (0.5 chance, 1.0 perfect).

    Parameters
    ----------
    score_in : ndarray of shape (n_in,)
        Score of the in-domain rows.
    score_out : ndarray of shape (n_out,)
        Score of the out-of-distribution rows.
    auroc : float
        :func:`skhydra.metrics.ood_auroc` of the two.
    kind : str, default="epistemic"
        What the score is, for the axis label.
    name : str, default=None
        Name of the model, as the legend's title.

    Attributes
    ----------
    hist_in_ : matplotlib BarContainer
        Patches of the in-domain histogram.
    hist_out_ : matplotlib BarContainer
        Patches of the out-of-distribution histogram.
    ax_ : matplotlib Axes
        Axes of the plot.
    figure_ : matplotlib Figure
        Figure containing the axes.

    See Also
    --------
    skhydra.metrics.ood_auroc : The AUROC in the legend.
    skhydra.predict_uncertainty : The scores of a student or an ensemble.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra import HydraDistilledClassifier
    >>> from skhydra.plotting import UncertaintyShiftDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    >>> hydra = HydraDistilledClassifier(
    ...     forest, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=5, random_state=0
    ... ).fit(X)
    >>> disp = UncertaintyShiftDisplay.from_estimator(hydra, X, X[:50] + 5.0)
    >>> disp.score_in.shape, disp.score_out.shape, 0 <= disp.auroc <= 1
    ((150,), (50,), True)
    """

    def __init__(self, score_in, score_out, auroc, *, kind="epistemic", name=None):
        self.score_in = score_in
        self.score_out = score_out
        self.auroc = auroc
        self.kind = kind
        self.name = name

    def plot(self, *, ax=None, name=None, bins=20, **kwargs):
        """Plot both histograms on shared bins, normalised to unit area.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to plot on; ``None`` creates a figure and axes.
        name : str, default=None
            Legend title; ``None`` uses the display's ``name``.
        bins : int or str, default=20
            Bins over both sets, as in :func:`numpy.histogram_bin_edges`.
        **kwargs : dict
            Passed to both :meth:`matplotlib.axes.Axes.hist` calls.

        Returns
        -------
        display : UncertaintyShiftDisplay
            ``self``, with the artists set.
        """
        title = self._start_plot(ax, name, f"AUROC = {self.auroc:.3f}")
        edges = np.histogram_bin_edges(np.r_[self.score_in, self.score_out], bins=bins)
        style = {"bins": edges, "density": True, "alpha": 0.5, **kwargs}
        self.hist_in_ = self.ax_.hist(self.score_in, label="In-domain", **style)[2]
        self.hist_out_ = self.ax_.hist(self.score_out, label="Out-of-distribution", **style)[2]
        self.ax_.legend(title=title)
        self.ax_.set(xlabel=f"{self.kind.capitalize()} uncertainty", ylabel="Density")
        return self

    @classmethod
    def from_estimator(
        cls, estimator, X_in, X_out, *, kind="epistemic", name=None, ax=None, **kwargs
    ):
        """Score in-domain and out-of-distribution rows with a model's uncertainty.

        Parameters
        ----------
        estimator : estimator
            A fitted student, Pipeline, search or ensemble: anything
            :func:`skhydra.predict_uncertainty` takes.
        X_in : array-like or DataFrame of shape (n_in, n_features)
            In-domain rows.
        X_out : array-like or DataFrame of shape (n_out, n_features)
            Out-of-distribution rows.
        kind : {"epistemic", "aleatoric", "total"}, default="epistemic"
            Which part of :func:`skhydra.predict_uncertainty` is the score.
        name : str, default=None
            Legend title; ``None`` uses the estimator's class name.
        ax : matplotlib Axes, default=None
            Axes to plot on; ``None`` creates a figure and axes.
        **kwargs : dict
            Passed to :meth:`plot` (``bins``) and to the histograms.

        Returns
        -------
        display : UncertaintyShiftDisplay
        """
        _check_kind(kind)
        score_in = _uncertainty(estimator, X_in, kind)
        score_out = _uncertainty(estimator, X_out, kind)
        name = type(estimator).__name__ if name is None else name
        return cls.from_predictions(score_in, score_out, kind=kind, name=name, ax=ax, **kwargs)

    @classmethod
    def from_predictions(
        cls, score_in, score_out, *, kind="epistemic", name=None, ax=None, **kwargs
    ):
        """Compare precomputed scores of in-domain and out-of-distribution rows.

        Parameters
        ----------
        score_in : array-like of shape (n_in,)
            Score of the in-domain rows; higher means "more likely OOD".
        score_out : array-like of shape (n_out,)
            Score of the out-of-distribution rows.
        kind : str, default="epistemic"
            What the score is, for the axis label.
        name : str, default=None
            Legend title.
        ax : matplotlib Axes, default=None
            Axes to plot on; ``None`` creates a figure and axes.
        **kwargs : dict
            Passed to :meth:`plot` (``bins``) and to the histograms.

        Returns
        -------
        display : UncertaintyShiftDisplay
        """
        score_in = _scores(score_in, "score_in")
        score_out = _scores(score_out, "score_out")
        disp = cls(score_in, score_out, ood_auroc(score_in, score_out), kind=kind, name=name)
        return disp.plot(ax=ax, **kwargs)


class ReliabilityDisplay(_Display):
    """Multiclass reliability diagram of the top-class confidence.

    Rows are binned by their highest probability into ``n_bins`` equal-width
    bins on [0, 1], the binning of
    :func:`skhydra.metrics.expected_calibration_error`; each non-empty bin is a
    point at (mean confidence, accuracy). A calibrated model lies on the
    diagonal.

    Parameters
    ----------
    confidence : ndarray of shape (n_bins,)
        Mean top-class probability per bin, NaN for an empty bin.
    accuracy : ndarray of shape (n_bins,)
        Fraction of rows whose top class is right per bin, NaN for an empty bin.
    counts : ndarray of shape (n_bins,)
        Number of rows per bin.
    ece : float
        The expected calibration error.
    name : str, default=None
        Name of the model in the legend.

    Attributes
    ----------
    line_ : matplotlib Line2D
        Accuracy against confidence over the non-empty bins.
    ax_ : matplotlib Axes
        Axes of the plot.
    figure_ : matplotlib Figure
        Figure containing the axes.

    See Also
    --------
    skhydra.metrics.expected_calibration_error : The ECE in the legend.
    sklearn.calibration.CalibrationDisplay : The binary calibration curve.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra import HydraDistilledClassifier
    >>> from skhydra.plotting import ReliabilityDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    >>> hydra = HydraDistilledClassifier(
    ...     forest, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=5, random_state=0
    ... ).fit(X)
    >>> disp = ReliabilityDisplay.from_estimator(hydra, X, y)
    >>> int(disp.counts.sum()), disp.counts.shape
    (150, (15,))
    """

    def __init__(self, confidence, accuracy, counts, ece, *, name=None):
        self.confidence = confidence
        self.accuracy = accuracy
        self.counts = counts
        self.ece = ece
        self.name = name

    def plot(self, *, ax=None, name=None, **kwargs):
        """Plot accuracy against confidence per bin, and the diagonal.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to plot on; ``None`` creates a figure and axes.
        name : str, default=None
            Name in the legend; ``None`` uses the display's ``name``.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : ReliabilityDisplay
            ``self``, with the artists set.
        """
        label = self._start_plot(ax, name, f"ECE = {self.ece:.3f}")
        ref_label = "Perfectly calibrated"
        if ref_label not in self.ax_.get_legend_handles_labels()[1]:
            self.ax_.plot([0, 1], [0, 1], "k:", label=ref_label)
        seen = self.counts > 0
        self.line_ = self.ax_.plot(
            self.confidence[seen], self.accuracy[seen], **{"marker": "s", "label": label, **kwargs}
        )[0]
        limits = (-0.02, 1.02)
        xlabel = "Confidence (top-class probability)"
        self.ax_.set(xlim=limits, ylim=limits, xlabel=xlabel, ylabel="Accuracy")
        self.ax_.legend(loc="upper left")
        return self

    @classmethod
    def from_estimator(cls, estimator, X, y, *, n_bins=15, name=None, ax=None, **kwargs):
        """Reliability diagram of a fitted classifier's ``predict_proba`` on ``X``.

        Parameters
        ----------
        estimator : estimator
            A fitted classifier with ``predict_proba`` and ``classes_``: a
            student, a Pipeline or search ending in one, or the teacher
            ensemble itself.
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.
        y : array-like of shape (n_samples,)
            True labels.
        n_bins : int, default=15
            Number of equal-width confidence bins.
        name : str, default=None
            Name in the legend; ``None`` uses the estimator's class name.
        ax : matplotlib Axes, default=None
            Axes to plot on; ``None`` creates a figure and axes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : ReliabilityDisplay
        """
        proba = estimator.predict_proba(X)
        name = type(estimator).__name__ if name is None else name
        return cls.from_predictions(
            y, proba, classes=estimator.classes_, n_bins=n_bins, name=name, ax=ax, **kwargs
        )

    @classmethod
    def from_predictions(
        cls, y_true, proba, *, classes=None, n_bins=15, name=None, ax=None, **kwargs
    ):
        """Reliability diagram of predicted probabilities.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True labels.
        proba : array-like of shape (n_samples, n_classes)
            Predicted probabilities, columns in the order of ``classes``.
        classes : array-like of shape (n_classes,), default=None
            Sorted column labels; ``None`` means ``0, ..., n_classes - 1``.
        n_bins : int, default=15
            Number of equal-width confidence bins.
        name : str, default=None
            Name in the legend.
        ax : matplotlib Axes, default=None
            Axes to plot on; ``None`` creates a figure and axes.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : ReliabilityDisplay
        """
        check_scalar(n_bins, "n_bins", Integral, min_val=1)
        p = check_array(proba, dtype=np.float64, input_name="proba")
        y_true = np.ravel(y_true)
        check_consistent_length(y_true, p)
        confidence, accuracy, counts = reliability_bins(y_true, p, classes=classes, n_bins=n_bins)
        ece = expected_calibration_error(y_true, p, classes=classes, n_bins=n_bins)
        disp = cls(confidence, accuracy, counts, ece, name=name)
        return disp.plot(ax=ax, **kwargs)
