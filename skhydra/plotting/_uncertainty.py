"""Displays of uncertainty: student against teacher, in-domain against out-of-distribution."""

import numpy as np
from sklearn.utils import check_consistent_length

from ..metrics import ood_auroc, uncertainty_spearman
from ._display import _check_kind, _Display, _scores, _teacher_uncertainty, _uncertainty


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
