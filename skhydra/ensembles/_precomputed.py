"""Precomputed member predictions: a teacher from arrays computed elsewhere.

:class:`MemberPredictions` wraps every member's prediction of the transfer
rows, computed by another job (Spark, Dask, a cache on disk) and stored in any
array with ``shape``, ``dtype`` and row slicing: a NumPy array or
:class:`numpy.memmap`, a zarr or Dask array, an h5py dataset. Its teacher,
:class:`PrecomputedTeacher`, reads the array one chunk of rows at a time,
checks each chunk as a live teacher checks its members' predictions, and can
label only the rows the predictions were computed on.
"""

from dataclasses import dataclass
from numbers import Integral

import joblib
import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import _num_samples

from ._teacher import CHUNK_ROWS, Teacher, _predict_all

__all__ = ["MemberPredictions", "PrecomputedMember", "PrecomputedTeacher", "precomputed_teacher"]

#: How far a member's probabilities for a row may sum from 1.
SUM_TOLERANCE = 1e-3

#: Rows of X (evenly spaced) whose hash tells the rows the predictions belong to.
FINGERPRINT_ROWS = 32

_ONLY_THEIR_ROWS = "precomputed member predictions can only label the rows they were computed on"


def _array_like(values, name):
    """``values`` as they are when they slice like an array, else as a NumPy array."""
    if not all(hasattr(values, a) for a in ("shape", "dtype", "__getitem__")):
        values = np.asarray(values)
    kind = np.dtype(values.dtype).kind
    if kind not in "iuf":
        raise TypeError(
            f"{name} must hold numbers, but its dtype is {values.dtype}; store the "
            "member predictions as floats."
        )
    return values


def _check_classes(classes, n_columns):
    classes = np.asarray(classes)
    if classes.ndim != 1 or len(classes) != n_columns:
        raise ValueError(
            f"classes must list the label of each of the {n_columns} probability columns "
            f"(predictions[:, :, k] is the probability of classes[k]), got {len(classes)} "
            f"label{'s' if len(classes) != 1 else ''}: {classes.tolist()}."
        )
    try:
        unique = np.unique(classes)
    except TypeError as exc:
        raise ValueError(
            f"classes mixes label types and cannot be sorted ({exc}); use one kind of label."
        ) from exc
    if len(unique) != len(classes):
        raise ValueError(f"classes has repeated labels: {classes.tolist()}.")
    return classes


def _check_weights(weights, n_members):
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_members,):
        raise ValueError(
            f"weights must hold one weight per member, shape ({n_members},), got shape "
            f"{weights.shape}."
        )
    if not np.isfinite(weights).all() or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(
            f"weights must be finite, non-negative and not all zero, got {weights.tolist()}."
        )
    return weights / weights.sum()


class MemberPredictions:
    """Every member's predictions of the transfer rows, computed elsewhere.

    Pass it as the ``ensemble`` of a Hydra estimator to distil an ensemble
    whose predictions were computed by another job (a Spark or Dask job, a
    cache on disk), where the ensemble itself is out of reach or too slow to
    run again. Row ``i`` of the predictions belongs to row ``i`` of the ``X``
    given to ``fit``, which checks that ``X`` has as many rows. The student
    then predicts exactly like one fitted with the live ensemble (same
    settings, same ``random_state``), provided the predictions are those the
    live ensemble gives in ``fit``, whose members see ``X`` as float32 (trees
    convert it so anyway).

    The arrays are never loaded whole: the teacher reads them one chunk of
    rows at a time (slices ``predictions[start:stop]``), so a
    :class:`numpy.memmap`, a zarr array, a Dask array or an h5py dataset
    larger than memory works. Their values are checked as each chunk is read,
    as a live teacher's are: finite numbers; probabilities that are
    non-negative and sum to 1 (within 1e-3) for each member and row;
    non-negative variances.

    These predictions exist for their rows only, so they cannot label
    synthetic rows: ``augmentation="auto"`` adds none, and an explicit kind
    of augmentation is an error (the student then fits as with
    ``augmentation=None``). For the same reason a search or cross-validation
    over the student (which fits on subsets of the rows) needs a live
    ensemble. A fitted student holds this object as ``ensemble_``, so
    pickling the student pickles the arrays (a memmap in full); serve
    ``student.without_teacher()`` or save it with :func:`skhydra.dump`.

    Parameters
    ----------
    predictions : array-like of shape (n_rows, n_members, n_classes) or (n_rows, n_members)
        Classification: every member's class probabilities, float, the
        columns in the order of ``classes``. Regression: every member's
        predicted mean, of shape (n_rows, n_members) or (n_rows, n_members, 1).
        Any object with ``shape``, ``dtype`` and row slicing is used as it
        is; other array-likes (lists) are converted with :func:`numpy.asarray`.
    classes : array-like of shape (n_classes,), default=None
        Required for classification: the label of each probability column.
        They need not be sorted; the teacher's ``classes_`` are (the columns
        are reordered as they are read). None means regression.
    variances : array-like of the shape of ``predictions``, default=None
        Regression: every member's predicted variance (not the standard
        deviation), for members that are Gaussian; finite and non-negative.
        None: the members predict a point only (their variances are NaN, as
        for a live ensemble of point regressors).
    weights : array-like of shape (n_members,), default=None
        Member weights, as a voting ensemble's (normalised to sum to one).
        None: equal weights.
    tree_based : bool, default=False
        Whether the members are tree models (a forest's trees). A student
        with ``head_matching="auto"`` then matches heads to members by rank,
        as it does for a live forest.
    allow_nan : bool, default=False
        Whether the members took missing values (NaN) in ``X``: the student
        then accepts NaN in ``X`` and learns fills for them, as it does for a
        live teacher that takes NaN.

    Attributes
    ----------
    task : {"classifier", "regressor"}
        Classification when ``classes`` is given.
    n_rows : int
        Number of rows the predictions were computed on.
    n_members : int
        Number of members.

    See Also
    --------
    skhydra.ensembles.predict_members : Member predictions of a live ensemble,
        in the layout this class takes.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra import HydraDistilledClassifier
    >>> from skhydra.ensembles import MemberPredictions, predict_members
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)

    Computed elsewhere and stored, e.g. ``np.save("members.npy", ...)`` and
    read back with ``np.load("members.npy", mmap_mode="r")``, or a zarr or
    Dask array:

    >>> stored = predict_members(forest, X)
    >>> stored.shape
    (150, 5, 3)
    >>> labels = MemberPredictions(stored, classes=forest.classes_, tree_based=True)
    >>> labels
    MemberPredictions(n_rows=150, n_members=5, classes=[0, 1, 2])
    >>> # Stored predictions have no trees to read splits or bootstrap samples from:
    >>> # the live student compared with them goes without both.
    >>> settings = dict(augmentation=None, body_layer_sizes=(16,), max_epochs=6,
    ...                 phase1_epochs=3, random_state=0, feature_encoding=None,
    ...                 out_of_bag=False)
    >>> hydra = HydraDistilledClassifier(labels, **settings).fit(X)
    >>> live = HydraDistilledClassifier(forest, **settings).fit(X)
    >>> bool((hydra.predict_proba(X) == live.predict_proba(X)).all())
    True
    """

    def __init__(
        self,
        predictions,
        *,
        classes=None,
        variances=None,
        weights=None,
        tree_based=False,
        allow_nan=False,
    ):
        predictions = _array_like(predictions, "predictions")
        shape = tuple(predictions.shape)
        if len(shape) not in (2, 3) or 0 in shape:
            raise ValueError(
                "predictions must have shape (n_rows, n_members, n_classes) for "
                "classification or (n_rows, n_members) for regression, with at least one "
                f"row and one member; got shape {shape}."
            )
        if classes is not None:
            if len(shape) != 3:
                raise ValueError(
                    f"predictions of shape {shape} hold one number per row and member, but "
                    "classes were given: classification needs every member's probabilities, "
                    "shape (n_rows, n_members, n_classes)."
                )
            classes = _check_classes(classes, shape[2])
            if variances is not None:
                raise ValueError("variances are for regression; classification takes none.")
        elif len(shape) == 3 and shape[2] != 1:
            raise ValueError(
                f"predictions of shape {shape} hold {shape[2]} numbers per row and member "
                "but no classes were given. For classification pass classes= (the label "
                "of each probability column); for regression pass the members' means, of "
                "shape (n_rows, n_members) or (n_rows, n_members, 1)."
            )
        if variances is not None:
            variances = _array_like(variances, "variances")
            if tuple(variances.shape) != shape:
                raise ValueError(
                    f"variances must have the shape of predictions {shape}, got "
                    f"{tuple(variances.shape)}."
                )
        self.predictions = predictions
        self.classes = classes
        self.variances = variances
        self.weights = _check_weights(weights, shape[1])
        self.tree_based = bool(tree_based)
        self.allow_nan = bool(allow_nan)

    @property
    def task(self):
        """``"classifier"`` when the predictions have classes, else ``"regressor"``."""
        return "regressor" if self.classes is None else "classifier"

    @property
    def n_rows(self):
        """Number of rows the predictions were computed on."""
        return int(self.predictions.shape[0])

    @property
    def n_members(self):
        """Number of members."""
        return int(self.predictions.shape[1])

    def __repr__(self):
        shown = f"n_rows={self.n_rows}, n_members={self.n_members}"
        if self.classes is not None:
            labels = self.classes.tolist()
            listed = ", ".join(map(repr, labels[:10])) + (", ..." if len(labels) > 10 else "")
            shown += f", classes=[{listed}]"
        elif self.variances is not None:
            shown += ", variances=..."
        return f"{type(self).__name__}({shown})"


def _row(X, i):
    row = X.iloc[i : i + 1] if hasattr(X, "iloc") else X[i : i + 1]
    return np.asarray(row.toarray() if sp.issparse(row) else row)


def _fingerprint(X):
    """Hash of the row count and of evenly spaced rows of ``X``: which rows these are.

    The rows are read one slice each, which any container of rows takes (an
    array, a DataFrame, a sparse matrix, a list, rows on disk).
    """
    n_rows = _num_samples(X)
    index = np.unique(np.linspace(0, n_rows - 1, num=min(n_rows, FINGERPRINT_ROWS)).round())
    rows = np.concatenate([_row(X, int(i)) for i in index])
    if rows.dtype.kind in "biuf":
        # A DataFrame and its array, and X and its float32 copy (the student's), match.
        rows = rows.astype(np.float32)
    return joblib.hash((n_rows, rows))


def _check_row_count(n_rows, source):
    if n_rows != source.n_rows:
        raise ValueError(
            f"{_ONLY_THEIR_ROWS}: they hold {source.n_rows} rows, but X has {n_rows}. Row i "
            "of the predictions belongs to row i of the X they were computed on: pass that "
            "X, in the same order (and augmentation=None to a Hydra estimator: synthetic "
            "rows have no predictions), or pass the live ensemble to label other rows."
        )


@dataclass(frozen=True, eq=False)
class PrecomputedMember:
    """Member ``index`` of precomputed predictions ``source``.

    ``rows`` is the fingerprint of the rows the predictions were matched with
    (the ``X`` given when the teacher was resolved), or None when unknown.
    """

    source: MemberPredictions
    index: int
    rows: str = None


def _first_bad(mask, start):
    """(row, member) of the first True of an (n, n_members) mask, the row counted from 0."""
    row, member = np.argwhere(mask)[0]
    return start + int(row), int(member)


def _read(values, start, stop, dtype, shape):
    chunk = np.array(values[start:stop], dtype=dtype, copy=True)
    if chunk.shape[0] != stop - start:
        raise ValueError(
            f"Reading rows {start}:{stop} of the precomputed predictions gave "
            f"{chunk.shape[0]} rows; the array must slice like a NumPy array."
        )
    return chunk.reshape(shape)


def _read_probabilities(source, start, stop, order):
    n_rows, n_members, n_classes = stop - start, source.n_members, len(source.classes)
    p = _read(source.predictions, start, stop, np.float32, (n_rows, n_members, n_classes))
    if order is not None:
        p = np.ascontiguousarray(p[:, :, order])
    bad = ~np.isfinite(p).all(axis=2)
    if bad.any():
        row, member = _first_bad(bad, start)
        raise ValueError(
            f"Member {member}'s precomputed probabilities for row {row} are NaN or "
            "infinite; a teacher's predictions must be finite numbers."
        )
    bad = (p < 0).any(axis=2)
    if bad.any():
        row, member = _first_bad(bad, start)
        raise ValueError(
            f"Member {member}'s precomputed probabilities for row {row} include a negative "
            f"value ({p[row - start, member].min():.4g}); pass probabilities, not logits."
        )
    sums = p.sum(axis=2, dtype=np.float64)
    bad = np.abs(sums - 1.0) > SUM_TOLERANCE
    if bad.any():
        row, member = _first_bad(bad, start)
        raise ValueError(
            f"Member {member}'s precomputed probabilities for row {row} sum to "
            f"{sums[row - start, member]:.6g}, not 1 (within {SUM_TOLERANCE:g}); pass "
            "each member's class probabilities (e.g. the softmax of its logits), every "
            "class a column."
        )
    return p


def _read_gaussian(source, start, stop):
    shape = (stop - start, source.n_members)
    means = _read(source.predictions, start, stop, np.float64, shape)
    bad = ~np.isfinite(means)
    if bad.any():
        row, member = _first_bad(bad, start)
        raise ValueError(
            f"Member {member}'s precomputed mean for row {row} is NaN or infinite; a "
            "teacher's predictions must be finite numbers."
        )
    if source.variances is None:
        return means, np.full(shape, np.nan)
    variances = _read(source.variances, start, stop, np.float64, shape)
    bad = ~(np.isfinite(variances) & (variances >= 0))
    if bad.any():
        row, member = _first_bad(bad, start)
        raise ValueError(
            f"Member {member}'s precomputed variance for row {row} is "
            f"{variances[row - start, member]}; variances must be finite and non-negative "
            "(pass variances=None for members that predict a point only)."
        )
    return means, variances


@dataclass(frozen=True, eq=False)
class PrecomputedTeacher(Teacher):
    """The teacher of :class:`MemberPredictions`: their rows, read chunk by chunk.

    Built by :func:`~skhydra.ensembles.resolve_teacher`. Its predictions are
    those stored, in the layout of a live :class:`Teacher` and checked as its
    are; it labels only the rows they were computed on (``labels_new_rows``
    is False), and raises a ValueError for any other rows.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra.ensembles import MemberPredictions, resolve_teacher
    >>> means = np.arange(12.0).reshape(4, 3)
    >>> teacher = resolve_teacher(MemberPredictions(means))
    >>> X = np.zeros((4, 2))
    >>> [(a, b, m.shape) for a, b, (m, v) in teacher.iter_predictions(X, chunk_rows=3)]
    [(0, 3, (3, 3)), (3, 4, (1, 3))]
    >>> teacher.labels_new_rows
    False
    """

    def _source(self):
        if not self.members:
            raise ValueError(
                "This teacher holds no predictions (its student was stripped of its teacher)."
            )
        return self.members[0].source

    def _check_rows(self, X):
        source = self._source()
        n_rows = _num_samples(X)
        if n_rows == 0:
            return 0
        _check_row_count(n_rows, source)
        known = self.members[0].rows
        if known is not None and _fingerprint(X) != known:
            raise ValueError(
                f"{_ONLY_THEIR_ROWS}: these {n_rows} rows are not the X they were matched "
                "with (the rows differ, e.g. synthetic rows or another data set with as "
                "many rows). Pass that X, in the same order, or the live ensemble."
            )
        return n_rows

    def predict_members(self, X, *, n_jobs=None, cache=None):
        """The stored predictions of every row of ``X``, checked.

        ``X`` must be the rows the predictions were computed on; ``n_jobs``
        and ``cache`` are accepted for the live teacher's signature and unused
        (the predictions are stored already).

        Returns
        -------
        probabilities : ndarray of shape (n_samples, n_members, n_classes)
            Classification, float32, columns in the order of ``classes_``.
        (means, variances) : tuple of ndarray of shape (n_samples, n_members)
            Regression, float64; variances NaN for point members.
        """
        return _predict_all(self, X)

    def iter_predictions(self, X, *, chunk_rows=CHUNK_ROWS, n_jobs=None, cache=None):
        """The stored predictions of ``X``'s rows, one checked chunk at a time.

        Only one chunk of the stored arrays is read into memory at a time
        (slices of at most ``chunk_rows`` rows).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The rows the predictions were computed on (only their number and
            a few of them are looked at); zero rows give no chunks.
        chunk_rows : int, default=8192
            Rows per chunk.
        n_jobs, cache
            Unused: the predictions are stored already.

        Yields
        ------
        start, stop : int
            The chunk's rows.
        predictions : ndarray or tuple of ndarray
            The chunk's predictions in the layout of :meth:`predict_members`.

        Raises
        ------
        ValueError
            ``X`` is not the rows the predictions were computed on, or a
            chunk holds non-finite values, probabilities that do not sum to 1
            or negative variances (the message names the member and the row).
        """
        if not isinstance(chunk_rows, Integral) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}.")
        n_rows = self._check_rows(X)
        return self._chunks(n_rows, int(chunk_rows))

    def _chunks(self, n_rows, chunk_rows):
        source = self._source()
        order = None
        if self.is_classifier:
            order = np.argsort(source.classes, kind="stable")
            if np.array_equal(order, np.arange(len(order))):
                order = None
        for start in range(0, n_rows, chunk_rows):
            stop = min(start + chunk_rows, n_rows)
            if self.is_classifier:
                yield start, stop, _read_probabilities(source, start, stop, order)
            else:
                yield start, stop, _read_gaussian(source, start, stop)


def precomputed_teacher(source, *, task=None, X=None):
    """The :class:`PrecomputedTeacher` of ``source``, for the rows ``X`` when given.

    Parameters
    ----------
    source : MemberPredictions
    task : {"classifier", "regressor"}, default=None
        The expected task, checked.
    X : array-like of shape (n_samples, n_features), default=None
        The rows the predictions were computed on: checked to have
        ``source.n_rows`` rows, and remembered (a hash of a few rows) so that
        the teacher refuses other rows of the same number.

    Returns
    -------
    PrecomputedTeacher
    """
    if task is not None and task != source.task:
        if task == "classifier":
            raise ValueError(
                "A classifier needs every member's class probabilities, but these "
                "MemberPredictions have no classes (they hold a regressor's predictions); "
                "pass classes= (the label of each probability column), or use "
                "HydraDistilledRegressor."
            )
        raise ValueError(
            "A regressor needs every member's predicted mean, but these MemberPredictions "
            "have classes (they hold class probabilities); use HydraDistilledClassifier."
        )
    rows = None
    if X is not None:
        _check_row_count(_num_samples(X), source)
        rows = _fingerprint(X)
    return PrecomputedTeacher(
        source,
        tuple(PrecomputedMember(source, j, rows) for j in range(source.n_members)),
        source.task,
        classes_=None if source.classes is None else np.sort(source.classes, kind="stable"),
        weights=source.weights,
        has_variance=source.variances is not None,
        allows_nan=source.allow_nan,
        tree_based=source.tree_based,
        labels_new_rows=False,
    )
