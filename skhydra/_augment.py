"""Synthetic transfer points around the data, labelled by the teacher.

Members of an ensemble tend to agree on the rows they were fitted on (trees are
grown to purity, bootstrap samples overlap), so a student distilled on those rows
alone sees little disagreement. Points near the data, where members do disagree,
show it to the student.
"""

import numpy as np

__all__ = ["synthetic_rows"]

AUGMENTATIONS = ("noise", "mixup")


def synthetic_rows(X, kind, factor, noise_scale, rng):
    """Draw ``round(factor * len(X))`` synthetic rows near ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...)
        Transfer rows (any trailing shape, e.g. images).
    kind : {"noise", "mixup"} or None
        ``"noise"``: a random row plus Gaussian noise of ``noise_scale``
        standard deviations of each feature (standardised units).
        ``"mixup"``: a random convex combination ``l * x_i + (1 - l) * x_j`` of
        two random rows, ``l ~ Uniform(0, 1)``. ``None``: no rows.
    factor : float
        Synthetic rows per real row.
    noise_scale : float
        Noise scale of ``"noise"``.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (n_new, ...), dtype of ``X``
    """
    n_new = int(round(factor * len(X))) if kind is not None else 0
    if n_new == 0:
        return X[:0]
    first = X[rng.integers(len(X), size=n_new)]
    if kind == "noise":
        scale = X.std(axis=0, dtype=np.float64)
        noise = rng.standard_normal(first.shape) * (noise_scale * scale)
        return (first + noise).astype(X.dtype)
    second = X[rng.integers(len(X), size=n_new)]
    lam = rng.uniform(size=(n_new,) + (1,) * (X.ndim - 1))
    return (lam * first + (1.0 - lam) * second).astype(X.dtype)
