"""The conformal quantile and the base of the prefit conformal wrappers."""

import math
from fractions import Fraction

import numpy as np
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
)
from sklearn.exceptions import NotFittedError
from sklearn.utils import get_tags
from sklearn.utils.validation import (
    check_array,
    check_is_fitted,
)

from .._base import clone_sharing

#: Floor of the normalising standard deviation (the one MAPIE's StdConformityScore uses),
#: so that a row with zero predicted spread gives a finite score.
MIN_STD = 1e-8


def conformal_quantile(scores, confidence_level):
    """The split-conformal quantile of calibration scores.

    The ``k``-th smallest of the ``n`` scores with
    ``k = ceil((n + 1) * confidence_level)``: the empirical quantile at level
    ``ceil((n + 1) * confidence_level) / n``, which includes the finite-sample
    correction. A new score exchangeable with the calibration scores is at
    most this value with probability at least ``confidence_level`` (and at
    most ``confidence_level + 1 / (n + 1)`` when the scores have no ties).

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Conformity scores of the calibration rows (larger = worse fit).
    confidence_level : float
        Target coverage, in (0, 1).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When ``k > n``: too few scores for the level (the interval would be
        infinite).

    Examples
    --------
    >>> from skhydra.conformal import conformal_quantile
    >>> conformal_quantile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.85)
    10.0
    >>> conformal_quantile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.5)
    6.0
    """
    scores = check_array(
        scores, ensure_2d=False, dtype=np.float64, ensure_all_finite=False, input_name="scores"
    )
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}.")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN.")
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level!r}.")
    n = len(scores)
    k = _rank(n, confidence_level)
    if k > n:
        raise ValueError(
            f"The calibration set has {n} rows, too few for confidence_level="
            f"{confidence_level}: the conformal quantile needs at least "
            f"{_min_calibration_size(confidence_level)} rows. Calibrate on more rows or "
            "lower confidence_level."
        )
    return float(np.partition(scores, k - 1)[k - 1])


def _rank(n, confidence_level):
    # (99 + 1) * 0.55 is 55.00000000000001 in floats, whose ceil is one rank too
    # high; the decimal the user wrote (0.55 = 11/20) gives the exact product.
    return math.ceil((n + 1) * Fraction(repr(float(confidence_level))))


def _min_calibration_size(confidence_level):
    n = max(1, math.floor(confidence_level / (1 - confidence_level)) - 1)
    while _rank(n, confidence_level) > n:
        n += 1
    return n


class _BaseConformal(MetaEstimatorMixin, BaseEstimator):
    """What the conformal regressor and classifier share: the prefit estimator and calibration."""

    def _prefit_estimator(self):
        estimator = self.estimator
        try:
            check_is_fitted(estimator)
        except NotFittedError as error:
            name = type(estimator).__name__
            raise NotFittedError(
                f"{type(self).__name__} calibrates a fitted estimator and never fits it, "
                f"but this {name} is not fitted. Fit it first on training rows, then pass "
                f"other, held-out rows to {type(self).__name__}.fit."
            ) from error
        return estimator

    def _calibrate(self, estimator, scores):
        self.estimator_ = estimator
        self.conformity_scores_ = scores
        self.quantile_ = conformal_quantile(scores, self.confidence_level)
        self.n_calibration_ = len(scores)
        for name in ("n_features_in_", "feature_names_in_"):
            if hasattr(estimator, name):
                setattr(self, name, getattr(estimator, name))
        return self

    def __sklearn_clone__(self):
        # A fitted estimator is shared, not cloned: it is never refit or mutated,
        # and a clone of an unfitted copy could not be calibrated.
        def keep(estimator):
            try:
                check_is_fitted(estimator)
            except (NotFittedError, TypeError):
                return False
            return True

        return clone_sharing(self, "estimator", keep)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # X is handed to the estimator untouched, so it decides what input it accepts.
        tags.input_tags = get_tags(self.estimator).input_tags
        return tags
