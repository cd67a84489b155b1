"""Uncertainty decomposition over ensemble members or Hydra heads.

Classification (nats): ``total = H[mean_m p_m]``, ``aleatoric = mean_m H[p_m]``,
``epistemic = total - aleatoric`` (the mutual information, >= 0).
Regression (units of y squared): ``aleatoric = mean_m s_m^2``,
``epistemic = var_m mu_m`` (the equal- or member-weighted population variance),
``total = aleatoric + epistemic``.
"""

import warnings

import numpy as np
import pandas as pd
import torch

__all__ = [
    "classification_uncertainty",
    "entropy_decomposition",
    "predict_uncertainty",
    "regression_uncertainty",
]

COLUMNS = ["total", "aleatoric", "epistemic"]

#: Numbers (rows x classes x members) per block of the classification decomposition:
#: blocks that stay in the CPU's cache are several times faster than whole arrays, and
#: blocks of many rows pay less per-call overhead than small ones.
BLOCK_ELEMENTS = 2**18


def block_rows(width):
    """Rows per decomposition block for rows of ``width`` numbers (classes x members).

    Examples
    --------
    >>> from skhydra.uncertainty import block_rows
    >>> block_rows(200 * 10), block_rows(100 * 3), block_rows(5 * 3)
    (131, 873, 4096)
    """
    return int(np.clip(BLOCK_ELEMENTS // max(width, 1), 64, 4096))


def _normalised_weights(weights, n_members):
    if weights is None:
        return np.full(n_members, 1.0 / n_members)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_members,) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(
            f"weights must be {n_members} non-negative numbers with a positive sum, "
            f"got {weights!r}."
        )
    return weights / weights.sum()


def entropy_decomposition(p, weights, log_p=None):
    """Total and aleatoric entropy of a block of categorical predictions (torch).

    The one implementation of the classification decomposition, used for
    ensembles (:func:`classification_uncertainty`) and for the students'
    heads alike.

    Parameters
    ----------
    p : torch.Tensor of shape (n, n_classes, n_members)
        Probabilities, members on the last (contiguous) axis, where torch
        vectorises best.
    weights : torch.Tensor of shape (n_members,)
        Member weights summing to one, of the dtype of ``p``.
    log_p : torch.Tensor of shape (n, n_classes, n_members), default=None
        ``log p`` when the caller has it (a student's ``log_softmax``), which
        saves a logarithm per class; ``None`` computes ``p log p`` from ``p``
        (with ``0 log 0 = 0``).

    Returns
    -------
    total, aleatoric : torch.Tensor of shape (n,)
        ``H[sum_m w_m p_m]`` and ``sum_m w_m H[p_m]`` in nats; the epistemic
        part is their difference.

    Examples
    --------
    >>> import torch
    >>> from skhydra.uncertainty import entropy_decomposition
    >>> p = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1 row, 2 classes, 2 members)
    >>> total, aleatoric = entropy_decomposition(p, torch.tensor([0.5, 0.5]))
    >>> round(total.item(), 4), aleatoric.item()
    (0.6931, 0.0)
    """
    p = p.clamp(0.0, 1.0)
    p_log_p = torch.special.xlogy(p, p) if log_p is None else p * log_p
    aleatoric = -p_log_p.sum(dim=1) @ weights
    if p.shape[-1] == 1:
        return aleatoric, aleatoric  # one member cannot disagree with itself: exactly 0
    return torch.special.entr(p @ weights).sum(dim=1), aleatoric


def _parts(total, aleatoric):
    """``(total, aleatoric, epistemic)``: epistemic clipped at 0, ``total = sum`` exactly."""
    epistemic = np.maximum(total - aleatoric, 0.0)
    return aleatoric + epistemic, aleatoric, epistemic


def classification_uncertainty(probabilities, weights=None):
    """Decompose the predictive entropy of a set of categorical predictions.

    Parameters
    ----------
    probabilities : array-like of shape (n_samples, n_members, n_classes)
        Each member's (or head's) class probabilities.
    weights : array-like of shape (n_members,), default=None
        Member weights (normalised to sum to one); ``None`` weighs members
        equally.

    Returns
    -------
    total, aleatoric, epistemic : ndarray of shape (n_samples,)
        Entropy of the mean prediction, mean entropy of the members, and
        their difference (mutual information), in nats, computed in float64.
        ``epistemic`` is clipped at 0 against rounding and
        ``total = aleatoric + epistemic`` holds exactly.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra.uncertainty import classification_uncertainty
    >>> p = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # two confident members disagree
    >>> total, aleatoric, epistemic = classification_uncertainty(p)
    >>> round(float(total[0]), 4), float(aleatoric[0]), round(float(epistemic[0]), 4)
    (0.6931, 0.0, 0.6931)
    """
    p = np.asarray(probabilities)
    if p.ndim != 3:
        raise ValueError(
            f"probabilities must have shape (n_samples, n_members, n_classes), got {p.shape}."
        )
    w = torch.from_numpy(_normalised_weights(weights, p.shape[1]))
    total, aleatoric = np.empty(len(p)), np.empty(len(p))
    rows = block_rows(p.shape[1] * p.shape[2])
    for start in range(0, len(p), rows):
        block = torch.as_tensor(p[start : start + rows], dtype=torch.float64)
        t, a = entropy_decomposition(block.transpose(1, 2), w)
        total[start : start + len(block)], aleatoric[start : start + len(block)] = t, a
    return _parts(total, aleatoric)


def regression_uncertainty(means, variances=None, weights=None):
    """Decompose the variance of a mixture of Gaussian (or point) predictions.

    Parameters
    ----------
    means : array-like of shape (n_samples, n_members)
        Each member's predicted mean.
    variances : array-like of shape (n_samples, n_members), default=None
        Each member's predicted variance; ``None`` or NaN where the members
        give no variance (the aleatoric and total parts are then NaN).
    weights : array-like of shape (n_members,), default=None
        Member weights; ``None`` weighs members equally.

    Returns
    -------
    total, aleatoric, epistemic : ndarray of shape (n_samples,)
        ``aleatoric`` is the weighted mean of the variances, ``epistemic`` the
        weighted population variance of the means (dividing by the weights'
        sum, not ``M - 1``), ``total`` their sum.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra.uncertainty import regression_uncertainty
    >>> total, aleatoric, epistemic = regression_uncertainty([[0.0, 2.0]], [[1.0, 3.0]])
    >>> float(total[0]), float(aleatoric[0]), float(epistemic[0])
    (3.0, 2.0, 1.0)
    """
    mu = np.asarray(means, dtype=np.float64)
    if mu.ndim != 2:
        raise ValueError(f"means must have shape (n_samples, n_members), got {mu.shape}.")
    w = _normalised_weights(weights, mu.shape[1])
    mean = mu @ w
    epistemic = ((mu - mean[:, None]) ** 2) @ w
    if variances is None:
        aleatoric = np.full_like(epistemic, np.nan)
    else:
        var = np.asarray(variances, dtype=np.float64)
        if var.shape != mu.shape:
            raise ValueError(f"variances must have the shape of means {mu.shape}, got {var.shape}.")
        aleatoric = var @ w
    return aleatoric + epistemic, aleatoric, epistemic


def uncertainty_frame(total, aleatoric, epistemic, index=None):
    """Pack the three parts in the public DataFrame layout."""
    return pd.DataFrame(
        {"total": total, "aleatoric": aleatoric, "epistemic": epistemic}, index=index
    )


def index_of(X):
    """The index of a DataFrame or Series ``X`` (kept by ``predict_uncertainty``), else None."""
    return X.index if isinstance(X, (pd.DataFrame, pd.Series)) else None


def teacher_view(student, X, hint=""):
    """The teacher of a fitted student and ``X`` as that teacher takes it.

    Parameters
    ----------
    student : estimator
        A fitted Hydra estimator, or a Pipeline or fitted search ending in one.
    X : array-like or DataFrame
        Rows as ``student`` takes them.
    hint : str, default=""
        Appended to the error raised when ``student`` holds no Hydra estimator.

    Returns
    -------
    teacher : skhydra.ensembles.Teacher
    X_teacher : array-like
        ``X`` after the Pipeline's steps in front of the Hydra estimator.
    """
    from ._base import BaseHydra

    model = getattr(student, "best_estimator_", student)
    front = None
    if hasattr(model, "steps"):
        front, model = model[:-1], model.steps[-1][1]
    if not isinstance(model, BaseHydra):
        raise TypeError(
            "This needs a fitted Hydra estimator (or a Pipeline or search ending in one) "
            f"to find the teacher, got {type(model).__name__}{hint}."
        )
    if getattr(model, "ensemble_", None) is None:
        raise ValueError(
            "This student holds no teacher: it is not fitted, or it was stripped of its "
            "teacher by without_teacher()."
        )
    return model.teacher_, X if front is None else front.transform(X)


def predict_uncertainty(model, X, *, task=None):
    """Total, aleatoric and epistemic uncertainty of a Hydra model or an ensemble.

    Parameters
    ----------
    model : estimator
        A fitted :class:`~skhydra.HydraDistilledClassifier` or
        :class:`~skhydra.HydraDistilledRegressor`; a fitted
        :class:`~sklearn.pipeline.Pipeline` ending in one; a fitted search
        (:class:`~sklearn.model_selection.GridSearchCV`,
        :class:`~sklearn.model_selection.RandomizedSearchCV`) over one; or any
        ensemble that :func:`skhydra.ensembles.predict_members` supports, so
        teacher and student are decomposed by the same code.
    X : array-like or DataFrame of shape (n_samples, n_features)
        Input rows.
    task : {"classifier", "regressor"}, default=None
        Only for an ensemble given as a list of torch modules, which cannot
        tell its task; ignored for the Hydra estimators.

    Returns
    -------
    DataFrame of shape (n_samples, 3)
        Columns ``total``, ``aleatoric`` and ``epistemic``; the index of ``X``
        when ``X`` is a DataFrame. Classification in nats, regression in
        squared units of the target.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra import predict_uncertainty
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    >>> predict_uncertainty(forest, X[:3]).columns.tolist()
    ['total', 'aleatoric', 'epistemic']
    """
    from ._base import BaseHydra
    from .ensembles import resolve_teacher

    if hasattr(model, "best_estimator_"):
        return predict_uncertainty(model.best_estimator_, X, task=task)
    if isinstance(model, BaseHydra):
        return model.predict_uncertainty(X)
    steps = getattr(model, "steps", None)
    if steps is not None and isinstance(steps[-1][1], BaseHydra):
        Xt = model[:-1].transform(X)
        frame = steps[-1][1].predict_uncertainty(Xt)
        if index_of(X) is not None:
            frame.index = X.index
        return frame
    teacher = resolve_teacher(model, task=task, X=X)
    if not teacher.is_classifier and not teacher.has_variance:
        warnings.warn(
            "The ensemble's members predict no variance, so the aleatoric and total "
            "uncertainty are unknown (NaN); only the epistemic part is reported.",
            UserWarning,
            stacklevel=2,
        )
    parts = teacher_uncertainty(teacher, teacher.predict_members(teacher.transform(X)))
    return uncertainty_frame(*parts, index=index_of(X))


def teacher_uncertainty(teacher, predictions):
    """Decompose a teacher's member predictions, by its task.

    Parameters
    ----------
    teacher : skhydra.ensembles.Teacher
    predictions : ndarray or tuple of ndarray
        ``teacher.predict_members(...)`` of some rows: probabilities, or means
        and variances.

    Returns
    -------
    total, aleatoric, epistemic : ndarray of shape (n_samples,)
        See :func:`classification_uncertainty` and
        :func:`regression_uncertainty`; for members that predict no variance
        the total and aleatoric parts are NaN.
    """
    if teacher.is_classifier:
        return classification_uncertainty(predictions, teacher.weights)
    means, variances = predictions
    return regression_uncertainty(
        means, variances if teacher.has_variance else None, teacher.weights
    )
