"""Where the student's piecewise-linear encoding puts its bins: the teacher's split points.

A tree ensemble's prediction is a step function of each feature, with its
steps at the trees' split thresholds. An MLP on standardised inputs draws
such steps poorly; the same MLP on a piecewise-linear encoding of each
feature (Gorishniy et al., "On Embeddings for Numerical Features in Tabular
Deep Learning", NeurIPS 2022), with its bins where the trees split most,
draws them with one unit each. :func:`bin_edges` places the edges at
quantiles of the thresholds the members use on each feature (scikit-learn
trees, forests, bagging and ``HistGradientBoosting*`` members), or at
quantiles of the feature's values for members without readable splits; the
module applies them as :class:`skhydra.nn.PiecewiseLinear`.
"""

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

__all__ = ["MIN_DISTINCT_PER_BIN", "bin_edges", "split_thresholds"]

#: A feature is encoded only when it takes more than this many distinct values per bin
#: in the real rows. Flags, codes and small counts (digits' pixel intensities 0-16)
#: would become categories; measured on digits, encoding them cut the student's share
#: of a forest's epistemic uncertainty (benchmarks/digits_ood.py).
MIN_DISTINCT_PER_BIN = 2

#: Smallest width of a bin, as a fraction of the feature's range (float32
#: resolves about 1e-7 of a value).
MIN_GAP = 1e-5


def _unwrap(model):
    while isinstance(model, (FrozenEstimator, Pipeline)):
        model = model.estimator if isinstance(model, FrozenEstimator) else model[-1]
    return model


def _tree_splits(model):
    """(features, thresholds) of every split of one fitted model, or None if unreadable."""
    model = _unwrap(model)
    tree = getattr(model, "tree_", None)
    if tree is not None:  # DecisionTree*, ExtraTree*
        inner = tree.feature >= 0
        return tree.feature[inner], tree.threshold[inner]
    predictors = getattr(model, "_predictors", None)
    if predictors is not None:  # HistGradientBoosting*: one predictor per iteration and class
        parts = [
            p.nodes[~p.nodes["is_leaf"].astype(bool) & ~p.nodes["is_categorical"].astype(bool)]
            for row in predictors
            for p in row
        ]
        nodes = np.concatenate(parts) if parts else None
        if nodes is None:
            return None
        return nodes["feature_idx"].astype(np.intp), nodes["num_threshold"].astype(float)
    estimators = getattr(model, "estimators_", None)
    if estimators is not None and not isinstance(estimators, np.ndarray):  # a forest as member
        splits = [_tree_splits(e) for e in estimators]
        if any(s is None for s in splits) or not splits:
            return None
        return np.concatenate([s[0] for s in splits]), np.concatenate([s[1] for s in splits])
    return None


def split_thresholds(teacher, n_features):
    """The split thresholds of the teacher's members, per input feature.

    Parameters
    ----------
    teacher : skhydra.ensembles.Teacher
    n_features : int
        Width of the rows the members take.

    Returns
    -------
    list of ndarray, or None
        ``n_features`` arrays of thresholds (a member's column subset mapped
        back to the input's columns), or None when a member's splits cannot
        be read (e.g. LightGBM or XGBoost members, torch members).
    """
    per_feature = [[] for _ in range(n_features)]
    for member in teacher.members:
        model = getattr(member, "model", None)  # precomputed members have none
        splits = None if model is None else _tree_splits(model)
        if splits is None:
            return None
        features, thresholds = splits
        if member.features is not None:
            features = np.asarray(member.features)[features]
        if features.size and features.max() >= n_features:
            return None
        for j in np.unique(features):
            per_feature[j].append(thresholds[features == j])
    return [np.concatenate(t) if t else np.empty(0) for t in per_feature]


def bin_edges(X, n_bins, thresholds=None):
    """Bin edges of the piecewise-linear encoding, per feature, in the units of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The real rows as the student takes them (NaN allowed).
    n_bins : int
        Bins per feature, at most (equal quantiles of the edges' source).
    thresholds : list of ndarray, default=None
        Split thresholds per feature (:func:`split_thresholds`): the edges
        are their quantiles, so bins are narrow where the members split
        often; a feature without thresholds (that no member splits on) is
        not encoded. ``None``: quantiles of each feature's values.

    Returns
    -------
    list of (ndarray or None)
        Increasing edges (at least three: two bins) of each feature, the
        smallest and largest value of the feature included, or None for a
        feature that stays as it is: one with at most
        ``MIN_DISTINCT_PER_BIN * n_bins`` distinct values (one-hot codes,
        flags, small counts), or one the members never split on.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._encoding import bin_edges
    >>> X = np.c_[np.arange(10.0), np.arange(10) % 2]
    >>> [e if e is None else e.tolist() for e in bin_edges(X, 2)]
    [[0.0, 4.5, 9.0], None]
    >>> thresholds = [np.array([2.5, 2.5, 6.5]), np.array([0.5])]
    >>> bin_edges(X, 2, thresholds)[0].tolist()
    [0.0, 2.5, 6.5, 9.0]
    """
    edges = []
    quantiles = np.linspace(0.0, 1.0, n_bins + 1)
    for j in range(X.shape[1]):
        column = np.asarray(X[:, j], dtype=np.float64)
        column = column[np.isfinite(column)]
        if len(np.unique(column)) <= MIN_DISTINCT_PER_BIN * n_bins:
            edges.append(None)  # flags, codes, counts: already coarse
            continue
        if thresholds is None:
            inner = np.quantile(column, quantiles)
        elif np.isfinite(thresholds[j]).any():
            inner = np.quantile(thresholds[j][np.isfinite(thresholds[j])], quantiles)
        else:
            edges.append(None)
            continue
        e = np.unique(np.r_[column.min(), inner, column.max()])
        e = _separated(e[(e >= column.min()) & (e <= column.max())])
        edges.append(e if len(e) >= 3 else None)
    return edges


def _separated(edges):
    """The edges less those within ``MIN_GAP`` of the range from the previous one.

    A tree's threshold can differ from the feature's smallest or largest value
    by float32 rounding only: such a bin would be empty and, at the ends, make
    the encoding's slope enormous. The outer edges stay.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._encoding import _separated
    >>> _separated(np.array([0.0, 1e-9, 0.5, 1.0 - 1e-9, 1.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    gap = MIN_GAP * (edges[-1] - edges[0])
    kept = [edges[0]]
    for e in edges[1:-1]:
        if e - kept[-1] >= gap and edges[-1] - e >= gap:
            kept.append(e)
    return np.array(kept + [edges[-1]]) if len(edges) > 1 else edges
