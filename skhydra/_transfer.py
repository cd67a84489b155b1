"""The transfer set: the rows the teacher labels and the student learns from.

The user's rows, plus synthetic rows around them (members agree on the rows
they were fitted on, and disagree around them), with their loss weights and
observed targets; the rows held out for early stopping; and the input
standardisation the student applies inside its module.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._progress import row_progress
from ._rows import ConcatRows
from .uncertainty import teacher_uncertainty

__all__ = [
    "TransferSet",
    "augment",
    "build_transfer_set",
    "input_scaling",
    "like",
    "most_disagreed",
    "synthetic_rows",
    "validation_rows",
]


#: Synthetic rows a tree teacher's transfer set aims at with augmentation="auto"
#: (between 1 and 4 per real row).
TREE_SYNTHETIC_ROWS = 20_000

#: Rows among which MUNGE looks for each row's nearest neighbour (a random subset
#: on larger data keeps the search cheap).
MUNGE_REFERENCE_ROWS = 10_000


def _noise(X, n_new, noise_scale, rng):
    first = X[rng.integers(len(X), size=n_new)]
    scale = np.nan_to_num(np.nanstd(X, axis=0, dtype=np.float64))
    return first + rng.standard_normal(first.shape) * (noise_scale * scale)


def _mixup(X, n_new, rng):
    first = X[rng.integers(len(X), size=n_new)]
    second = X[rng.integers(len(X), size=n_new)]
    lam = rng.uniform(size=(n_new,) + (1,) * (X.ndim - 1))
    return lam * first + (1.0 - lam) * second


def _munge(X, n_new, rng, swap=0.5):
    """MUNGE (Bucilua et al., 2006): a row takes, feature by feature with probability
    ``swap``, its nearest neighbour's value plus noise of the size of their difference."""
    rows, partner = munge_pairs(X, n_new, rng)
    return munge_mix(X[rows], X[partner], rng, swap)


def munge_mix(a, b, rng, swap=0.5):
    """MUNGE's rows from rows ``a`` and their nearest neighbours ``b``."""
    swapped = rng.random(a.shape) < swap
    spread = np.abs(a - b)
    return np.where(swapped, b + rng.standard_normal(a.shape) * spread, a)


def munge_pairs(X, n_new, rng):
    """``n_new`` random row indices of ``X`` and the index of each one's nearest neighbour."""
    from sklearn.neighbors import NearestNeighbors

    flat = np.nan_to_num(X.reshape(len(X), -1).astype(np.float64))
    scale = flat.std(axis=0)
    scale[scale == 0] = 1.0
    reference = np.arange(len(X))
    if len(X) > MUNGE_REFERENCE_ROWS:
        reference = rng.choice(len(X), MUNGE_REFERENCE_ROWS, replace=False)
    index = NearestNeighbors(n_neighbors=2).fit(flat[reference] / scale)
    rows = rng.integers(len(X), size=n_new)
    neighbours = index.kneighbors(flat[rows] / scale, return_distance=False)
    # The nearest neighbour other than the row itself (when the row is in the reference).
    own = reference[neighbours[:, 0]] == rows
    partner = reference[np.where(own, neighbours[:, 1], neighbours[:, 0])]
    return rows, partner


def synthetic_rows(X, kind, factor, noise_scale, rng):
    """Draw ``round(factor * len(X))`` synthetic rows near ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...)
        Transfer rows (any trailing shape, e.g. images).
    kind : {"noise", "mixup", "munge"} or None
        ``"noise"``: a random row plus Gaussian noise of ``noise_scale``
        standard deviations of each feature (standardised units).
        ``"mixup"``: a random convex combination ``l * x_i + (1 - l) * x_j`` of
        two random rows, ``l ~ Uniform(0, 1)``. ``"munge"``: a random row
        whose features each take, with probability 1/2, the value of its
        nearest neighbour plus Gaussian noise as large as their difference
        (Bucilua et al., 2006): rows in the data's own neighbourhoods.
        ``None``: no rows.
    factor : float
        Synthetic rows per real row.
    noise_scale : float
        Noise scale of ``"noise"``.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (n_new, ...), dtype of ``X``

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._transfer import synthetic_rows
    >>> X = np.arange(8.0).reshape(4, 2)
    >>> synthetic_rows(X, "noise", 1.5, 0.1, np.random.default_rng(0)).shape
    (6, 2)
    >>> synthetic_rows(X, "munge", 1.0, 0.1, np.random.default_rng(0)).shape
    (4, 2)
    """
    n_new = int(round(factor * len(X))) if kind is not None else 0
    if n_new == 0:
        return X[:0]
    if kind == "munge" and len(X) < 2:
        raise ValueError("augmentation='munge' needs at least 2 rows (a row and its neighbour).")
    if kind == "noise":
        rows = _noise(X, n_new, noise_scale, rng)
    elif kind == "mixup":
        rows = _mixup(X, n_new, rng)
    else:
        rows = _munge(X, n_new, rng)
    return rows.astype(X.dtype)


def most_disagreed(candidates, disagreement, n_keep, rng, top_fraction=0.75):
    """Keep ``n_keep`` candidate rows: mostly those where the members disagree most.

    ``top_fraction`` of them are the candidates of highest ``disagreement``
    (the teacher's epistemic uncertainty), the rest a random draw of the
    others, so the student also sees where the members agree.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._transfer import most_disagreed
    >>> rows = np.arange(10.0)[:, None]
    >>> kept = most_disagreed(rows, np.arange(10.0), 4, np.random.default_rng(0))
    >>> sorted(kept[:3, 0].tolist())
    [7.0, 8.0, 9.0]
    """
    n_keep = min(n_keep, len(candidates))
    n_top = int(round(top_fraction * n_keep))
    order = np.argsort(-np.nan_to_num(disagreement, nan=-np.inf), kind="stable")
    rest = rng.choice(order[n_top:], n_keep - n_top, replace=False)
    return candidates[np.concatenate([order[:n_top], rest])]


def augment(
    teacher,
    X_teacher,
    X_student,
    kind,
    factor,
    noise_scale,
    rng,
    n_jobs=None,
    cache=None,
    verbose=0,
):
    """The synthetic rows of the transfer set, per the ``augmentation`` parameter.

    ``kind="auto"`` decides by the teacher: no rows for a teacher that
    cannot label new rows (precomputed member predictions), ``"noise"``, except for tree
    ensembles on tables (2-D ``X`` of at least 2 rows), whose members agree on
    their training rows far more than on new ones. For those: rows in the data's
    neighbourhoods (MUNGE), where a new row from the data would fall, and the
    candidate rows around the data where the members disagree most. Small
    tables get more of them (up to 4 per row), large ones fewer (down to 1 per
    row): in all ``factor * n * clip(20_000 / n, 1, 4)``, half of each.

    Parameters
    ----------
    teacher : skhydra.ensembles.Teacher
    X_teacher : array-like or DataFrame
        The real rows as the members take them.
    X_student : ndarray of shape (n_samples, ...)
        The real rows as the student takes them.
    kind : {"auto", "noise", "mixup", "munge"} or None
    factor, noise_scale : float
        See :func:`synthetic_rows`.
    rng : numpy.random.Generator
    n_jobs, cache
        For the teacher's predictions of the candidate rows.
    verbose : int, default=0
        ``>= 1`` shows a bar of the candidate rows the teacher has scored.

    Returns
    -------
    ndarray of shape (n_new, ...)
        Synthetic rows in the student's input space.
    """
    if not teacher.labels_new_rows:
        if kind not in ("auto", None):
            raise ValueError(
                f"augmentation={kind!r} needs a teacher that labels new rows, but the "
                "teacher's predictions were computed beforehand for the transfer rows only; "
                "use augmentation=None (or 'auto', which adds no rows for such a teacher), or "
                "compute the members' predictions for synthetic rows too and pass them as rows."
            )
        return X_student[:0]
    if kind != "auto":
        return synthetic_rows(X_student, kind, factor, noise_scale, rng)
    if not teacher.tree_based or X_student.ndim != 2 or len(X_student) < 2:
        return synthetic_rows(X_student, "noise", factor, noise_scale, rng)
    n = len(X_student)
    n_new = int(round(factor * n * np.clip(TREE_SYNTHETIC_ROWS / n, 1.0, 4.0)))
    munged = synthetic_rows(X_student, "munge", n_new / 2 / n, noise_scale, rng)
    candidates = np.concatenate(
        [
            synthetic_rows(X_student, "noise", 1.5 * n_new / n, noise_scale, rng),
            synthetic_rows(X_student, "mixup", 1.5 * n_new / n, noise_scale, rng),
        ]
    )
    disagreement = _disagreement(teacher, like(candidates, X_teacher), n_jobs, cache, verbose)
    chosen = most_disagreed(candidates, disagreement, n_new - len(munged), rng)
    return np.concatenate([munged, chosen])


def _disagreement(teacher, rows, n_jobs, cache, verbose=0):
    """The teacher's epistemic uncertainty on ``rows``, chunk by chunk."""
    chunks = teacher.iter_predictions(rows, n_jobs=n_jobs, cache=cache)
    chunks = row_progress(chunks, rows.shape[0], "Teacher disagreement", verbose)
    return np.concatenate([teacher_uncertainty(teacher, p)[2] for _, _, p in chunks])


@dataclass(frozen=True, eq=False)
class TransferSet:
    """Transfer rows, as the student and as the teacher take them.

    Attributes
    ----------
    X : ndarray of shape (n_rows, ...), float32, or ConcatRows
        Student inputs: the real rows, then the synthetic ones (a
        :class:`~skhydra._rows.ConcatRows` when the real rows are on disk).
    teacher_parts : tuple
        The same rows as the teacher's members take them: the real rows (the
        user's container, after the teacher's preprocessing) and the
        synthetic rows (a DataFrame with the real rows' columns when those
        came as one).
    n_real : int
        Number of real rows (the first ``n_real`` of ``X``).
    weight : ndarray of shape (n_rows,), float32
        Loss weight per row: the sample weights, and their mean for
        synthetic rows.
    y : ndarray of shape (n_rows,) or None
        Observed targets of the real rows, NaN on synthetic rows.
    """

    X: np.ndarray
    teacher_parts: tuple
    n_real: int
    weight: np.ndarray
    y: np.ndarray = None

    def __len__(self):
        return len(self.X)


def like(rows, X_teacher):
    """Synthetic student ``rows`` in the container of the real rows the teacher takes.

    A DataFrame keeps its column names (members fitted on one see them).
    """
    if isinstance(X_teacher, pd.DataFrame):
        return pd.DataFrame(rows, columns=X_teacher.columns)
    return rows


def build_transfer_set(X_teacher, X_student, y, sample_weight, synthetic):
    """Assemble the transfer set from the real rows and the synthetic student rows.

    Parameters
    ----------
    X_teacher : array-like or DataFrame of shape (n_samples, n_features)
        The real rows as the members take them.
    X_student : ndarray of shape (n_samples, ...), float32, or OutOfCoreRows
        The real rows as the student takes them (rows on disk are not copied:
        the transfer set's ``X`` is then a :class:`~skhydra._rows.ConcatRows`).
    y : ndarray of shape (n_samples,) or None
    sample_weight : ndarray of shape (n_samples,) or None
    synthetic : ndarray of shape (n_new, ...), float32
        Synthetic rows in the student's input space (see :func:`synthetic_rows`).

    Returns
    -------
    TransferSet
    """
    n_real, n_new = len(X_student), len(synthetic)
    weight = np.ones(n_real) if sample_weight is None else np.asarray(sample_weight, float)
    synthetic_for_teacher = like(synthetic, X_teacher)
    if y is not None:
        y = np.concatenate([np.asarray(y, dtype=np.float64), np.full(n_new, np.nan)])
    if not isinstance(X_student, np.ndarray):  # rows on disk stay there
        X = ConcatRows(X_student, synthetic)
    else:
        X = np.concatenate([X_student, synthetic]) if n_new else X_student
    return TransferSet(
        X=X,
        teacher_parts=(X_teacher, synthetic_for_teacher),
        n_real=n_real,
        weight=np.concatenate([weight, np.full(n_new, weight.mean())]).astype(np.float32),
        y=y,
    )


def validation_rows(n_rows, fraction, rng):
    """Boolean mask of the rows held out for early stopping, or None when too few.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._transfer import validation_rows
    >>> int(validation_rows(100, 0.1, np.random.default_rng(0)).sum())
    10
    >>> validation_rows(10, 0.1, np.random.default_rng(0)) is None
    True
    """
    n_valid = int(np.floor(fraction * n_rows))
    if n_valid < 2 or n_rows - n_valid < 2:
        return None
    index = np.zeros(n_rows, dtype=bool)
    index[rng.choice(n_rows, size=n_valid, replace=False)] = True
    return index


def input_scaling(X, mode):
    """Location and scale of the student's input standardisation.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...)
        The real transfer rows.
    mode : {"auto", "feature", "channel", "global"} or None
        See the estimators' ``input_scaling``.

    Returns
    -------
    loc, scale : ndarray, float32
        Broadcastable against one input row; constant inputs get scale 1.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._transfer import input_scaling
    >>> loc, scale = input_scaling(np.array([[0.0, 5.0], [2.0, 5.0]]), "auto")
    >>> loc.tolist(), scale.tolist()
    ([1.0, 5.0], [1.0, 1.0])
    """
    if mode == "auto":
        mode = "feature" if X.ndim == 2 else "channel"
    if mode is None:
        return np.zeros((), np.float32), np.ones((), np.float32)
    if mode == "feature":
        axes = (0,)
    elif mode == "channel":
        axes = (0, *range(2, X.ndim))
    else:
        axes = tuple(range(X.ndim))
    # Missing values (NaN) are left out; a feature that is always missing gets 0 and 1.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        loc = np.nanmean(X, axis=axes, dtype=np.float64, keepdims=True)[0]
        scale = np.nanstd(X, axis=axes, dtype=np.float64, keepdims=True)[0]
    loc = np.nan_to_num(loc)
    scale[~(scale >= 1e-12)] = 1.0
    return loc.astype(np.float32), scale.astype(np.float32)
