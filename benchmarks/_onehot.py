"""One-hot blocks of a teacher's preprocessing, for the transfer-set ablations.

A ``OneHotEncoder`` writes each categorical column as a block of 0/1
columns with one 1; with ``handle_unknown="ignore"`` a category it never
saw is a block of zeros. ``transfer_ablations.py`` uses the blocks found
here to draw synthetic rows that respect them (or empty them).
"""

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

__all__ = ["nominal_groups", "on_the_data", "unseen_category_blocks", "with_unseen_category"]


def _encoder_blocks(encoder, every=False):
    """Column indices of the blocks an unseen category of ``encoder`` leaves all zero
    (``every``: of all its blocks)."""
    widths = []
    for i, categories in enumerate(encoder.categories_):
        width = len(categories)
        infrequent = getattr(encoder, "infrequent_categories_", [None] * len(encoder.categories_))
        if infrequent[i] is not None:
            width -= len(infrequent[i]) - 1  # the infrequent categories share one column
        dropped = encoder.drop_idx_ is not None and encoder.drop_idx_[i] is not None
        widths.append(width - dropped)
    if sum(widths) != len(encoder.get_feature_names_out()):
        return []  # a layout this reading does not follow: no blocks rather than wrong ones
    offsets = np.concatenate([[0], np.cumsum(widths)])
    blocks = []
    for i, width in enumerate(widths):
        dropped = encoder.drop_idx_ is not None and encoder.drop_idx_[i] is not None
        infrequent = getattr(encoder, "infrequent_categories_", None)
        to_infrequent = (
            encoder.handle_unknown == "infrequent_if_exist"
            and infrequent is not None
            and infrequent[i] is not None
        )
        # Zeros are an unseen category's row only when unseen categories are accepted, not
        # mapped to the infrequent column, and no category is dropped (whose row is zeros).
        empty = encoder.handle_unknown != "error" and not dropped and not to_infrequent
        if (every or empty) and width > 1:
            blocks.append(np.arange(offsets[i], offsets[i] + width))
    return blocks


def _blocks(step, every=False):
    if isinstance(step, OneHotEncoder) and hasattr(step, "categories_"):
        return _encoder_blocks(step, every)
    if isinstance(step, Pipeline):
        # The last step decides the output columns (an imputer then an encoder, say).
        last = [s for _, s in step.steps if s not in (None, "passthrough")]
        return _blocks(last[-1], every) if last else []
    if isinstance(step, ColumnTransformer) and hasattr(step, "output_indices_"):
        blocks = []
        for name, transformer, _ in step.transformers_:
            if transformer in ("drop", "passthrough"):
                continue
            start = step.output_indices_[name].start
            blocks.extend(start + b for b in _blocks(transformer, every))
        return blocks
    return []


def unseen_category_blocks(preprocessor, X):
    """The one-hot blocks of ``preprocessor``'s output that an unseen category leaves empty.

    Parameters
    ----------
    preprocessor : transformer or None
        The teacher's fitted preprocessing: a ``OneHotEncoder``, or a
        ``ColumnTransformer`` or ``Pipeline`` holding one (nested ones too).
    X : ndarray of shape (n_samples, n_features)
        The preprocessing's output on the real rows.

    Returns
    -------
    list of ndarray
        Column indices of each block of at least two columns whose encoder
        writes zeros for a category it did not see (``handle_unknown``
        ``"ignore"``, or ``"infrequent_if_exist"`` without infrequent
        categories; no dropped category), and in which no real row is all
        zero already. Empty when there are none or the layout is not known.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import OneHotEncoder
    >>> from _onehot import unseen_category_blocks
    >>> colours = np.array([["red"], ["green"], ["blue"], ["red"]])
    >>> encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(colours)
    >>> unseen_category_blocks(encoder, encoder.transform(colours))
    [array([0, 1, 2])]
    """
    if preprocessor is None or X.ndim != 2:
        return []
    blocks = [b for b in _blocks(preprocessor) if b[-1] < X.shape[1]]
    return [b for b in blocks if np.all(np.any(X[:, b] != 0, axis=1))]


def with_unseen_category(X, blocks, n_new, rng):
    """``n_new`` random rows of ``X``, each with one random block of ``blocks`` set to zero.

    Examples
    --------
    >>> import numpy as np
    >>> from _onehot import with_unseen_category
    >>> X = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 6.0]])
    >>> with_unseen_category(X, [np.array([0, 1])], 2, np.random.default_rng(0))[:, :2]
    array([[0., 0.],
           [0., 0.]])
    """
    rows = X[rng.integers(len(X), size=n_new)].copy()
    which = rng.integers(len(blocks), size=n_new)
    for k, block in enumerate(blocks):
        rows[np.ix_(which == k, block)] = 0
    return rows


def nominal_groups(preprocessor, X):
    """The one-hot blocks of ``preprocessor`` (any ``handle_unknown``), then each other
    column of ``X`` with two values (a flag): the nominal attributes of MUNGE."""
    blocks = [b for b in _blocks(preprocessor, every=True) if b[-1] < X.shape[1]]
    taken = np.zeros(X.shape[1], bool)
    for block in blocks:
        taken[block] = True
    flags = [np.array([j]) for j in np.flatnonzero(~taken) if len(np.unique(X[:, j])) == 2]
    return blocks + flags


def on_the_data(rows, groups, X):
    """``rows`` with each group of :func:`nominal_groups` snapped to what the real rows ``X``
    take: a one-hot block to its largest entry, a flag to the nearer of its two values."""
    rows = rows.copy()
    for group in groups:
        part = rows[:, group]
        if len(group) > 1:
            hot = part.argmax(axis=1)
            part[:] = 0
            part[np.arange(len(part)), hot] = 1
        else:
            lo, hi = np.unique(X[:, group[0]])
            part[:] = np.where(part - lo < hi - part, lo, hi)
        rows[:, group] = part
    return rows
