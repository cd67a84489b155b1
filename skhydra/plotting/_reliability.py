"""The multiclass reliability diagram."""

from numbers import Integral

import numpy as np
from sklearn.utils import check_array, check_consistent_length, check_scalar

from ..metrics import expected_calibration_error, reliability_bins
from ._display import _Display


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
