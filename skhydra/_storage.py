"""Row arrays that live in memory up to a budget and on disk beyond it.

A 200-member ensemble's class probabilities for a million rows and ten
classes take 8 GB. Fitting a student computes them in row chunks and keeps
them, and the head targets made from them, in a :class:`RowStore`: arrays
fit in RAM while the store's budget allows and go to a :class:`DiskArray`,
a raw file in a temporary folder, once it is spent. The folder is removed
when the store is closed (fit always closes it) or garbage collected.

A ``DiskArray`` reads and writes with ``pread``/``pwrite`` rather than
``numpy.memmap``: pages of a mapped file count in the process's resident
memory as they are touched, so an epoch over a memmap would bring the whole
file into the resident set that the budget is meant to bound.
"""

import os
import re
import shutil
import tempfile
import weakref
from numbers import Integral

import numpy as np

__all__ = ["DiskArray", "RowStore", "parse_bytes"]

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def parse_bytes(value, name="memory_budget"):
    """A byte count from an int or a string such as ``"2GB"`` or ``"512 MiB"``.

    Parameters
    ----------
    value : int, str or None
        Bytes, a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB),
        or None (no limit).
    name : str
        Parameter name for the error message.

    Returns
    -------
    int or None

    Examples
    --------
    >>> from skhydra._storage import parse_bytes
    >>> parse_bytes("1.5GB")
    1500000000
    >>> parse_bytes("512 MiB")
    536870912
    """
    if value is None:
        return None
    if isinstance(value, Integral) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}.")
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if match and match.group(2).upper() in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    raise ValueError(
        f"{name} must be a number of bytes, a string such as '2GB' or '512MiB', or None; "
        f"got {value!r}."
    )


class DiskArray:
    """A C-ordered array in a raw file, read and written by rows.

    Supports what the fit needs: ``len``, ``shape``, ``dtype``, ``nbytes``,
    reading rows with a slice or a sorted integer array (``a[rows]``, a new
    in-memory array) and writing a contiguous block (``a[start:stop] = v``).

    Parameters
    ----------
    path : str
        File to create; it is overwritten.
    shape : tuple of int
        Shape of the array; rows are the first axis.
    dtype : numpy dtype

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skhydra._storage import DiskArray
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> a = DiskArray(path, (4, 2), np.float32)
    >>> a[0:4] = np.arange(8, dtype=np.float32).reshape(4, 2)
    >>> a[np.array([1, 3])]
    array([[2., 3.],
           [6., 7.]], dtype=float32)
    >>> a.close()
    """

    def __init__(self, path, shape, dtype):
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._row_shape = self.shape[1:]
        self._row_bytes = int(np.prod(self._row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, self._row_bytes * self.shape[0])

    def __len__(self):
        return self.shape[0]

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return self._row_bytes * self.shape[0]

    def _rows(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self.shape[0])
            if step != 1:
                raise IndexError("DiskArray supports only contiguous slices.")
            return start, max(stop, start)
        raise TypeError(f"DiskArray rows are written with a slice, got {type(index).__name__}.")

    def __getitem__(self, index):
        if not isinstance(index, slice):
            rows = np.asarray(index)
            if rows.dtype == bool:
                rows = np.flatnonzero(rows)
            return self._gather(rows.astype(np.int64, copy=False))
        start, stop = self._rows(index)
        out = np.empty((stop - start, *self._row_shape), self.dtype)
        self._read_into(out, start)
        return out

    def __setitem__(self, index, value):
        start, stop = self._rows(index)
        value = np.ascontiguousarray(np.broadcast_to(value, (stop - start, *self._row_shape)))
        value = value.astype(self.dtype, copy=False)
        if value.size == 0:
            return
        view = memoryview(value).cast("B")
        offset, done = start * self._row_bytes, 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)

    def _read_into(self, out, start):
        if out.size == 0:
            return
        view = memoryview(out).cast("B")
        offset, done = start * self._row_bytes, 0
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got == 0:
                raise OSError(f"Unexpected end of file in {self.path}.")
            done += got

    def _gather(self, rows):
        out = np.empty((len(rows), *self._row_shape), self.dtype)
        if len(rows) == 0:
            return out
        if np.any(rows < 0) or rows.max() >= self.shape[0]:
            raise IndexError(f"Row index out of range for {self.shape[0]} rows.")
        # One read per run of consecutive rows.
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [len(rows)]])
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            self._read_into(out[a:b], int(rows[a]))
        return out

    def close(self):
        """Close the file descriptor (the file itself is left in place)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __getstate__(self):
        raise TypeError("A DiskArray is a temporary file of a fit and cannot be pickled.")


def _remove(folder, arrays):
    for array in arrays:
        array.close()
    shutil.rmtree(folder, ignore_errors=True)


class RowStore:
    """Allocate row arrays in RAM while a budget allows, on disk beyond it.

    Parameters
    ----------
    budget : int or None
        Bytes of arrays this store may hold in memory; None means no limit.
    folder : str, default=None
        Where the temporary folder is created; None uses ``tempfile``'s
        default (``$TMPDIR``).

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._storage import RowStore
    >>> with RowStore(budget=1000) as store:
    ...     small = store.empty((10, 5), np.float32)   # 200 bytes: RAM
    ...     large = store.empty((1000, 5), np.float32)  # 20 kB: disk
    ...     type(small).__name__, type(large).__name__
    ('ndarray', 'DiskArray')
    """

    def __init__(self, budget, folder=None):
        self.budget = budget
        self.folder = folder
        self.in_memory = 0
        self.on_disk = 0
        self._dir = None
        self._arrays = []
        self._finalizer = None

    def empty(self, shape, dtype):
        """An uninitialised array of ``shape``: an ndarray or a :class:`DiskArray`."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if self.budget is None or self.in_memory + nbytes <= self.budget:
            self.in_memory += nbytes
            return np.empty(shape, dtype)
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="skhydra-", dir=self.folder)
            self._finalizer = weakref.finalize(self, _remove, self._dir, self._arrays)
        array = DiskArray(os.path.join(self._dir, f"{len(self._arrays)}.bin"), shape, dtype)
        self._arrays.append(array)
        self.on_disk += nbytes
        return array

    def release(self, array):
        """Give back an array: its memory is counted free again, its file deleted."""
        if isinstance(array, DiskArray):
            array.close()
            if os.path.exists(array.path):
                os.remove(array.path)
        elif isinstance(array, np.ndarray):
            self.in_memory -= array.nbytes

    def close(self):
        """Delete the temporary folder and everything in it."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
