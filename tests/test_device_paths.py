"""The GPU data paths of BatchIterator, exercised on the CPU.

On a CUDA device the iterator either keeps the whole dataset on the device
(resident) or moves blocks of batches (block); both are plain tensor code, so
running them with a CPU device checks their batching and shuffling here.
"""

import numpy as np
import pytest
import torch

from skhydra._storage import RowStore
from skhydra._training import BatchIterator, RowDataset


def _dataset(n=103, rows=None, disk=False):
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    target = np.arange(n, dtype=np.float32)[:, None] * 10
    store = RowStore(budget=0 if disk else None)
    stored = store.empty(target.shape, target.dtype)
    stored[0:n] = target
    return RowDataset(X, {"t": stored}, rows=rows), store


@pytest.mark.parametrize("path", ["_resident_batches", "_block_batches"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("disk", [False, True])
def test_device_paths_cover_every_row_once_with_matching_targets(path, shuffle, disk):
    rows = np.arange(3, 100, 2)
    dataset, store = _dataset(rows=rows, disk=disk)
    try:
        iterator = BatchIterator(
            dataset, batch_size=8, shuffle=shuffle, generator=torch.Generator().manual_seed(0)
        )
        order = iterator._order()
        batches = list(getattr(iterator, path)(order, torch.device("cpu")))
        X = torch.cat([b[0] for b in batches])
        t = torch.cat([b[1]["t"] for b in batches])
    finally:
        store.close()
    assert all(isinstance(b[0], torch.Tensor) for b in batches)
    assert max(len(b[0]) for b in batches) == 8
    seen = (X[:, 0] / 2).long().numpy()
    assert sorted(seen.tolist()) == rows.tolist()
    # Targets travel with their rows.
    np.testing.assert_array_equal(t[:, 0].numpy(), seen * 10.0)
    if shuffle:
        assert seen.tolist() != sorted(seen.tolist())
    else:
        assert seen.tolist() == rows.tolist()


def test_resident_copy_is_made_once_and_released():
    dataset, store = _dataset()
    iterator = BatchIterator(dataset, batch_size=16)
    list(iterator._resident_batches(None, torch.device("cpu")))
    first = dataset._device_copy[1][0]
    list(iterator._resident_batches(None, torch.device("cpu")))
    assert dataset._device_copy[1][0] is first
    dataset.release()
    assert dataset._device_copy is None
    store.close()


def test_plain_array_targets_are_batched_too():
    # skorch users may call net_.partial_fit(X, y) with an array y.
    X = np.arange(10.0, dtype=np.float32).reshape(5, 2)
    dataset = RowDataset(X, np.arange(5.0))
    host = [y.tolist() for _, y in BatchIterator(dataset, batch_size=2)]
    device = [
        y.tolist()
        for _, y in BatchIterator(dataset, batch_size=2)._resident_batches(
            None, torch.device("cpu")
        )
    ]
    assert host == device == [[0.0, 1.0], [2.0, 3.0], [4.0]]
