"""Row arrays that live in memory up to a budget and on disk beyond it.

A 200-member ensemble's class probabilities for a million rows and ten
classes take 8 GB. Fitting a student computes them in row chunks and keeps
the head targets made from them in a :class:`RowStore`: arrays stay in RAM
while the store's budget allows and go to a :class:`DiskArray`, a raw file in
a temporary folder, once it is spent. The folder is removed when the store is
closed (fit always closes it) or garbage collected.

A :class:`DiskArray` maps its file with :class:`numpy.memmap` for each read or
write and lets the map go right after: pages of a long-lived map count in the
process's resident memory as they are touched, so an epoch over one map would
bring the whole file into the resident set that the budget is meant to bound.
"""

import os
import re
import shutil
import tempfile
import weakref
from numbers import Integral

import numpy as np

__all__ = ["DiskArray", "RowArray", "RowStore", "parse_bytes"]

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


class RowArray:
    """What the row arrays of a fit share: ``shape`` and ``dtype`` attributes give
    ``len``, ``ndim`` and ``nbytes``."""

    def __len__(self):
        return self.shape[0]

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class DiskArray(RowArray):
    """An array in a raw file, read and written by rows through short-lived memmaps.

    Supports what fitting needs: ``len``, ``shape``, ``dtype``, ``nbytes``,
    reading rows (``a[rows]`` with a slice, an integer or boolean array,
    returning an in-memory array) and writing rows (``a[rows] = values``).

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
    >>> a = DiskArray(os.path.join(tempfile.mkdtemp(), "a.bin"), (4, 2), np.float32)
    >>> a[0:4] = np.arange(8, dtype=np.float32).reshape(4, 2)
    >>> a[np.array([1, 3])]
    array([[2., 3.],
           [6., 7.]], dtype=float32)
    """

    def __init__(self, path, shape, dtype):
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        with open(path, "wb") as f:
            f.truncate(self.nbytes)

    def _map(self, mode):
        if self.nbytes == 0:  # numpy cannot map an empty file
            return np.empty(self.shape, self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode=mode, shape=self.shape)

    def __getitem__(self, index):
        return np.array(self._map("r")[index])

    def __setitem__(self, index, value):
        mapped = self._map("r+")
        mapped[index] = value
        if isinstance(mapped, np.memmap):
            mapped.flush()

    def __getstate__(self):
        raise TypeError("A DiskArray is a temporary file of a fit and cannot be pickled.")


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
        self._finalizer = None

    def empty(self, shape, dtype):
        """An uninitialised array of ``shape``: an ndarray or a :class:`DiskArray`."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if self.budget is None or self.in_memory + nbytes <= self.budget:
            self.in_memory += nbytes
            return np.empty(shape, dtype)
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="skhydra-", dir=self.folder)
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self.on_disk += nbytes
        return DiskArray(os.path.join(self._dir, f"{len(os.listdir(self._dir))}.bin"), shape, dtype)

    def close(self):
        """Delete the temporary folder and everything in it."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
