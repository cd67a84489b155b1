"""HydraDistilledRegressor: an ensemble of regressors distilled into one network."""

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils.validation import check_array, column_or_1d

from ._base import BaseHydra
from ._params import declare_parameters
from .losses import GaussianDistillationLoss
from .nn import gaussian_parameters
from .uncertainty import index_of, regression_uncertainty, uncertainty_frame

__all__ = ["HydraDistilledRegressor"]

#: Variance floor of the heads, in standardised target units.
MIN_VARIANCE = 1e-6


@dataclass(frozen=True)
class GaussianTargets:
    """Regression targets: each head's moment-matched Gaussian, in standardised units.

    Targets are ``(value - loc) / scale`` so that the heads learn numbers of
    order one whatever the scale of ``y``; :meth:`decode` maps head outputs
    back to the units of ``y``.

    Parameters
    ----------
    loc, scale : float
        The standardisation: the mean and standard deviation of ``y`` (or of
        the ensemble's mean prediction when fit gets no ``y``).
    aleatoric_known : bool
        Whether the heads' variances mean anything: the members predict
        variances, or ``y`` was given to learn them from residuals.
    """

    loc: float
    scale: float
    aleatoric_known: bool

    n_outputs = 2

    def encode(self, predictions, heads, y):
        """Targets of a chunk: ``mean`` and ``var`` (n, heads), ``y`` (n,), float32.

        With rank matching, members are ranked by their means.
        """
        means, variances = heads.ranked(predictions[0], *predictions)
        means = (means - self.loc) / self.scale
        variances = variances / self.scale**2
        second = variances + means**2
        phase1 = (heads.mean_target(means), heads.mean_target(second))
        phase1 = (phase1[0], phase1[1] - phase1[0] ** 2)
        if heads.one_member_per_head:
            phase2 = (means, variances)
        else:
            mean = heads.head_targets(means)
            phase2 = (mean, heads.head_targets(second) - mean**2)
        y = np.full(len(means), np.nan) if y is None else (y - self.loc) / self.scale
        return tuple(
            {"mean": m.astype(np.float32), "var": v.astype(np.float32), "y": y.astype(np.float32)}
            for m, v in (phase1, phase2)
        )

    def decode(self, outputs):
        """Head outputs (n, heads, 2) -> means and variances (n, heads) in units of ``y``."""
        mean, variance = gaussian_parameters(outputs, MIN_VARIANCE)
        means = mean.numpy().astype(np.float64) * self.scale + self.loc
        variances = variance.numpy().astype(np.float64) * self.scale**2
        if not self.aleatoric_known:
            variances = np.full_like(variances, np.nan)
        return means, variances

    def criterion(self):
        return GaussianDistillationLoss(MIN_VARIANCE)


_ENSEMBLE_DOC = """ensemble : object, default=None
        The teacher: a fitted random forest, extra trees, bagging or voting
        regressor, a list of fitted regressors (scikit-learn, skorch,
        Pipelines, Hydra regressors), a Pipeline ending in one, a
        :class:`~sklearn.frozen.FrozenEstimator` around one, or a list of
        :class:`torch.nn.Module` returning the mean, shape (n,) or (n, 1), or
        the mean and the **variance** as two columns, shape (n, 2). Members
        whose ``predict`` accepts ``return_std`` are used as Gaussians. An
        unfitted ensemble is cloned and fitted on ``(X, y, sample_weight)``;
        ``None`` fits a random forest of 20 trees. Boosting and stacking are
        refused."""


@declare_parameters("regressor", _ENSEMBLE_DOC)
class HydraDistilledRegressor(RegressorMixin, BaseHydra):
    """Distil an ensemble of regressors into one network that keeps its uncertainty.

    Each head predicts a Gaussian (a mean and a variance with a floor); the
    student's predictive distribution is the (weighted) mixture of its heads.
    Phase 1 trains the body and one head on the ensemble's moment-matched
    Gaussian; phase 2 copies that head into every head and trains head ``m``
    on member ``m``. Gaussian members (``predict(X, return_std=True)``, torch
    modules returning a mean and a variance) are matched by the KL divergence
    ``KL(N(mu_m, s_m^2) || N(mu'_m, s'^2_m))``. Point members (trees, most
    scikit-learn regressors) give no variance: the heads' means match the
    members' means by squared error and, when ``y`` is given to ``fit``, the
    heads' variances are fitted by the Gaussian likelihood of ``y`` around the
    members' means (the members' residual variance). Without ``y`` the
    aleatoric part is unknown and reported as NaN, with a warning.

    Targets are standardised inside the estimator and predictions mapped back
    to the units of ``y``.

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    {attributes}

    See Also
    --------
    HydraDistilledClassifier : The same for an ensemble of classifiers.

    Notes
    -----
    Residuals of ``y`` around members that were fitted on the same rows are
    smaller than on new rows (a deep tree reproduces its training targets), so
    with point members the learned aleatoric variance is a lower bound unless
    ``X, y`` are rows the ensemble did not see (e.g. a held-out set), or the
    training rows of a bootstrapped ensemble seen through their out-of-bag
    members (``out_of_bag_``).

    References
    ----------
    .. [1] L. Tran et al. "Hydra: Preserving Ensemble Diversity for Model
       Distillation", 2020. :arxiv:`2001.04694`

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.ensemble import RandomForestRegressor
    >>> from skhydra import HydraDistilledRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> forest = RandomForestRegressor(n_estimators=8, random_state=0).fit(X, y)
    >>> hydra = HydraDistilledRegressor(
    ...     forest, body_layer_sizes=(32,), phase1_epochs=10, max_epochs=20, random_state=0
    ... ).fit(X, y)
    >>> mean, std = hydra.predict(X[:3], return_std=True)
    >>> mean.shape, bool((std > 0).all())
    ((3,), True)
    """

    _task = "regressor"
    _learns_from_y = True  # with point members, the heads' variances fit the residuals of y

    def predict(self, X, return_std=False):
        """Predict the mean of the heads' mixture, optionally with its std.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.
        return_std : bool, default=False
            Also return the mixture's total standard deviation,
            ``sqrt(aleatoric + epistemic)`` (NaN, with a warning, when the
            aleatoric part is unknown).

        Returns
        -------
        mean : ndarray of shape (n_samples,)
        std : ndarray of shape (n_samples,)
            Only with ``return_std=True``.
        """
        means, variances = self.predict_members(X)
        mean = means @ self.head_weights_
        if not return_std:
            return mean
        total, _, _ = regression_uncertainty(means, self._known(variances), self.head_weights_)
        return mean, np.sqrt(total)

    def predict_members(self, X):
        """Predict every head's Gaussian.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        means, variances : ndarray of shape (n_samples, n_heads)
            Each head's mean and variance in the units of ``y`` (variances
            NaN when the aleatoric part is unknown), the student's counterpart
            of :func:`skhydra.ensembles.predict_members`.
        """
        outputs = torch.cat(list(self._head_outputs(X)))
        return self.target_encoding_.decode(outputs)

    def predict_uncertainty(self, X):
        """Decompose the predictive variance into aleatoric and epistemic parts.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        DataFrame of shape (n_samples, 3)
            ``aleatoric`` (mean of the heads' variances), ``epistemic``
            (variance of the heads' means) and ``total`` (their sum), in
            squared units of ``y``; NaN aleatoric and total, with a warning,
            when the aleatoric part is unknown. The index of ``X`` when ``X``
            is a DataFrame.
        """
        means, variances = self.predict_members(X)
        parts = regression_uncertainty(means, self._known(variances), self.head_weights_)
        return uncertainty_frame(*parts, index=index_of(X))

    def _known(self, variances):
        if self.target_encoding_.aleatoric_known:
            return variances
        warnings.warn(
            "The aleatoric uncertainty is unknown (NaN): the ensemble's members predict "
            "no variance and fit got no y. Refit with y to learn it.",
            UserWarning,
            stacklevel=3,
        )
        return None

    # -- what differs from classification ---------------------------------------

    def _default_ensemble(self):
        return RandomForestRegressor(n_estimators=20, random_state=self.random_state)

    def _check_y(self, y, fit_ensemble):
        y = np.asarray(y) if not hasattr(y, "to_numpy") else y.to_numpy()
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError(
                f"y has {y.shape[1]} columns; HydraDistilledRegressor distils "
                "single-output ensembles. Fit one regressor per output."
            )
        y = column_or_1d(y, warn=True)
        return check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")

    def _target_encoding(self, teacher, y, predictions):
        # Standardise by y, or else by the ensemble's mean prediction of the first
        # chunk of real rows (up to 8192).
        if y is not None:
            reference = y
        else:
            reference = np.average(predictions[0], axis=1, weights=teacher.weights)
        aleatoric_known = teacher.has_variance or y is not None
        if not aleatoric_known:
            warnings.warn(
                "The ensemble's members predict no variance and no y was given, so the "
                "aleatoric uncertainty cannot be learned: predict_uncertainty will report "
                "it as NaN. Pass y to fit to learn it from the residuals.",
                UserWarning,
                stacklevel=4,
            )
        return GaussianTargets(
            loc=float(np.mean(reference)),
            scale=float(np.std(reference)) or 1.0,
            aleatoric_known=aleatoric_known,
        )
