"""Transfer sets larger than memory: tables on disk, read block by block.

``fit`` takes ``X`` as a :class:`numpy.memmap`, a zarr array or a Dask array
and never loads it whole. :class:`OutOfCoreRows` reads rows of such an array
on demand, as float32 ndarrays: blocks of consecutive rows for the teacher's
labels and the one pass of statistics (:meth:`OutOfCoreRows.scan`: the finite
check, the columns with missing values and the input standardisation), sorted
row numbers for the training batches. :class:`ConcatRows` puts the synthetic
rows (in memory) behind them, so the transfer set is indexed as one array.

A whole-file memmap is mapped again for each read and released right after,
as the fit's own disk arrays are (:class:`skhydra._storage.DiskArray`): pages
of a long-lived map count in the process's resident memory once touched, and
an epoch would touch them all.
"""

import mmap
from dataclasses import dataclass

import numpy as np

from ._storage import RowArray

__all__ = [
    "BLOCK_ROWS",
    "ConcatRows",
    "OutOfCoreRows",
    "RowStatistics",
    "check_block",
    "is_out_of_core",
]

#: Rows per block of a pass over an out-of-core array.
BLOCK_ROWS = 8192

#: Rows beyond which a read of scattered rows from a memmap maps one window of BLOCK_ROWS rows
#: at a time: the kernel maps the pages around each one read (fault-around), so one map read at
#: many scattered rows would bring most of the file into the resident set until it is released.
SCATTERED_READ_ROWS = 1024

#: Numbers per block of the statistics pass (its float64 temporaries stay a few MB); a table of
#: at most this many numbers is read as one block and scaled exactly as rows in memory are.
SCAN_NUMBERS = 2**18


def is_out_of_core(X):
    """Whether ``X`` is an array ``fit`` reads block by block: a memmap, a zarr or a Dask array.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._rows import is_out_of_core
    >>> is_out_of_core(np.zeros((2, 2)))
    False
    """
    if isinstance(X, (np.memmap, OutOfCoreRows)):
        return True
    package = type(X).__module__.partition(".")[0]
    return package in ("zarr", "dask") and hasattr(X, "shape") and hasattr(X, "dtype")


def check_block(block, start, allow_nan):
    """Refuse a block of rows read from disk with infinite values, or NaN unless ``allow_nan``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._rows import check_block
    >>> check_block(np.array([[0.0, np.nan]]), 0, allow_nan=True)
    >>> check_block(np.array([[0.0, np.inf]]), 8, allow_nan=True)
    Traceback (most recent call last):
    ...
    ValueError: Input X contains infinity (in the rows from row 8).
    """
    if np.isinf(block).any():
        raise ValueError(f"Input X contains infinity (in the rows from row {start}).")
    if not allow_nan and np.isnan(block).any():
        raise ValueError(
            f"Input X contains NaN (in the rows from row {start}); the ensemble does "
            "not take missing values."
        )


def _reopener(source):
    """A function mapping a whole-file memmap again, or None for other arrays."""
    if not (
        isinstance(source, np.memmap)
        and isinstance(source.base, mmap.mmap)
        and source.filename is not None
        and source.flags.c_contiguous
    ):
        return None
    filename, offset, shape, dtype = source.filename, source.offset, source.shape, source.dtype

    def reopen():
        return np.memmap(filename, dtype=dtype, mode="r", offset=offset, shape=shape)

    return reopen


@dataclass(frozen=True)
class RowStatistics:
    """What one pass over the rows found, per feature.

    Attributes
    ----------
    count : ndarray of shape (n_features,)
        Non-missing values.
    mean, m2 : ndarray of shape (n_features,)
        Mean and sum of squared deviations of the non-missing values (float64).
    missing : ndarray of int
        Features with at least one missing value (NaN).
    rows : ndarray or None
        All the rows, when they were read as one block: the scaling is then
        computed from them exactly as for rows in memory.
    """

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    missing: np.ndarray
    rows: np.ndarray = None

    def scaling(self, mode):
        """``loc, scale`` of the input standardisation, as :func:`skhydra._transfer.input_scaling`.

        Tables only: ``"auto"``, ``"feature"`` and ``"channel"`` standardise
        each feature, ``"global"`` all of them together, ``None`` none.
        """
        if self.rows is not None or mode is None:
            from ._transfer import input_scaling

            return input_scaling(self.rows, mode)
        count, mean, m2 = self.count, self.mean, self.m2
        if mode == "global":
            total = count.sum()
            pooled = (count * mean).sum() / total if total else 0.0
            m2 = np.atleast_1d((m2 + count * (mean - pooled) ** 2).sum())
            count, mean = np.atleast_1d(total), np.atleast_1d(pooled)
        with np.errstate(all="ignore"):
            scale = np.sqrt(m2 / count)
        loc = np.nan_to_num(np.where(count > 0, mean, 0.0))
        scale[~(scale >= 1e-12)] = 1.0
        return loc.astype(np.float32), scale.astype(np.float32)


class OutOfCoreRows(RowArray):
    """Rows of a memmap, zarr or Dask array, read on demand as in-memory arrays.

    Parameters
    ----------
    source : numpy.memmap, zarr.Array or dask.array.Array
        A table of shape (n_samples, n_features).
    dtype : numpy dtype, default=numpy.float32
        The dtype of the rows read.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skhydra._rows import OutOfCoreRows
    >>> path = os.path.join(tempfile.mkdtemp(), "X.npy")
    >>> np.save(path, np.arange(12.0).reshape(6, 2))
    >>> rows = OutOfCoreRows(np.load(path, mmap_mode="r"))
    >>> rows.shape, rows[np.array([1, 4])].tolist()
    ((6, 2), [[2.0, 3.0], [8.0, 9.0]])
    >>> rows.scan(allow_nan=False).mean.tolist()
    [5.0, 6.0]
    """

    def __init__(self, source, dtype=np.float32):
        self.source = source
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in source.shape)
        self.statistics = None
        self._reopen = _reopener(source)

    def __getitem__(self, index):
        """Rows ``index`` (a slice, an int, or an array of row numbers or a mask) in memory."""
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool:
                index = np.flatnonzero(index)
            if len(index) and index[-1] - index[0] + 1 == len(index) and index.ndim == 1:
                if (np.diff(index) == 1).all():  # consecutive rows: one contiguous read
                    index = slice(int(index[0]), int(index[-1]) + 1)
        if (
            self._reopen is not None
            and not isinstance(index, slice)
            and index.ndim == 1
            and len(index) > SCATTERED_READ_ROWS
        ):
            return self._read_by_window(index)
        return self._read(index)

    def _read_by_window(self, index):
        """Rows ``index`` read window by window of the file, each through a map of its own."""
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        bounds = np.flatnonzero(np.diff(ordered // BLOCK_ROWS)) + 1
        for part in np.split(np.arange(len(index)), bounds):
            out[order[part]] = self._read(ordered[part])
        return out

    def _read(self, index):
        source = self.source if self._reopen is None else self._reopen()
        if isinstance(index, slice) or not hasattr(source, "oindex"):
            block = source[index]
        else:  # zarr: a list of rows is an orthogonal selection
            block = source.oindex[index]
        if hasattr(block, "compute"):  # Dask
            block = block.compute()
        if isinstance(block, np.ndarray) and block.flags.owndata and block.dtype == self.dtype:
            return block.view(np.ndarray)  # already a copy in memory
        return np.array(block, dtype=self.dtype)  # never a view of the map

    def blocks(self, block_rows=BLOCK_ROWS):
        """Consecutive row blocks ``(start, stop, rows)`` covering every row."""
        for start in range(0, len(self), block_rows):
            stop = min(start + block_rows, len(self))
            yield start, stop, self[start:stop]

    def sample(self, n_rows, rng):
        """All rows in order when there are at most ``n_rows``, else a random sorted sample."""
        if len(self) <= n_rows:
            return self[0 : len(self)]
        return self[np.sort(rng.choice(len(self), n_rows, replace=False))]

    def scan(self, allow_nan):
        """One pass over the rows: check them and keep their :class:`RowStatistics`.

        Raises a ValueError on infinite values, and on missing ones (NaN)
        unless ``allow_nan``.
        """
        if self.ndim != 2:
            raise ValueError(
                f"X read from disk (a memmap, zarr or Dask array) must be a table of shape "
                f"(n_samples, n_features); got shape {self.shape}."
            )
        if len(self) == 0:
            raise ValueError("X is empty: fit needs at least one row.")
        n_features = self.shape[1]
        count, mean, m2 = np.zeros(n_features), np.zeros(n_features), np.zeros(n_features)
        block_rows = max(1, SCAN_NUMBERS // max(n_features, 1))
        for start, _, block in self.blocks(block_rows):
            check_block(block, start, allow_nan)
            present = ~np.isnan(block)
            n_block = present.sum(axis=0).astype(np.float64)
            values = np.where(present, block, 0.0).astype(np.float64)
            with np.errstate(all="ignore"):
                mean_block = np.where(n_block > 0, values.sum(axis=0) / n_block, 0.0)
            m2_block = (np.where(present, values - mean_block, 0.0) ** 2).sum(axis=0)
            total = count + n_block
            delta = mean_block - mean
            with np.errstate(all="ignore"):
                mean = np.where(total > 0, mean + delta * n_block / total, 0.0)
                m2 = m2 + m2_block + np.where(total > 0, delta**2 * count * n_block / total, 0.0)
            count = total
        missing = np.flatnonzero(count < len(self))
        whole = block if len(self) <= block_rows else None
        self.statistics = RowStatistics(count, mean, m2, missing, whole)
        return self.statistics


class ConcatRows(RowArray):
    """Out-of-core rows followed by in-memory ones, indexed as one array.

    Parameters
    ----------
    first : OutOfCoreRows
    second : ndarray
        Rows of the same trailing shape (the synthetic rows).

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._rows import ConcatRows, OutOfCoreRows
    >>> rows = ConcatRows(OutOfCoreRows(np.zeros((3, 2))), np.ones((2, 2), np.float32))
    >>> rows.shape, rows[np.array([2, 3])].tolist()
    ((5, 2), [[0.0, 0.0], [1.0, 1.0]])
    """

    def __init__(self, first, second):
        self.first = first
        self.second = second
        self.dtype = first.dtype
        self.shape = (len(first) + len(second), *first.shape[1:])

    def __getitem__(self, index):
        n_first = len(self.first)
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if index.ndim == 0:
            return self[index[None]][0]
        in_first = index < n_first
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        if in_first.any():
            out[in_first] = self.first[index[in_first]]
        if not in_first.all():
            out[~in_first] = self.second[index[~in_first] - n_first]
        return out
