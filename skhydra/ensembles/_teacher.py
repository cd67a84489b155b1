"""The resolved teacher: flat members, and their predictions chunk by chunk.

A :class:`Teacher` is complete when it is built (:func:`resolve_teacher`):
it knows its task, classes, member weights, preprocessing and whether its
members predict variances, and it is immutable. Its predictions come in
chunks of rows, optionally from several joblib workers over members (or,
under joblib's dask backend, from a Dask cluster's workers over blocks of rows
and members) and through a joblib cache, in the layout of
:func:`predict_members`.
"""

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.utils.validation import _num_samples

from ._dask import block_plan, dask_backend, even_groups, map_blocks

__all__ = ["CHUNK_ROWS", "Teacher"]

#: Rows per chunk when members predict; bounds the size of the temporaries.
CHUNK_ROWS = 8192


def _rows(X, start, stop):
    return X.iloc[start:stop] if hasattr(X, "iloc") else X[start:stop]


def _member_groups(n_members, n_jobs):
    return even_groups(n_members, min(n_members, effective_n_jobs(n_jobs)))


def _array_input(needs_array, X_chunk):
    # Forests and bagging take the array their members were fitted on: a
    # sparse matrix stays sparse (np.asarray would wrap it in an object array).
    return X_chunk if not needs_array or sp.issparse(X_chunk) else np.asarray(X_chunk)


def _join_groups(teacher, parts):
    """The predictions of consecutive groups of members, side by side."""
    if len(parts) == 1:
        return parts[0]
    if teacher.is_classifier:
        return np.concatenate(parts, axis=1)
    return tuple(np.concatenate(p, axis=1) for p in zip(*parts, strict=True))


def _predict_block(teacher, X_block, first, stop):
    """Members ``first:stop`` on one block of rows: a task on a Dask worker."""
    needs_array = any(m.as_array for m in teacher.members)
    return teacher._predict_group(first, stop, X_block, _array_input(needs_array, X_block))


@dataclass(frozen=True, eq=False)
class Teacher:
    """A resolved ensemble: flat members, weights, classes and preprocessing.

    Built by :func:`resolve_teacher`, complete and immutable; accepted
    wherever an ensemble is.

    Attributes
    ----------
    ensemble : object
        The fitted ensemble this teacher was resolved from (None for the
        preprocessing-only teacher of a student without its ensemble).
    members : tuple
        One adapter per member, in the ensemble's order.
    task : {"classifier", "regressor"}
        What the members predict.
    classes_ : ndarray of shape (n_classes,) or None
        The union of the members' classes (classification).
    weights : ndarray of shape (n_members,) or None
        Member weights normalised to sum to one (voting ensembles), or None
        for equal weights.
    has_variance : bool
        Whether every member predicts a variance (regression).
    allows_nan : bool
        Whether every member takes missing values (NaN) in its input (after
        ``preprocessor``).
    tree_based : bool
        Whether every member is a tree model (a tree, a forest, or a boosted
        tree ensemble), whose prediction is piecewise constant in the input.
    preprocessor : transformer or None
        Fitted steps in front of the members (a Pipeline teacher).
    n_features_in_ : int or None
        Number of features the members (after ``preprocessor``) expect, when known.
    labels_new_rows : bool
        Whether the teacher can predict rows it has not seen (synthetic rows,
        new data): False for precomputed member predictions, which exist for
        the rows they were computed on only.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import BaggingClassifier
    >>> from skhydra.ensembles import resolve_teacher
    >>> X, y = load_iris(return_X_y=True)
    >>> bag = BaggingClassifier(n_estimators=3, max_features=2, random_state=0).fit(X, y)
    >>> teacher = resolve_teacher(bag)
    >>> teacher.n_members, teacher.task, teacher.classes_.tolist()
    (3, 'classifier', [0, 1, 2])
    >>> teacher.predict_members(X[:4]).shape
    (4, 3, 3)
    """

    ensemble: object
    members: tuple
    task: str
    classes_: np.ndarray = None
    weights: np.ndarray = None
    has_variance: bool = False
    allows_nan: bool = False
    tree_based: bool = False
    preprocessor: object = None
    n_features_in_: int = None
    labels_new_rows: bool = True

    @property
    def is_classifier(self):
        """Whether the members are classifiers."""
        return self.task == "classifier"

    @property
    def n_members(self):
        """Number of members."""
        return len(self.members)

    def transform(self, X):
        """Apply the teacher's preprocessing (identity without one)."""
        return X if self.preprocessor is None else self.preprocessor.transform(X)

    def predict_members(self, X, *, n_jobs=None, cache=None):
        """Every member's prediction of rows already through :meth:`transform`.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Rows as the members take them.
        n_jobs : int, default=None
            Members predict in parallel over ``n_jobs`` joblib workers.
        cache : joblib.Memory, default=None
            Cache of the predictions, keyed by the teacher and ``X``.

        Returns
        -------
        probabilities : ndarray of shape (n_samples, n_members, n_classes)
            Classification, float32.
        (means, variances) : tuple of ndarray of shape (n_samples, n_members)
            Regression, float64; variances NaN for point members.
        """
        if cache is not None:
            return cache.cache(_predict_all, ignore=["n_jobs"])(self, X, n_jobs=n_jobs)
        return _predict_all(self, X, n_jobs=n_jobs)

    def iter_predictions(self, X, *, chunk_rows=CHUNK_ROWS, n_jobs=None, cache=None):
        """Every member's predictions, one chunk of rows at a time.

        At most one chunk of predictions is in memory at a time, except with
        ``cache``, which holds the predictions of ``X`` whole (memory-mapped
        when the cache reads them back from disk).

        Under joblib's dask backend (``joblib.parallel_config("dask")`` with a
        ``distributed`` client) and ``n_jobs != 1``, the members predict on
        the cluster's workers, by blocks of rows (about four per worker
        thread, at most ``chunk_rows`` rows each) and, when there are few
        blocks, by groups of members: chunks are then these blocks, in order.
        The teacher is sent to each worker once per call and each block to
        one worker; at most two tasks per worker thread are computed ahead
        of the caller.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Rows as the members take them, i.e. ``teacher.transform(rows)``.
        chunk_rows : int, default=8192
            Rows per chunk (at most, under joblib's dask backend).
        n_jobs : int, default=None
            Members predict in parallel over ``n_jobs`` joblib workers
            (threads, or the backend set with :func:`joblib.parallel_config`;
            a Dask cluster's workers over blocks of rows, see above).
        cache : joblib.Memory, default=None
            Cache of the predictions, keyed by the teacher and ``X``.

        Yields
        ------
        start, stop : int
            The chunk's rows, ``X[start:stop]``.
        predictions : ndarray or tuple of ndarray
            The chunk's predictions in the layout of :meth:`predict_members`.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.ensemble import RandomForestClassifier
        >>> from skhydra.ensembles import resolve_teacher
        >>> X, y = load_iris(return_X_y=True)
        >>> teacher = resolve_teacher(RandomForestClassifier(4, random_state=0).fit(X, y))
        >>> [(a, b, p.shape) for a, b, p in teacher.iter_predictions(X, chunk_rows=100)]
        [(0, 100, (100, 4, 3)), (100, 150, (50, 4, 3))]
        """
        if not isinstance(chunk_rows, Integral) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}.")
        n_rows = X.shape[0]
        if cache is not None:
            whole = self.predict_members(X, n_jobs=n_jobs, cache=cache)
            for start in range(0, n_rows, chunk_rows):
                stop = min(start + chunk_rows, n_rows)
                rows = slice(start, stop)
                yield start, stop, _map(lambda a, rows=rows: np.asarray(a[rows]), whole)
            return
        backend, n_threads = dask_backend(n_jobs)
        if backend is not None:
            blocks, groups = block_plan(n_rows, self.n_members, n_threads, chunk_rows)
            rows = ((start, stop, _rows(X, start, stop)) for start, stop in blocks)
            tasks = map_blocks(backend, _predict_block, self, rows, groups, 2 * n_threads)
            for start, stop, parts in tasks:
                yield start, stop, _join_groups(self, parts)
            return
        groups = _member_groups(self.n_members, n_jobs)
        parallel = Parallel(n_jobs=len(groups), prefer="threads") if len(groups) > 1 else None
        needs_array = any(m.as_array for m in self.members)
        for start in range(0, n_rows, chunk_rows):
            stop = min(start + chunk_rows, n_rows)
            X_chunk = _rows(X, start, stop)
            X_array = _array_input(needs_array, X_chunk)
            if parallel is None:
                yield start, stop, self._predict_group(0, self.n_members, X_chunk, X_array)
                continue
            parts = parallel(
                delayed(self._predict_group)(a, b, X_chunk, X_array) for a, b in groups
            )
            yield start, stop, _join_groups(self, parts)

    def _predict_group(self, first, stop, X, X_array):
        members = self.members[first:stop]
        if self.is_classifier:
            n_classes = len(self.classes_)
            probabilities = [m.probabilities(X, X_array, n_classes) for m in members]
            for j, p in enumerate(probabilities, start=first):
                _check_finite(p, j, "probabilities")
            return np.stack(probabilities, axis=1)
        means, variances = zip(*(m.gaussian(X, X_array) for m in members), strict=True)
        for j, (mean, variance) in enumerate(zip(means, variances, strict=True), start=first):
            _check_finite(mean, j, "means")
            # NaN variances are a point member's; infinite ones are an error.
            _check_finite(np.nan_to_num(variance, nan=0.0), j, "variances")
        return np.stack(means, axis=1), np.stack(variances, axis=1)


def _check_finite(values, member, what):
    if not np.isfinite(values).all():
        raise ValueError(
            f"Member {member} of the ensemble predicted NaN or infinite {what} for some "
            "rows; a teacher's predictions must be finite numbers."
        )


def _map(func, predictions):
    return tuple(map(func, predictions)) if isinstance(predictions, tuple) else func(predictions)


def _predict_all(teacher, X, n_jobs=None):
    """Every chunk of ``teacher.iter_predictions(X)`` gathered into whole arrays."""
    n = _num_samples(X)
    if teacher.is_classifier:
        out = np.empty((n, teacher.n_members, len(teacher.classes_)), np.float32)
    else:
        out = (np.empty((n, teacher.n_members)), np.empty((n, teacher.n_members)))
    for start, stop, chunk in teacher.iter_predictions(X, n_jobs=n_jobs):
        if teacher.is_classifier:
            out[start:stop] = chunk
        else:
            out[0][start:stop], out[1][start:stop] = chunk
    return out
