"""ConformalClassifier: adaptive (APS) and LAC prediction sets."""

import numbers
from numbers import Real

import numpy as np
from sklearn.base import (
    ClassifierMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    indexable,
)

from ._base import _BaseConformal


def _uniforms(random_state, n, stream):
    # An integer seed gives calibration (stream 0) and prediction (stream 1)
    # different numbers: a test row must not reuse a calibration row's draw.
    if isinstance(random_state, numbers.Integral):
        return np.random.default_rng([int(random_state), stream]).uniform(size=n)
    return check_random_state(random_state).uniform(size=n)


def _label_scores(proba, score, u):
    """Conformity score of every label of every row, shape (n, n_classes).

    ``"lac"``: ``1 - p``. ``"aps"``: the probability mass of the labels ranked
    above the label plus ``u`` times its own mass (``u`` of shape (n,) or a
    scalar), so that the set ``{labels: score <= q}`` is a top-k set.
    """
    if score == "lac":
        return 1.0 - proba
    order = np.argsort(-proba, axis=1, kind="stable")
    ranked = np.take_along_axis(proba, order, axis=1)
    # Written as one minus the mass ranked below, so that the least probable
    # label's full mass scores exactly 1 rather than a rounding-dependent sum.
    below = np.cumsum(ranked[:, ::-1], axis=1)[:, ::-1] - ranked
    scores = np.empty_like(proba)
    np.put_along_axis(scores, order, 1.0 - below - (1.0 - np.reshape(u, (-1, 1))) * ranked, axis=1)
    return scores


class ConformalClassifier(ClassifierMixin, _BaseConformal):
    """Split-conformal prediction sets around a fitted classifier.

    ``fit`` computes the conformity scores of the true labels of held-out
    calibration rows from ``predict_proba`` and their conformal quantile
    ``q`` (:func:`conformal_quantile`); :meth:`predict_set` returns, for each
    row, the labels whose score is at most ``q``. The sets contain the true
    label of a new row with probability at least ``confidence_level`` when the
    calibration and new rows are exchangeable, whatever the classifier.

    The estimator is used as it is: it must be fitted, is never refit, and
    survives :func:`~sklearn.base.clone`. Calibrate on rows it was not trained
    on.

    Parameters
    ----------
    estimator : estimator
        A fitted classifier with ``predict_proba`` and ``classes_``
        (:class:`~skhydra.HydraDistilledClassifier`, a Pipeline ending in one,
        any scikit-learn classifier).
    confidence_level : float, default=0.9
        Target coverage, in (0, 1): the probability that the interval or set
        contains the true target of a new row.
    score : {"aps", "lac"}, default="aps"
        ``"aps"`` (adaptive prediction sets [1]_): the total probability of
        the labels ranked above the true label, plus (a random fraction of)
        its own; the sets are the most probable labels until their mass
        reaches the quantile, so they are large where the probabilities are
        spread (an uncertain student) and small where they are peaked.
        ``"lac"``: ``1 - p(true label)`` (the baseline with the smallest
        average set [2]_, but not adaptive).
    randomized : bool, default=True
        Only for ``score="aps"``. ``True``: the score counts a uniform random
        fraction of the true label's probability, which gives coverage close
        to ``confidence_level`` (exact in expectation); a set may then be
        empty. ``False``: the score counts all of it and each set keeps the
        label that crosses the quantile: deterministic, never empty, but
        conservative (coverage above ``confidence_level``, larger sets).
    random_state : int, RandomState instance or None, default=None
        Draws of the randomised APS score, in ``fit`` and in
        :meth:`predict_set`. An integer makes the sets reproducible.

    Attributes
    ----------
    estimator_ : estimator
        The calibrated estimator, ``estimator`` itself (not a copy).
    classes_ : ndarray of shape (n_classes,)
        The estimator's classes, the columns of :meth:`predict_set`.
    quantile_ : float
        Conformal quantile of the calibration scores.
    conformity_scores_ : ndarray of shape (n_calibration,)
        Scores of the calibration rows' true labels, in their order.
    n_calibration_ : int
        Number of calibration rows.
    n_features_in_ : int
        Number of features of the estimator, when it records them.
    feature_names_in_ : ndarray of shape (n_features_in,)
        Feature names of the estimator, when it records them.

    See Also
    --------
    ConformalRegressor : Prediction intervals for a fitted regressor.

    Notes
    -----
    MAPIE's :class:`mapie.classification.SplitConformalClassifier` with
    ``conformity_score="lac"`` and ``prefit=True`` computes the same sets as
    ``score="lac"``.

    References
    ----------
    .. [1] Y. Romano, M. Sesia and E. J. Candès. "Classification with Valid and
       Adaptive Coverage", NeurIPS, 2020. :arxiv:`2006.02544`
    .. [2] M. Sadinle, J. Lei and L. Wasserman. "Least Ambiguous Set-Valued
       Classifiers with Bounded Error Levels", JASA, 2019. :arxiv:`1609.00451`

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.model_selection import train_test_split
    >>> from skhydra import HydraDistilledClassifier
    >>> from skhydra.conformal import ConformalClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.5, random_state=0)
    >>> forest = RandomForestClassifier(n_estimators=8, random_state=0).fit(X_train, y_train)
    >>> student = HydraDistilledClassifier(
    ...     forest, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=10, random_state=0
    ... ).fit(X_train)
    >>> conformal = ConformalClassifier(student, confidence_level=0.9, random_state=0)
    >>> conformal.fit(X_rest[:50], y_rest[:50]).n_calibration_
    50
    >>> sets = conformal.predict_set(X_rest[50:])
    >>> sets.shape, sets.dtype
    ((25, 3), dtype('bool'))
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["predict_proba"])],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
        "score": [StrOptions({"aps", "lac"})],
        "randomized": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self, estimator, *, confidence_level=0.9, score="aps", randomized=True, random_state=None
    ):
        self.estimator = estimator
        self.confidence_level = confidence_level
        self.score = score
        self.randomized = randomized
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)  # the estimator is not fitted here
    def fit(self, X, y):
        """Calibrate on held-out rows.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Calibration rows, passed to the estimator unchanged; rows the
            estimator was not trained on.
        y : array-like of shape (n_samples,)
            Their labels, among the estimator's ``classes_``.

        Returns
        -------
        self : ConformalClassifier
            The calibrated wrapper.
        """
        estimator = self._prefit_estimator()
        X, y = indexable(X, y)
        check_consistent_length(X, y)
        classes = np.asarray(estimator.classes_)
        labels = _label_index(column_or_1d(y), classes)
        proba = self._proba(estimator, X, len(classes))
        u = _uniforms(self.random_state, len(proba), 0) if self._randomized else 1.0
        scores = np.take_along_axis(_label_scores(proba, self.score, u), labels[:, None], axis=1)
        self.classes_ = classes
        return self._calibrate(estimator, scores[:, 0])

    def predict(self, X):
        """Point prediction of the estimator.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``estimator.predict(X)``.
        """
        check_is_fitted(self)
        return self.estimator_.predict(X)

    def predict_set(self, X):
        """Prediction sets with coverage ``confidence_level``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        ndarray of bool, shape (n_samples, n_classes)
            ``True`` where the label (column, in the order of ``classes_``)
            is in the row's set.
        """
        check_is_fitted(self)
        proba = self._proba(self.estimator_, X, len(self.classes_))
        if self._randomized:
            u = _uniforms(self.random_state, len(proba), 1)
            return _label_scores(proba, self.score, u) <= self.quantile_
        sets = _label_scores(proba, self.score, 1.0) <= self.quantile_
        if self.score == "aps":
            # Never empty: keeping the most probable label only adds coverage.
            sets[np.arange(len(sets)), np.argmax(proba, axis=1)] = True
        return sets

    @property
    def _randomized(self):
        return self.score == "aps" and self.randomized

    @staticmethod
    def _proba(estimator, X, n_classes):
        proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
        if proba.ndim != 2 or proba.shape[1] != n_classes:
            raise ValueError(
                f"predict_proba returned shape {proba.shape}; expected (n_samples, {n_classes}), "
                "one column per class in classes_."
            )
        # float32 probabilities miss a sum of 1 by rounding; the APS score assumes it.
        return proba / proba.sum(axis=1, keepdims=True)


def _label_index(y, classes):
    sorter = np.argsort(classes, kind="stable")
    position = np.clip(np.searchsorted(classes, y, sorter=sorter), 0, len(classes) - 1)
    index = sorter[position]
    unknown = classes[index] != y
    if np.any(unknown):
        raise ValueError(
            f"y contains labels that are not in the estimator's classes_ "
            f"{classes.tolist()}: {np.unique(np.asarray(y)[unknown]).tolist()}."
        )
    return index
