"""HydraDistilledRegressor: an ensemble of regressors distilled into one network."""

import warnings

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils.validation import check_array, column_or_1d

from ._base import BaseHydra
from ._docs import fill
from .losses import GaussianDistillationLoss
from .nn import gaussian_parameters
from .uncertainty import regression_uncertainty, uncertainty_frame

__all__ = ["HydraDistilledRegressor"]

#: Variance floor of the heads, in standardised target units.
MIN_VARIANCE = 1e-6


def _group_moments(means, variances, assignment):
    """Moment-matched Gaussian of each head's members.

    ``means``/``variances`` (N, M) and ``assignment`` (H, M) give the mean
    (N, H) and variance (N, H) of each head's mixture; NaN variances stay NaN.
    """
    a = assignment / assignment.sum(axis=1, keepdims=True)
    mean = means @ a.T
    second = (variances + means**2) @ a.T
    return mean, second - mean**2


def _map_rows(array, func, chunk=65536):
    """``array[:] = func(array)`` one block of rows at a time (works on disk arrays)."""
    for start in range(0, len(array), chunk):
        stop = min(start + chunk, len(array))
        array[start:stop] = func(array[start:stop].astype(np.float64))


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
    ensemble : object, default=None
        The teacher: a fitted random forest, extra trees, bagging or voting
        regressor, a list of fitted regressors (scikit-learn, skorch,
        Pipelines, Hydra regressors), a Pipeline ending in one, a
        :class:`~sklearn.frozen.FrozenEstimator` around one, or a list of
        :class:`torch.nn.Module` returning the mean, shape (n,) or (n, 1), or
        the mean and the **variance** as two columns, shape (n, 2). Members
        whose ``predict`` accepts ``return_std`` are used as Gaussians. An
        unfitted ensemble is cloned and fitted on ``(X, y, sample_weight)``;
        ``None`` fits a random forest of 20 trees. Boosting and stacking are
        refused.

    {architecture}

    {training}

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
    ``X, y`` are rows the ensemble did not see (e.g. a held-out set).

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
    ...     forest, body_layer_sizes=(32,), phase1_epochs=10, max_epochs=10, random_state=0
    ... ).fit(X, y)
    >>> mean, std = hydra.predict(X[:3], return_std=True)
    >>> mean.shape, bool((std > 0).all())
    ((3,), True)
    """

    _task = "regressor"

    def __init__(
        self,
        ensemble=None,
        *,
        body_layer_sizes=(256, 256),
        head_layer_sizes=(),
        n_heads=None,
        body=None,
        body_params=None,
        input_scaling="auto",
        phase1_epochs=100,
        max_epochs=300,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size="auto",
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=30,
        augmentation="noise",
        augmentation_factor=1.0,
        noise_scale=0.5,
        device="auto",
        random_state=None,
        verbose=0,
        callbacks=None,
        skorch_params=None,
        precision="float32",
        accelerator=None,
        memory_budget="2GB",
        memory=None,
        n_jobs=None,
    ):
        self.ensemble = ensemble
        self.body_layer_sizes = body_layer_sizes
        self.head_layer_sizes = head_layer_sizes
        self.n_heads = n_heads
        self.body = body
        self.body_params = body_params
        self.input_scaling = input_scaling
        self.phase1_epochs = phase1_epochs
        self.max_epochs = max_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.augmentation = augmentation
        self.augmentation_factor = augmentation_factor
        self.noise_scale = noise_scale
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.skorch_params = skorch_params
        self.precision = precision
        self.accelerator = accelerator
        self.memory_budget = memory_budget
        self.memory = memory
        self.n_jobs = n_jobs

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
        mean = means @ self._head_weights
        if not return_std:
            return mean
        total, _, _ = regression_uncertainty(means, self._known(variances), self._head_weights)
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
        mean, variance = gaussian_parameters(self._forward(X), MIN_VARIANCE)
        means = mean.numpy().astype(np.float64) * self._y_scale + self._y_loc
        variances = variance.numpy().astype(np.float64) * self._y_scale**2
        if not self._aleatoric_known:
            variances = np.full_like(variances, np.nan)
        return means, variances

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
        parts = regression_uncertainty(means, self._known(variances), self._head_weights)
        return uncertainty_frame(*parts, index=getattr(X, "index", None))

    def _known(self, variances):
        if self._aleatoric_known:
            return variances
        warnings.warn(
            "The aleatoric uncertainty is unknown (NaN): the ensemble's members predict "
            "no variance and fit got no y. Refit with y to learn it.",
            UserWarning,
            stacklevel=3,
        )
        return None

    # -- task hooks ----------------------------------------------------------

    def _default_ensemble(self):
        return RandomForestRegressor(n_estimators=20, random_state=self.random_state)

    def _check_targets(self, y, fit_ensemble):
        y = np.asarray(y) if not hasattr(y, "to_numpy") else y.to_numpy()
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError(
                f"y has {y.shape[1]} columns; HydraDistilledRegressor distils "
                "single-output ensembles. Fit one regressor per output."
            )
        y = column_or_1d(y, warn=True)
        return check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")

    def _check_targets_against_teacher(self, y, teacher):
        pass

    def _prepare_targets(self, y):
        # Targets are stored shifted by about their mean, so float32 keeps their
        # precision even when y is far from 0 relative to its spread.
        self._y_shift = None if y is None else float(np.nanmean(y))

    def _targets_chunk(self, predictions, assignment, y):
        # In the units of y, shifted; _finish_targets standardises them.
        means, variances = predictions
        if self._y_shift is None:
            self._y_shift = float(np.mean(means @ assignment.sum(axis=0)))
        shift = self._y_shift
        y = np.full(len(means), np.nan) if y is None else np.asarray(y, dtype=np.float64)
        targets = []
        for a in (assignment.sum(axis=0, keepdims=True), assignment):
            mean, var = _group_moments(means, variances, a)
            targets.append(
                {
                    "mean": (mean - shift).astype(np.float32),
                    "var": var.astype(np.float32),
                    "y": (y - shift).astype(np.float32),
                }
            )
        return targets[0], targets[1]

    def _finish_targets(self, targets1, targets2, y):
        self._aleatoric_known = self._teacher.has_variance or y is not None
        if not self._aleatoric_known:
            warnings.warn(
                "The ensemble's members predict no variance and no y was given, so the "
                "aleatoric uncertainty cannot be learned: predict_uncertainty will report "
                "it as NaN. Pass y to fit to learn it from the residuals.",
                UserWarning,
                stacklevel=4,
            )
        # The ensemble mean is phase 1's target mean.
        shift = self._y_shift
        if y is not None:
            reference = y[np.isfinite(y)].astype(np.float64) - shift
        else:
            reference = targets1["mean"][:].ravel().astype(np.float64)
        offset = float(np.mean(reference))
        self._y_loc = shift + offset
        self._y_scale = float(np.std(reference)) or 1.0
        scale = self._y_scale
        for targets in (targets1, targets2):
            _map_rows(targets["mean"], lambda a: (a - offset) / scale)
            _map_rows(targets["var"], lambda a: a / scale**2)
            _map_rows(targets["y"], lambda a: (a - offset) / scale)

    def _criterion(self):
        return GaussianDistillationLoss(MIN_VARIANCE)

    def _n_outputs(self, teacher):
        return 2


HydraDistilledRegressor.__doc__ = fill(HydraDistilledRegressor.__doc__)
