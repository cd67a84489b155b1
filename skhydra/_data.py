"""The transfer set as a torch dataset, and the loaders that batch it.

A :class:`TransferDataset` holds the student's inputs and the head targets
(in-memory arrays, :class:`~skhydra._storage.DiskArray` files, or tensors
already on a GPU) and selects its rows through an index, so train and
validation rows are never copied out. It implements ``__getitems__``: a
standard :class:`~torch.utils.data.DataLoader` with a
:class:`~torch.utils.data.BatchSampler` fetches a whole batch with one
indexing call per array instead of one call per row.
"""

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    default_collate,
    default_convert,
)

__all__ = ["TransferDataset", "batch_loader"]

#: Rows per host-to-device copy when a dataset is moved to a GPU.
_BLOCK_ROWS = 65536


def _map_targets(func, targets):
    return {key: func(value) for key, value in targets.items()}


class TransferDataset(Dataset):
    """Rows of the student's inputs and of a dict of per-row targets.

    Parameters
    ----------
    X : ndarray or torch.Tensor of shape (n_samples, ...)
        Student inputs, float32.
    targets : dict of array-like
        Per-row targets of shape (n_samples, ...) (ndarrays, disk-backed
        arrays, or tensors).
    rows : ndarray of int, default=None
        Sorted row numbers this dataset holds; None holds every row.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._data import TransferDataset
    >>> X = np.zeros((5, 2), np.float32)
    >>> ds = TransferDataset(X, {"t": np.arange(5.0)}, rows=np.array([1, 3]))
    >>> X, targets = ds.__getitems__([1, 0])
    >>> len(ds), X.shape, targets["t"]
    (2, (2, 2), array([1., 3.]))
    """

    def __init__(self, X, targets, rows=None):
        self.X = X
        self.targets = targets
        self.rows = rows

    def __len__(self):
        return len(self.X) if self.rows is None else len(self.rows)

    def __getitem__(self, i):
        X, targets = self.__getitems__([i])
        return X[0], _map_targets(lambda v: v[0], targets)

    def __getitems__(self, indices):
        """Inputs and targets of positions ``indices``, read in row order.

        Disk-backed targets are read fastest in file order, and a training
        batch's loss does not depend on the order of its rows.
        """
        index = np.sort(np.asarray(indices, dtype=np.int64))
        rows = index if self.rows is None else self.rows[index]
        if isinstance(self.X, torch.Tensor):
            rows = torch.as_tensor(rows, device=self.X.device)
        return self.X[rows], _map_targets(lambda v: v[rows], self.targets)

    @property
    def nbytes(self):
        """Bytes of this dataset's rows (inputs and targets)."""
        arrays = [self.X, *self.targets.values()]
        per_row = sum(
            a[:1].nbytes if isinstance(a, (np.ndarray, torch.Tensor)) else _row_bytes(a)
            for a in arrays
        )
        return per_row * len(self)

    def to(self, device):
        """A copy whose rows are tensors on ``device``, moved block by block.

        Disk-backed targets never sit whole in host memory on the way.
        """

        def move(array):
            out = None
            for start in range(0, len(self), _BLOCK_ROWS):
                index = np.arange(start, min(start + _BLOCK_ROWS, len(self)))
                rows = index if self.rows is None else self.rows[index]
                block = torch.as_tensor(np.asarray(array[rows]))
                if out is None:
                    out = torch.empty(
                        (len(self), *block.shape[1:]), dtype=block.dtype, device=device
                    )
                out[start : start + len(block)] = block.to(device)
            return out

        return TransferDataset(move(self.X), _map_targets(move, self.targets))


def _row_bytes(array):
    return int(np.prod(array.shape[1:], dtype=np.int64)) * np.dtype(array.dtype).itemsize


def batch_loader(dataset, batch_size, shuffle=False, generator=None, pin_memory=False):
    """A :class:`~torch.utils.data.DataLoader` of whole batches of ``dataset``.

    skorch's ``iterator_train`` / ``iterator_valid``: skorch passes
    ``batch_size`` and the ``iterator_*__`` parameters (``shuffle``,
    ``generator``, ``pin_memory``).

    Parameters
    ----------
    dataset : TransferDataset
    batch_size : int
    shuffle : bool, default=False
        Draw a new permutation of the rows each epoch.
    generator : torch.Generator, default=None
        Source of the permutations, for reproducibility.
    pin_memory : bool, default=False
        Copy host batches to pinned memory (for asynchronous GPU copies).

    Returns
    -------
    torch.utils.data.DataLoader

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._data import TransferDataset, batch_loader
    >>> ds = TransferDataset(np.zeros((5, 2), np.float32), {"t": np.arange(5.0)})
    >>> [len(X) for X, _ in batch_loader(ds, batch_size=2)]
    [2, 2, 1]
    """
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(sampler, batch_size, drop_last=False),
        # A TransferDataset gives whole batches (``__getitems__``); a dataset of
        # rows (e.g. skorch's, when the fitted net predicts) gives rows to stack.
        collate_fn=default_convert if hasattr(dataset, "__getitems__") else default_collate,
        pin_memory=pin_memory,
    )
