"""How a distilled student is judged: calibration, fidelity to the teacher, OOD, regression.

Classification metrics take probabilities of shape (n_samples, n_classes);
uncertainty metrics take one score per row (e.g. the ``epistemic`` column of
:func:`skhydra.predict_uncertainty`). Regression metrics take a Gaussian
mixture as per-component ``means`` and ``variances`` of shape
(n_samples, n_components), equal weights unless ``weights`` is given.
"""

import warnings

import numpy as np
from scipy import stats
from scipy.special import logsumexp, ndtr, ndtri, rel_entr
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

__all__ = [
    "agreement",
    "brier_score",
    "crps_gaussian_mixture",
    "epistemic_fidelity_score",
    "expected_calibration_error",
    "gaussian_mixture_nll",
    "interval_coverage",
    "kl_to_teacher",
    "mixture_interval",
    "negative_log_likelihood",
    "ood_auroc",
    "reliability_bins",
    "uncertainty_mse",
    "uncertainty_spearman",
]


def _proba(p):
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be 2-D (n_samples, n_classes), got {p.shape}.")
    return p


def _rounded_to_one(p):
    """Rows renormalised when they miss a sum of 1 by float32 rounding only.

    scikit-learn's log_loss and brier_score_loss warn about such rows.
    """
    sums = p.sum(axis=1, keepdims=True)
    return p / sums if np.allclose(sums, 1.0, rtol=0, atol=1e-5) else p


def _label_index(y_true, classes, n_classes):
    y_true = np.asarray(y_true)
    classes = np.arange(n_classes) if classes is None else np.asarray(classes)
    index = np.searchsorted(classes, y_true)
    index = np.clip(index, 0, len(classes) - 1)
    if not np.all(classes[index] == y_true):
        raise ValueError("y_true contains labels that are not in classes.")
    return index


def negative_log_likelihood(y_true, proba, *, classes=None):
    """Mean negative log-likelihood of the true labels (nats).

    A thin wrapper of :func:`sklearn.metrics.log_loss` with explicit classes.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : array-like of shape (n_classes,), default=None
        Column labels; ``None`` means ``0, ..., n_classes - 1``.

    Returns
    -------
    float

    Examples
    --------
    >>> from skhydra.metrics import negative_log_likelihood
    >>> round(negative_log_likelihood([0, 1], [[0.5, 0.5], [0.2, 0.8]]), 4)
    0.4581
    """
    p = _rounded_to_one(_proba(proba))
    labels = np.arange(p.shape[1]) if classes is None else np.asarray(classes)
    return float(log_loss(y_true, p, labels=labels))


def brier_score(y_true, proba, *, classes=None):
    """Multiclass Brier score: mean over rows of ``sum_c (p_c - 1[y = c])^2``.

    :func:`sklearn.metrics.brier_score_loss` without its halving of the
    binary case, so binary and multiclass scores are on one scale.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : array-like of shape (n_samples, n_classes)
    classes : array-like of shape (n_classes,), default=None

    Returns
    -------
    float

    Examples
    --------
    >>> from skhydra.metrics import brier_score
    >>> brier_score([0, 1], [[1.0, 0.0], [0.5, 0.5]])
    0.25
    """
    p = _rounded_to_one(_proba(proba))
    labels = np.arange(p.shape[1]) if classes is None else np.asarray(classes)
    _label_index(y_true, labels, p.shape[1])  # the same error as the other metrics
    return float(brier_score_loss(y_true, p, labels=labels, scale_by_half=False))


def expected_calibration_error(y_true, proba, *, classes=None, n_bins=15):
    """Expected calibration error of the top-class confidence.

    Rows are binned by their maximum probability into ``n_bins`` equal-width
    bins on [0, 1]; the ECE is the row-weighted mean over bins of
    ``|accuracy - mean confidence|``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : array-like of shape (n_samples, n_classes)
    classes : array-like of shape (n_classes,), default=None
    n_bins : int, default=15

    Returns
    -------
    float

    Examples
    --------
    >>> from skhydra.metrics import expected_calibration_error
    >>> expected_calibration_error([0, 0], [[0.9, 0.1], [0.7, 0.3]])
    0.2
    """
    confidence, accuracy, counts = reliability_bins(y_true, proba, classes=classes, n_bins=n_bins)
    full = counts > 0
    ece = np.sum(counts[full] * np.abs(accuracy[full] - confidence[full])) / counts.sum()
    return float(round(ece, 12))


def reliability_bins(y_true, proba, *, classes=None, n_bins=15):
    """Mean top-class confidence, accuracy and row count per confidence bin.

    Rows are binned by their maximum probability into ``n_bins`` equal-width
    bins on [0, 1] (the last bin is closed); the binning of
    :func:`expected_calibration_error` and of the reliability diagram.

    Returns
    -------
    confidence, accuracy : ndarray of shape (n_bins,)
        NaN in empty bins.
    counts : ndarray of shape (n_bins,)

    Examples
    --------
    >>> from skhydra.metrics import reliability_bins
    >>> confidence, accuracy, counts = reliability_bins([0, 0], [[0.9, 0.1], [0.7, 0.3]], n_bins=2)
    >>> confidence.tolist(), accuracy.tolist(), counts.tolist()
    ([nan, 0.8], [nan, 1.0], [0, 2])
    """
    p = _proba(proba)
    top = p.max(axis=1)
    correct = p.argmax(axis=1) == _label_index(y_true, classes, p.shape[1])
    bins = np.minimum((top * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(bins, weights=top, minlength=n_bins) / counts
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
    return confidence, accuracy, counts


def agreement(teacher_proba, student_proba):
    """Fraction of rows where teacher and student predict the same class.

    Examples
    --------
    >>> from skhydra.metrics import agreement
    >>> agreement([[0.9, 0.1], [0.4, 0.6]], [[0.6, 0.4], [0.7, 0.3]])
    0.5
    """
    t, s = _proba(teacher_proba), _proba(student_proba)
    return float(accuracy_score(t.argmax(axis=1), s.argmax(axis=1)))


def kl_to_teacher(teacher_proba, student_proba, eps=1e-12):
    """Mean ``KL(teacher || student)`` of the mean predictions, in nats.

    Examples
    --------
    >>> from skhydra.metrics import kl_to_teacher
    >>> kl_to_teacher([[0.5, 0.5]], [[0.5, 0.5]])
    0.0
    """
    t, s = _proba(teacher_proba), _proba(student_proba)
    return float(np.mean(rel_entr(t, np.maximum(s, eps)).sum(axis=1)))


def uncertainty_spearman(teacher_uncertainty, student_uncertainty):
    """Spearman rank correlation between two per-row uncertainty scores.

    Examples
    --------
    >>> from skhydra.metrics import uncertainty_spearman
    >>> uncertainty_spearman([0.1, 0.2, 0.3], [1.0, 5.0, 9.0])
    1.0
    """
    return float(stats.spearmanr(teacher_uncertainty, student_uncertainty).statistic)


def uncertainty_mse(teacher_uncertainty, student_uncertainty):
    """Mean squared difference between two per-row uncertainty scores.

    Examples
    --------
    >>> from skhydra.metrics import uncertainty_mse
    >>> uncertainty_mse([0.0, 1.0], [1.0, 1.0])
    0.5
    """
    t = np.asarray(teacher_uncertainty, dtype=np.float64)
    s = np.asarray(student_uncertainty, dtype=np.float64)
    return float(np.mean((t - s) ** 2))


def ood_auroc(score_in, score_out):
    """AUROC of telling out-of-distribution rows from in-domain rows by a score.

    Higher scores should mean "more likely out of distribution" (e.g.
    epistemic uncertainty). 0.5 is chance, 1.0 perfect separation.

    Examples
    --------
    >>> from skhydra.metrics import ood_auroc
    >>> ood_auroc([0.1, 0.2], [0.3, 0.4])
    1.0
    """
    score_in, score_out = np.ravel(score_in), np.ravel(score_out)
    labels = np.r_[np.zeros(len(score_in)), np.ones(len(score_out))]
    return float(roc_auc_score(labels, np.r_[score_in, score_out]))


def _mixture(means, variances, weights):
    mu = np.atleast_2d(np.asarray(means, dtype=np.float64))
    var = np.atleast_2d(np.asarray(variances, dtype=np.float64))
    if mu.shape != var.shape:
        raise ValueError(f"means {mu.shape} and variances {var.shape} differ in shape.")
    if np.any(~((var > 0) & np.isfinite(var))):
        raise ValueError("variances must be positive and finite.")
    k = mu.shape[1]
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, float) / np.sum(weights)
    return mu, var, w


def gaussian_mixture_nll(y_true, means, variances, weights=None):
    """Mean negative log-likelihood of ``y_true`` under a Gaussian mixture.

    ``-log sum_k w_k N(y; mu_k, s_k^2)``, averaged over rows. With one
    component it is the Gaussian NLL.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra.metrics import gaussian_mixture_nll
    >>> round(gaussian_mixture_nll([0.0], [[0.0]], [[1.0]]), 4)  # 0.5 * log(2 pi)
    0.9189
    """
    mu, var, w = _mixture(means, variances, weights)
    y = np.asarray(y_true, dtype=np.float64).reshape(-1, 1)
    log_pdf = -0.5 * (np.log(2 * np.pi * var) + (y - mu) ** 2 / var)
    return float(-np.mean(logsumexp(log_pdf, b=w, axis=1)))


def crps_gaussian_mixture(y_true, means, variances, weights=None):
    """Mean continuous ranked probability score of a Gaussian mixture.

    Uses the closed form of Grimit et al. (2006):
    ``CRPS = sum_k w_k A(y - mu_k, s_k^2) - 1/2 sum_kl w_k w_l A(mu_k - mu_l,
    s_k^2 + s_l^2)`` with ``A(m, v) = m (2 Phi(m / sqrt v) - 1) + 2 sqrt v
    phi(m / sqrt v)``. Lower is better; in units of y.

    Examples
    --------
    >>> from skhydra.metrics import crps_gaussian_mixture
    >>> round(crps_gaussian_mixture([0.0], [[0.0]], [[1.0]]), 4)  # (sqrt 2 - 1) / sqrt pi
    0.2337
    """
    mu, var, w = _mixture(means, variances, weights)
    y = np.asarray(y_true, dtype=np.float64).reshape(-1, 1)

    def a(m, v):
        s = np.sqrt(v)
        z = m / s
        return m * (2 * ndtr(z) - 1) + 2 * s * stats.norm.pdf(z)

    first = (a(y - mu, var) * w).sum(axis=1)
    pair = a(mu[:, :, None] - mu[:, None, :], var[:, :, None] + var[:, None, :])
    second = 0.5 * np.einsum("nkl,k,l->n", pair, w, w)
    return float(np.mean(first - second))


def mixture_interval(means, variances, weights=None, level=0.95, n_iter=60):
    """Central ``level`` interval of each row's Gaussian mixture, by bisection.

    Returns
    -------
    lower, upper : ndarray of shape (n_samples,)

    Examples
    --------
    >>> from skhydra.metrics import mixture_interval
    >>> lower, upper = mixture_interval([[0.0]], [[1.0]])
    >>> round(float(upper[0]), 3)
    1.96
    """
    mu, var, w = _mixture(means, variances, weights)
    sd = np.sqrt(var)
    bounds = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        z = ndtri(q)
        lo = (mu + z * sd).min(axis=1) - 1e-9
        hi = (mu + z * sd).max(axis=1) + 1e-9
        for _ in range(n_iter):
            mid = 0.5 * (lo + hi)
            cdf = (ndtr((mid[:, None] - mu) / sd) * w).sum(axis=1)
            lo, hi = np.where(cdf < q, mid, lo), np.where(cdf < q, hi, mid)
        bounds.append(0.5 * (lo + hi))
    return bounds[0], bounds[1]


def interval_coverage(y_true, means, variances, weights=None, level=0.95):
    """Fraction of ``y_true`` inside the mixture's central ``level`` interval.

    Examples
    --------
    >>> from skhydra.metrics import interval_coverage
    >>> interval_coverage([0.0, 5.0], [[0.0], [0.0]], [[1.0], [1.0]])
    0.5
    """
    lower, upper = mixture_interval(means, variances, weights, level)
    y = np.asarray(y_true, dtype=np.float64)
    return float(np.mean((y >= lower) & (y <= upper)))


def epistemic_fidelity_score(estimator, X, y=None):
    """Spearman correlation of a student's epistemic uncertainty with its teacher's.

    A scorer for model selection that rewards fidelity to the ensemble's
    uncertainty rather than accuracy: pass it as
    ``GridSearchCV(..., scoring=epistemic_fidelity_score)``. The teacher is the
    student's own fitted ensemble, evaluated on the same rows (after the
    Pipeline's preprocessing, when the student sits in one). ``y`` is ignored.

    Parameters
    ----------
    estimator : estimator
        A fitted :class:`~skhydra.HydraDistilledClassifier` or
        :class:`~skhydra.HydraDistilledRegressor`, or a Pipeline or fitted
        search ending in one.
    X : array-like or DataFrame of shape (n_samples, n_features)
        Rows to compare on (the validation fold in a search).
    y : ignored

    Returns
    -------
    float
        Spearman correlation in [-1, 1]; 0.0 when the student's epistemic
        uncertainty is constant (one head: knowledge distillation carries no
        epistemic uncertainty to rank by).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra import HydraDistilledClassifier
    >>> from skhydra.metrics import epistemic_fidelity_score
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    >>> kd = HydraDistilledClassifier(
    ...     forest, n_heads=1, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=5
    ... ).fit(X)
    >>> epistemic_fidelity_score(kd, X)
    0.0
    """
    from .uncertainty import predict_uncertainty, teacher_view

    teacher, X_teacher = teacher_view(estimator, X)
    student = predict_uncertainty(estimator, X)["epistemic"].to_numpy()
    with warnings.catch_warnings():
        # Point-prediction members have no aleatoric part; only the epistemic one is used.
        warnings.filterwarnings("ignore", message=".*predict no variance", category=UserWarning)
        teacher = predict_uncertainty(teacher, X_teacher)["epistemic"].to_numpy()
    if np.ptp(student) == 0 or np.ptp(teacher) == 0:
        return 0.0
    return uncertainty_spearman(teacher, student)
