"""ConformalRegressor: intervals from residuals normalised by the student's std."""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import (
    RegressorMixin,
    _fit_context,
)
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    indexable,
)

from ._base import MIN_STD, _BaseConformal


class ConformalRegressor(RegressorMixin, _BaseConformal):
    """Split-conformal prediction intervals around a fitted regressor.

    ``fit`` computes the conformity scores of held-out calibration rows and
    their conformal quantile ``q`` (:func:`conformal_quantile`);
    :meth:`predict_interval` returns ``mean ± q * s(x)``. With
    ``score="normalized"`` the scale ``s(x)`` is the estimator's predicted
    standard deviation, so intervals are wide where the model (for a Hydra
    student: the distilled ensemble) is uncertain and narrow where it is
    sure; with ``score="absolute"``, ``s(x) = 1`` and every interval has the
    same width. Either way the intervals contain the true ``y`` of a new row
    with probability at least ``confidence_level`` when the calibration and
    new rows are exchangeable (e.g. drawn from the same distribution): the
    guarantee holds whether or not the predicted std is accurate; an accurate
    one makes the intervals narrower and closer to conditional coverage.

    The estimator is used as it is: it must be fitted, is never refit, and
    survives :func:`~sklearn.base.clone` (like
    :class:`~sklearn.frozen.FrozenEstimator`). Calibrate on rows it was not
    trained on.

    Parameters
    ----------
    estimator : estimator
        A fitted regressor. ``score="normalized"`` needs
        ``predict(X, return_std=True)`` (:class:`~skhydra.HydraDistilledRegressor`,
        :class:`~sklearn.gaussian_process.GaussianProcessRegressor`,
        :class:`~sklearn.linear_model.BayesianRidge`, a Pipeline ending in one)
        for ``uncertainty="total"``, and a model that
        :func:`skhydra.predict_uncertainty` supports (a Hydra regressor, a
        Pipeline or search ending in one, a regression ensemble) for
        ``uncertainty="epistemic"`` or ``"aleatoric"``.
    confidence_level : float, default=0.9
        Target coverage, in (0, 1): the probability that the interval or set
        contains the true target of a new row.
    score : {"normalized", "absolute"}, default="normalized"
        Conformity score of a row: ``|y - mean| / std`` (``"normalized"``)
        or ``|y - mean|`` (``"absolute"``, the baseline, which needs no std).
    uncertainty : {"total", "epistemic", "aleatoric"}, default="total"
        Which standard deviation normalises the score when
        ``score="normalized"``: the total predictive std returned by
        ``predict(X, return_std=True)``, or the square root of the epistemic
        (members' disagreement) or aleatoric (noise) variance of
        :func:`skhydra.predict_uncertainty`. Ignored with
        ``score="absolute"``.

    Attributes
    ----------
    estimator_ : estimator
        The calibrated estimator, ``estimator`` itself (not a copy).
    quantile_ : float
        Conformal quantile of the calibration scores: the interval's
        half-width in units of the std (``"normalized"``) or of ``y``
        (``"absolute"``).
    conformity_scores_ : ndarray of shape (n_calibration,)
        Scores of the calibration rows, in their order.
    n_calibration_ : int
        Number of calibration rows.
    n_features_in_ : int
        Number of features of the estimator, when it records them.
    feature_names_in_ : ndarray of shape (n_features_in,)
        Feature names of the estimator, when it records them.

    See Also
    --------
    ConformalClassifier : Prediction sets for a fitted classifier.
    skhydra.metrics.mixture_interval : Intervals from the student's Gaussian
        mixture alone, without a coverage guarantee.

    Notes
    -----
    MAPIE's :class:`mapie.regression.SplitConformalRegressor` with
    ``conformity_score=StdConformityScore()`` and ``prefit=True`` computes
    the same intervals as ``score="normalized"`` (and with ``"absolute"`` the
    same as ``score="absolute"``).

    References
    ----------
    .. [1] J. Lei, M. G'Sell, A. Rinaldo, R. J. Tibshirani and L. Wasserman.
       "Distribution-Free Predictive Inference for Regression", JASA, 2018.
       :arxiv:`1604.04173`
    .. [2] H. Papadopoulos, V. Vovk and A. Gammerman. "Regression Conformal
       Prediction with Nearest Neighbours", JAIR, 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import RandomForestRegressor
    >>> from skhydra import HydraDistilledRegressor
    >>> from skhydra.conformal import ConformalRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 3, size=(600, 1))
    >>> y = np.sin(X[:, 0]) + 0.1 * X[:, 0] * rng.standard_normal(600)
    >>> forest = RandomForestRegressor(n_estimators=8, min_samples_leaf=5, random_state=0)
    >>> forest.fit(X[:300], y[:300])
    RandomForestRegressor(...)
    >>> student = HydraDistilledRegressor(
    ...     forest, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=10, random_state=0
    ... ).fit(X[:300], y[:300])
    >>> conformal = ConformalRegressor(student, confidence_level=0.9).fit(X[300:500], y[300:500])
    >>> conformal.n_calibration_
    200
    >>> interval = conformal.predict_interval(X[500:])
    >>> interval.shape
    (100, 2)
    >>> bool(np.all(interval[:, 0] <= conformal.predict(X[500:])))
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["predict"])],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
        "score": [StrOptions({"normalized", "absolute"})],
        "uncertainty": [StrOptions({"total", "epistemic", "aleatoric"})],
    }

    def __init__(self, estimator, *, confidence_level=0.9, score="normalized", uncertainty="total"):
        self.estimator = estimator
        self.confidence_level = confidence_level
        self.score = score
        self.uncertainty = uncertainty

    @_fit_context(prefer_skip_nested_validation=True)  # the estimator is not fitted here
    def fit(self, X, y):
        """Calibrate on held-out rows.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Calibration rows, passed to the estimator unchanged; rows the
            estimator was not trained on.
        y : array-like of shape (n_samples,)
            Their targets.

        Returns
        -------
        self : ConformalRegressor
            The calibrated wrapper.
        """
        estimator = self._prefit_estimator()
        X, y = indexable(X, y)
        check_consistent_length(X, y)
        y = check_array(column_or_1d(y), ensure_2d=False, dtype=np.float64, input_name="y")
        mean, scale = self._mean_and_scale(estimator, X)
        return self._calibrate(estimator, np.abs(y - mean) / scale)

    def predict(self, X):
        """Point prediction of the estimator.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``estimator.predict(X)``, the centre of the intervals.
        """
        check_is_fitted(self)
        return np.asarray(self.estimator_.predict(X), dtype=np.float64)

    def predict_interval(self, X):
        """Prediction intervals with coverage ``confidence_level``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        ndarray of shape (n_samples, 2)
            Lower and upper bounds, ``mean ∓ quantile_ * std`` (``std = 1``
            for ``score="absolute"``).
        """
        check_is_fitted(self)
        mean, scale = self._mean_and_scale(self.estimator_, X)
        half_width = self.quantile_ * scale
        return np.column_stack([mean - half_width, mean + half_width])

    def _mean_and_scale(self, estimator, X):
        if self.score == "absolute":
            return np.asarray(estimator.predict(X), dtype=np.float64), 1.0
        if self.uncertainty == "total":
            mean, std = _predict_with_std(estimator, X)
        else:
            mean = np.asarray(estimator.predict(X), dtype=np.float64)
            std = np.sqrt(_uncertainty(estimator, X, self.uncertainty))
        if np.isnan(std).any():
            hint = (
                ' Its aleatoric part is unknown: try uncertainty="epistemic".'
                if self.uncertainty != "epistemic"
                else ""
            )
            raise ValueError(
                f"The estimator's {self.uncertainty} standard deviation is NaN on some rows, "
                f"so the normalized score is undefined.{hint}"
            )
        return mean, np.maximum(std, MIN_STD)


def _predict_with_std(estimator, X):
    try:
        mean, std = estimator.predict(X, return_std=True)
    except TypeError as error:
        raise TypeError(
            f'score="normalized" needs an estimator whose predict accepts return_std=True '
            f"(e.g. HydraDistilledRegressor, GaussianProcessRegressor), but "
            f"{type(estimator).__name__}.predict does not ({error}). "
            'Use score="absolute" instead.'
        ) from error
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def _uncertainty(estimator, X, part):
    from ..uncertainty import predict_uncertainty

    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    with warnings.catch_warnings():
        # Only the requested part is used; an unknown aleatoric part is reported below as NaN.
        warnings.filterwarnings("ignore", message=".*(predict no variance|is unknown)")
        try:
            frame = predict_uncertainty(estimator, X)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f'uncertainty="{part}" needs a model that skhydra.predict_uncertainty '
                f"supports (a Hydra regressor, a Pipeline or search ending in one, a "
                f"regression ensemble), not {type(estimator).__name__}: {error}"
            ) from error
    return frame[part].to_numpy(dtype=np.float64)
